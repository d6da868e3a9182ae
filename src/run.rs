//! `burrow run`: resolve everything, report input errors, then launch.

use crate::cgroup;
use crate::cli::RunArgs;
use crate::idmap::{self, Caller, UsernsMode};
use crate::launch::parent::{self, HostStages, LaunchError};
use crate::net;
use crate::spec::{self, SpecError};
use crate::state;
use crate::userns;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Idmap(#[from] idmap::IdmapError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error(transparent)]
    Config(#[from] crate::userns::config::ConfigError),
    #[error(transparent)]
    Terminal(#[from] crate::terminal::TerminalError),
    #[error(transparent)]
    Record(#[from] crate::lifecycle::record::RecordError),
    #[error(transparent)]
    Image(#[from] crate::image::run::ImageRunError),
    #[error("{0}")]
    PullOptions(String),
    #[error("--stats-json {path}: {source}")]
    StatsJson { path: std::path::PathBuf, source: std::io::Error },
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Launch(e) => e.exit_code(),
            _ => 125,
        }
    }
}

/// The calling user, from the kernel's credentials and the user database.
pub fn caller() -> Caller {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| uid.to_string());
    Caller { uid: uid.as_raw(), gid: nix::unistd::getgid().as_raw(), name }
}

fn say(line: String) {
    eprintln!("{line}");
}

/// Runs a container in the foreground; returns the payload's exit code.
pub fn run(args: &RunArgs) -> Result<i32, RunError> {
    let terminal = match args.tty {
        true => Some(crate::terminal::require_stdin_terminal()?),
        false => None,
    };
    let mut prepared = prepare(args, state::new_id())?;
    prepared.spec.terminal = terminal;
    // The payload's session is made around its pty: the hardening stage must not start another.
    prepared.spec.hardening.controlling_tty = terminal.is_some();
    if args.name.is_some() {
        // Named: registered while it runs, so that ps, exec, stop find it.
        return crate::lifecycle::foreground::run(prepared, args);
    }
    launch(prepared, args, None)
}

/// A container checked and planned, with its state directory, ready to launch.
pub struct Prepared {
    pub spec: spec::RunSpec,
    pub state: Option<state::StateDir>,
    pub cgroup: cgroup::Plan,
    pub id: String,
    /// Where the container's user namespace comes from (the keeper's, or its own).
    pub source: userns::Source,
    /// The image's layers and the pin that keeps them in the store while the container runs (inherited by P1
    /// and init, so a burrow killed whole still holds it until the container is gone).
    pub image: Option<crate::image::run::ImageRoot>,
}

/// Resolves and checks everything (input errors come here, before anything runs).
pub fn prepare(args: &RunArgs, id: String) -> Result<Prepared, RunError> {
    let caller = caller();
    let mode = args.userns.unwrap_or(UsernsMode::Auto);
    let ids = idmap::plan(mode, &caller, &mut |w| say(format!("burrow: warning: {w}")))?;
    let keeper_policy = userns::config::policy(
        std::path::Path::new(userns::config::SYSTEM_CONFIG),
        userns::config::user_file().as_deref(),
        args.userns_keeper.map(|k| k == crate::cli::Switch::On),
        std::env::var("BURROW_KEEPER_IDLE").ok().as_deref(),
    )?;
    if let Some(n) = ids.notice() {
        say(n);
    }
    // The network is checked before the image is pulled (a busy -p port fails at once), except with -P, which
    // publishes the ports the image's config exposes.
    let early = match args.publish_all {
        false => Some(net::preflight(&args.net_request(&[]))?),
        true => None,
    };
    // The keeper gets its request now (after the port check: a busy port must fail before the runtime directory
    // exists) and makes its answer while the rest is checked; a run that fails a check below drops the
    // namespace it was handed.
    let mut keeper_lines = Vec::new();
    let choice = userns::ask(mode, &ids, &keeper_policy, &mut |line| keeper_lines.push(line));
    // The image's pin keeps its layers in the store until this run ends (`rmi` refuses, `prune` skips them).
    let image = match &args.image {
        Some(name) => Some(image_root(args, name)?),
        None => None,
    };
    let net = match early {
        Some(net) => net,
        None => {
            let exposed = image.as_ref().map(|i| image_ports(&i.defaults)).unwrap_or_default();
            net::preflight(&args.net_request(&exposed))?
        }
    };
    net.notices().iter().for_each(|n| say(n.clone()));
    if args.publish_all && !args.detach {
        // A foreground run is not in `burrow ps` unless named: say where the chosen ports are.
        let chosen = net.published().iter().skip(args.publish.len());
        chosen.for_each(|p| {
            say(format!("burrow: publishing {} -> {}/{}", p.host_addr(), p.container_port, p.proto.as_str()))
        });
    }
    let mut spec = spec::build(args, caller, ids, net, image.as_ref().map(|i| &i.defaults))?;
    spec.notices.iter().for_each(|n| say(n.clone()));
    spec.hardening.settle().into_iter().for_each(say);
    // The host-root default is layered by init on a tmpfs of its own; a network helper needs a socket. An
    // ephemeral layer of an unnamed foreground run needs nothing on the host (see `private_layer_paths`).
    let layered = spec.overlay.as_ref().filter(|_| spec.host_layout.is_none());
    let private_layer =
        layered.is_some_and(|o| o.keep.is_none()) && !spec.net.needs_state_dir() && !args.detach && args.name.is_none();
    let needs_state = (layered.is_some() && !private_layer) || spec.net.needs_state_dir();
    let state = if needs_state { Some(state::StateDir::create(&id)?) } else { None };
    if let Some(dir) = &state {
        spec.state_dir = Some(dir.path().to_path_buf());
    }
    if let (Some(ov), None) = (spec.overlay.as_mut(), &spec.host_layout) {
        ov.paths = match (&state, private_layer) {
            (_, true) => Some(private_layer_paths(&state::base_dir()?)),
            (Some(dir), false) => Some(overlay_paths(dir.path(), ov.keep.as_deref())?),
            (None, false) => None,
        };
    }
    let cgroup = cgroup::preflight(&args.cgroup_request())?;
    cgroup.warnings().iter().for_each(|w| say(format!("burrow: warning: {w}")));
    if spec.verbose {
        say(format!("burrow: uid_map {:?}", spec.ids.uid_map));
        say(format!("burrow: gid_map {:?}", spec.ids.gid_map));
        say(format!("burrow: cgroup manager: {}", cgroup.manager_name()));
        say(format!("burrow: network: {}", spec.net.backend_name()));
    }
    let source = choice.finish(&mut |line| keeper_lines.push(line));
    if spec.verbose {
        keeper_lines.into_iter().for_each(|line| say(format!("burrow: {line}")));
    }
    Ok(Prepared { spec, state, cgroup, id, source, image })
}

/// Launches a prepared container and waits for it; `on_start` is called once its payload has exec'd.
pub fn launch(p: Prepared, args: &RunArgs, on_start: Option<&dyn Fn(nix::unistd::Pid)>) -> Result<i32, RunError> {
    let Prepared { spec, state, cgroup, id, source, image } = p;
    let stages = HostStages { cgroup: &cgroup, name: id, userns: &source, on_start };
    let outcome = parent::run(&spec, &stages, &mut say)?;
    if let Some(stats) = &outcome.stats {
        if args.stats {
            say(format!("burrow: stats ({} cgroup)\n{stats}", cgroup.manager_name()));
        }
        if let Some(path) = &args.stats_json {
            let json = serde_json::to_string_pretty(stats).unwrap_or_default();
            std::fs::write(path, json + "\n").map_err(|source| RunError::StatsJson { path: path.clone(), source })?;
        }
    }
    drop(state);
    drop(image);
    Ok(outcome.code)
}

/// The ports an image exposes, as `-P` publishes them; an entry it cannot publish (sctp, a range) is skipped
/// with a warning.
fn image_ports(d: &crate::image::config::Defaults) -> Vec<net::Exposed> {
    let parse = |p: &String| match p.parse::<net::Exposed>() {
        Ok(e) => Some(e),
        Err(_) => {
            say(format!("burrow: warning: image {} exposes {p:?}, which --publish-all cannot publish (a tcp or udp port): skipped", d.name));
            None
        }
    };
    d.exposed_ports.iter().filter_map(parse).collect()
}

fn image_root(args: &RunArgs, name: &str) -> Result<crate::image::run::ImageRoot, RunError> {
    use crate::image::run::{root_for, ImageRunError};
    let search = crate::image::search::Search::load().map_err(ImageRunError::from)?;
    let candidates = search.candidates(name).map_err(ImageRunError::from)?;
    let mut store = crate::image::Store::open(args.store.store.clone()).map_err(ImageRunError::from)?;
    let opts = crate::image::registry::commands::pull_options(&args.registry, args.platform.as_deref(), false)
        .map_err(RunError::PullOptions)?;
    Ok(root_for(&mut store, name, &search, &candidates, args.pull.unwrap_or_default(), &opts)?)
}

/// An ephemeral layer without a state directory: P1 mounts the layer's tmpfs over the runtime directory `base`
/// in its own mount namespace and makes the upper, work and mount-point directories in it. Nothing is created,
/// locked, swept or removed on the host (0.4-0.5 ms of a start), and nothing can be left there: the tmpfs goes
/// with the namespace. Only for runs that need nothing else of the runtime directory inside P1's namespace (no
/// name, not detached: `exec`'s control socket is bound there by init; no network helper's socket); a volume
/// from inside the runtime directory would see the tmpfs.
fn private_layer_paths(base: &std::path::Path) -> spec::OverlayPaths {
    spec::OverlayPaths {
        mountpoint: base.join("root"),
        upper: base.join("upper"),
        work: base.join("work"),
        tmpfs: Some(base.to_path_buf()),
    }
}

/// The overlay's directories: the mount point in the state directory; the layer there too (ephemeral) or in
/// the `--upper` directory (kept).
fn overlay_paths(state: &std::path::Path, keep: Option<&std::path::Path>) -> Result<spec::OverlayPaths, RunError> {
    let base = keep.map(|k| k.to_path_buf()).unwrap_or_else(|| state.join("layer"));
    let paths = spec::OverlayPaths {
        mountpoint: state.join("root"),
        upper: base.join("upper"),
        work: base.join("work"),
        tmpfs: keep.is_none().then(|| base.clone()),
    };
    let made = if keep.is_none() { vec![&paths.mountpoint, &base] } else { vec![&paths.mountpoint] };
    for dir in made {
        std::fs::create_dir_all(dir).map_err(|source| state::StateError::Io { path: dir.clone(), source })?;
    }
    Ok(paths)
}
