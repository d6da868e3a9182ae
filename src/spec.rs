//! The validated, fully resolved description of one run. Built from the command line before anything is
//! created, so that every input error is reported first, with exit status 125.

use crate::cli::{HomeMode, OverlayDriver, RunArgs};
use crate::idmap::{Caller, IdPlan, MapLine};
use crate::image::config::Defaults as ImageDefaults;
use crate::rootfs::plan::{clean_container_path, Home, Root, Volume};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("rootfs {path}: {source} (give an existing directory with --rootfs)")]
    Rootfs { path: PathBuf, source: std::io::Error },
    #[error("rootfs {0}: not a directory")]
    RootfsNotDir(PathBuf),
    #[error("--rootfs-rw {path}: {source} (the tree is not writable by you, e.g. a shared image owned by another user: drop --rootfs-rw to run it copy-on-write)")]
    RootfsNotWritable { path: PathBuf, source: nix::Error },
    #[error("malformed --volume {0:?}: expected SRC:DST[:ro|rw] with an absolute DST")]
    Volume(String),
    #[error("volume source {path}: {source}")]
    VolumeSource { path: PathBuf, source: std::io::Error },
    #[error("--tmpfs {0}: the target must be an absolute path")]
    Tmpfs(PathBuf),
    #[error("--workdir {0}: must be an absolute path")]
    Workdir(PathBuf),
    #[error("malformed --env {0:?}: expected K=V or K")]
    Env(String),
    #[error("--env-file {path}:{line}: expected K=V")]
    EnvFileLine { path: PathBuf, line: usize },
    #[error("--env-file {path}: {source}")]
    EnvFile { path: PathBuf, source: std::io::Error },
    #[error("invalid --hostname {0:?}: use 1 to 64 letters, digits, '-' and '.'")]
    Hostname(String),
    #[error("unknown user {name:?}: not found in {file}")]
    UnknownUser { name: String, file: PathBuf },
    #[error("malformed --user {0:?}: expected UID[:GID] or NAME[:GROUP]")]
    User(String),
    #[error("{kind} {id} is not mapped in this container ({why}); use an ID that is, or configure subordinate IDs")]
    Unmapped { kind: &'static str, id: u32, why: String },
    #[error("cannot find the current directory: {0}")]
    Cwd(std::io::Error),
    #[error("--overlay-driver fuse cannot layer the host's own / (its server would see its own mount): give --rootfs, or use the kernel driver")]
    FuseHostRoot,
    #[error("cannot read the host's / for its copy-on-write layout: {0}")]
    HostLayout(std::io::Error),
    #[error("--home applies to the host-root sandbox (without --rootfs); bind a directory into a rootfs with -v")]
    HomeNeedsHostRoot,
    #[error(transparent)]
    Image(crate::image::config::ConfigError),
    #[error("--upper {path}: {source}")]
    Upper { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Hardening(#[from] crate::security::RequestError),
}

/// Everything a run needs, validated.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub caller: Caller,
    pub ids: IdPlan,
    pub root: Root,
    pub volumes: Vec<Volume>,
    pub tmpfs: Vec<PathBuf>,
    /// Host paths bound read-write at the same place (host-root default only: the working directory).
    pub host_binds: Vec<PathBuf>,
    /// `$HOME` of the host-root default, as `--home` shows it.
    pub home: Option<crate::rootfs::plan::Home>,
    /// What the user must hear about the spec's own choices (printed by `run` before the launch).
    pub notices: Vec<String>,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
    pub hostname: String,
    /// uid and gid of the payload inside the container.
    pub user: (u32, u32),
    /// This container's runtime state directory, when it needs one (created by `run`).
    pub state_dir: Option<PathBuf>,
    /// The copy-on-write layer over `root` (None: `root` as it is, read-only or writable in place).
    pub overlay: Option<OverlaySpec>,
    /// The host-root default with a copy-on-write layer: how each top-level directory is layered.
    pub host_layout: Option<crate::rootfs::host::HostLayout>,
    pub own_netns: bool,
    /// The network stage's plan (backend, /etc files, what init must set inside).
    pub net: crate::net::Plan,
    pub init: bool,
    pub verbose: bool,
    /// What the payload gives up before exec (see `security`).
    pub hardening: crate::security::Profile,
    /// `-t`: the payload gets a pty of this size from the container's devpts.
    pub terminal: Option<crate::sys::tty::WinSize>,
    /// `-i`: the payload's stdin stays open (else it is /dev/null).
    pub interactive: bool,
    /// Where init listens for `burrow exec` (registered containers only).
    pub control: Option<PathBuf>,
    /// init tells P0 when the payload has exec'd (`run -d` prints the ID only then).
    pub watch_start: bool,
}

/// The copy-on-write layer: the driver asked for and where its directories are.
#[derive(Clone, Debug)]
pub struct OverlaySpec {
    pub driver: OverlayDriver,
    /// The merged root is mounted read-only (`--read-only` with an image: its layers still need the overlay to
    /// become one tree).
    pub readonly: bool,
    /// `--upper DIR`: kept across runs. None: an ephemeral layer in the state directory.
    pub keep: Option<PathBuf>,
    /// Set by `run` once the state directory exists.
    pub paths: Option<OverlayPaths>,
}

#[derive(Clone, Debug)]
pub struct OverlayPaths {
    pub mountpoint: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// An ephemeral layer lives on a tmpfs mounted here in P1's mount namespace (upper and work inside it): it
    /// vanishes with the namespace, even when every process is killed, and as a filesystem of its own it never
    /// overlaps a lower layer (kernel overlayfs refuses an upper inside its lower, e.g. the host's `/`).
    pub tmpfs: Option<PathBuf>,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl RunSpec {
    /// Where the network backend keeps its sockets, when there is a backend to start (P0) and wait for (init).
    pub fn net_backend_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref().filter(|_| self.net.needs_state_dir())
    }
}

/// Builds the spec; `ids` was planned from the caller and `--userns` already; `image` is the image's run
/// configuration when IMAGE was given (its layers become the root, the command line overrides the rest).
pub fn build(
    args: &RunArgs,
    caller: Caller,
    ids: IdPlan,
    net: crate::net::Plan,
    image: Option<&ImageDefaults>,
) -> Result<RunSpec, SpecError> {
    let root = match (&args.rootfs, image) {
        (Some(p), _) => {
            let path = p.canonicalize().map_err(|source| SpecError::Rootfs { path: p.clone(), source })?;
            if !path.is_dir() {
                return Err(SpecError::RootfsNotDir(path));
            }
            if args.rootfs_rw {
                nix::unistd::access(&path, nix::unistd::AccessFlags::W_OK)
                    .map_err(|source| SpecError::RootfsNotWritable { path: path.clone(), source })?;
            }
            Root::Dir { path, writable: args.rootfs_rw }
        }
        (None, Some(d)) => Root::Image { lowers: d.lowers.clone() },
        (None, None) => Root::Host,
    };
    // The container's /etc/passwd and /etc/group are read inside its tree (see rootfs::resolve::read_in_root).
    let etc = match &root {
        Root::Dir { path, .. } => Etc::Tree(path.clone()),
        Root::Image { lowers } => Etc::Layers(lowers.clone()),
        Root::Host | Root::HostLayered(_) => Etc::Tree(PathBuf::from("/")),
    };
    let volumes = args.volumes.iter().map(|v| parse_volume(v)).collect::<Result<Vec<_>, _>>()?;
    let tmpfs = args
        .tmpfs
        .iter()
        .map(|t| clean_container_path(t).ok_or_else(|| SpecError::Tmpfs(t.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    let cwd = std::env::current_dir().map_err(SpecError::Cwd)?;
    if args.home.is_some() && root != Root::Host {
        return Err(SpecError::HomeNeedsHostRoot);
    }
    let (uid, gid) = match args.user.as_ref().or(image.and_then(|d| d.user.as_ref())) {
        Some(u) => resolve_user(u, &etc)?,
        None => ids.caller_inside(),
    };
    check_mapped("uid", uid, &ids.uid_map, &ids)?;
    check_mapped("gid", gid, &ids.gid_map, &ids)?;
    let host_home = match root {
        Root::Host => host_home(args.home.unwrap_or_default(), (uid, gid)),
        _ => None,
    };
    let (host_binds, notices) = match root {
        Root::Host | Root::HostLayered(_) => host_binds(&cwd, host_home.as_ref()),
        Root::Dir { .. } | Root::Image { .. } => (vec![], vec![]),
    };
    let mut host_home = host_home;
    let home = match root {
        Root::Host if args.user.is_none() => std::env::var("HOME").unwrap_or_else(|_| "/".into()),
        _ => passwd_home(&etc, uid).unwrap_or_else(|| if uid == 0 { "/root".into() } else { "/".into() }),
    };
    let env = build_env(args, &home, image.map(|d| d.env.as_slice()).unwrap_or_default())?;
    let workdir = match args.workdir.as_ref().or(image.and_then(|d| d.workdir.as_ref())) {
        Some(w) => clean_container_path(w).ok_or_else(|| SpecError::Workdir(w.clone()))?,
        None if root == Root::Host => cwd,
        None => PathBuf::from("/"),
    };
    let hostname = args.hostname.clone().unwrap_or_else(|| "burrow".into());
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if hostname.is_empty() || hostname.len() > 64 || !hostname.chars().all(valid) {
        return Err(SpecError::Hostname(hostname));
    }
    let command = match image {
        Some(d) => d.command(args.entrypoint.as_deref(), &args.command).map_err(SpecError::Image)?,
        None if args.command.is_empty() => vec!["/bin/sh".to_string()],
        None => args.command.clone(),
    };
    // An image's layers always need the overlay to become one tree; --read-only then mounts it read-only.
    let overlay = if (args.read_only && image.is_none()) || args.rootfs_rw {
        None
    } else {
        let keep = match &args.upper {
            Some(dir) => Some(prepare_upper(dir)?),
            None => None,
        };
        let readonly = args.read_only;
        Some(OverlaySpec { driver: args.overlay_driver.unwrap_or_default(), readonly, keep, paths: None })
    };
    if let (Some(home), Some(ov)) = (host_home.as_mut(), &overlay) {
        home.keep = ov.keep.clone();
    }
    if let (Root::Host, Some(OverlaySpec { driver: OverlayDriver::Fuse, .. })) = (&root, &overlay) {
        return Err(SpecError::FuseHostRoot);
    }
    let host_layout = match (&root, &overlay) {
        (Root::Host, Some(ov)) => {
            let strict = ov.driver == OverlayDriver::Kernel;
            Some(crate::rootfs::host::read_layout(ov.keep.as_deref(), strict).map_err(SpecError::HostLayout)?)
        }
        _ => None,
    };
    Ok(RunSpec {
        caller,
        ids,
        root,
        volumes,
        tmpfs,
        host_binds,
        home: host_home,
        notices,
        command,
        env,
        workdir,
        hostname,
        user: (uid, gid),
        state_dir: None,
        overlay,
        host_layout,
        own_netns: net.unshare_netns(),
        net,
        init: !args.no_init,
        hardening: crate::security::profile(&args.security, uid)?,
        verbose: args.verbose,
        terminal: None,
        interactive: args.interactive,
        control: None,
        watch_start: false,
    })
}

/// `$HOME` of the host-root default (none when unset, missing or `/`).
/// Its layer is kept with `--upper` (set once that directory exists).
fn host_home(mode: HomeMode, owner: (u32, u32)) -> Option<Home> {
    let path = std::env::var_os("HOME").map(PathBuf::from).and_then(|h| h.canonicalize().ok())?;
    (path != Path::new("/") && path.is_dir()).then_some(Home { path, mode, keep: None, owner })
}

/// The host-root default binds the working directory read-write, unless it is `/`, inside a read-write
/// `$HOME` (already writable), or `$HOME` itself or one of its parents (binding it would expose the real home
/// that `--home` protects: then it is not bound, and the user is told).
fn host_binds(cwd: &Path, home: Option<&Home>) -> (Vec<PathBuf>, Vec<String>) {
    let Some(home) = home else {
        return ((cwd != Path::new("/")).then(|| cwd.to_path_buf()).into_iter().collect(), vec![]);
    };
    let rw_home = home.mode == HomeMode::Rw;
    if cwd == Path::new("/") || (rw_home && cwd.starts_with(&home.path)) {
        return (vec![], vec![]);
    }
    if home.path.starts_with(cwd) && !rw_home {
        let mode = match home.mode {
            HomeMode::Cow => "copy-on-write",
            HomeMode::Ro => "read-only",
            _ => "hidden",
        };
        let notice = format!(
            "burrow: notice: the current directory {} holds $HOME, which is {mode} (--home): changes to it do not \
             reach the host; run from a project directory, or pass --home rw",
            cwd.display()
        );
        return (vec![], vec![notice]);
    }
    (vec![cwd.to_path_buf()], vec![])
}

/// Creates `DIR/upper` and `DIR/work` for `--upper DIR` (kept across runs).
fn prepare_upper(dir: &Path) -> Result<PathBuf, SpecError> {
    let err = |source| SpecError::Upper { path: dir.to_path_buf(), source };
    for sub in ["upper", "work"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(err)?;
    }
    dir.canonicalize().map_err(err)
}

pub fn parse_volume(text: &str) -> Result<Volume, SpecError> {
    let parts: Vec<&str> = text.split(':').collect();
    let (src, dst, readonly) = match parts.as_slice() {
        [src, dst] => (*src, *dst, false),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        _ => return Err(SpecError::Volume(text.into())),
    };
    if src.is_empty() {
        return Err(SpecError::Volume(text.into()));
    }
    let dst = clean_container_path(Path::new(dst)).ok_or_else(|| SpecError::Volume(text.into()))?;
    let src = Path::new(src).canonicalize().map_err(|source| SpecError::VolumeSource { path: src.into(), source })?;
    Ok(Volume { src, dst, readonly })
}

fn build_env(args: &RunArgs, home: &str, image_env: &[(String, String)]) -> Result<Vec<(String, String)>, SpecError> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    };
    if args.preserve_env {
        for (k, v) in std::env::vars() {
            set(&k, &v);
        }
    } else {
        set("PATH", DEFAULT_PATH);
        set("HOME", home);
        set("TERM", &std::env::var("TERM").unwrap_or_else(|_| "xterm".into()));
    }
    for (k, v) in image_env {
        set(k, v);
    }
    set("container", "burrow");
    for path in &args.env_file {
        let content =
            std::fs::read_to_string(path).map_err(|source| SpecError::EnvFile { path: path.clone(), source })?;
        for (i, line) in content.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once('=') {
                Some((k, v)) if valid_key(k) => set(k, v),
                _ => return Err(SpecError::EnvFileLine { path: path.clone(), line: i + 1 }),
            }
        }
    }
    for e in &args.env {
        match e.split_once('=') {
            Some((k, v)) if valid_key(k) => set(k, v),
            None if valid_key(e) => {
                if let Ok(v) = std::env::var(e) {
                    set(e, &v)
                }
            }
            _ => return Err(SpecError::Env(e.clone())),
        }
    }
    Ok(env)
}

fn valid_key(k: &str) -> bool {
    !k.is_empty() && !k.contains('\0')
}

/// Where the container's /etc/passwd and /etc/group are, seen from the host; read inside the tree, so that a
/// symlink to an absolute path names the tree's own file, never the host's.
pub enum Etc {
    /// A directory tree (a rootfs, or the host's `/`).
    Tree(PathBuf),
    /// An image's layers, top-most first: the top-most layer that has the file (a whiteout above it means
    /// there is none).
    Layers(Vec<PathBuf>),
}

impl Etc {
    /// The file named in messages.
    fn path(&self, name: &str) -> PathBuf {
        match self {
            Etc::Tree(tree) => tree.join("etc").join(name),
            Etc::Layers(_) => Path::new("/etc").join(name),
        }
    }

    fn read(&self, name: &str) -> String {
        let path = Path::new("/etc").join(name);
        match self {
            Etc::Tree(tree) => crate::rootfs::resolve::read_in_root(tree, &path).unwrap_or_default(),
            Etc::Layers(lowers) => {
                for l in lowers {
                    match std::fs::symlink_metadata(l.join("etc").join(name)) {
                        Ok(m) if m.is_file() || m.file_type().is_symlink() => {
                            return crate::rootfs::resolve::read_in_root(l, &path).unwrap_or_default()
                        }
                        Ok(_) => break,
                        Err(_) => continue,
                    }
                }
                String::new()
            }
        }
    }
}

/// Resolves `--user` against the container's /etc/passwd and /etc/group.
pub fn resolve_user(text: &str, etc: &Etc) -> Result<(u32, u32), SpecError> {
    let (user, group) = match text.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (text, None),
    };
    if user.is_empty() || group == Some("") {
        return Err(SpecError::User(text.into()));
    }
    let passwd = etc.read("passwd");
    let entry = |f: &dyn Fn(&[&str]) -> bool| {
        passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|fields| fields.len() >= 7 && f(fields))
    };
    let (uid, default_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, entry(&|f| f[2] == user).and_then(|f| f[3].parse().ok()).unwrap_or(0)),
        Err(_) => {
            let f = entry(&|f| f[0] == user)
                .ok_or_else(|| SpecError::UnknownUser { name: user.into(), file: etc.path("passwd") })?;
            let parse = |s: &str| s.parse::<u32>().map_err(|_| SpecError::User(text.into()));
            (parse(f[2])?, parse(f[3])?)
        }
    };
    let gid = match group {
        None => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => etc
                .read("group")
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| SpecError::UnknownUser { name: g.into(), file: etc.path("group") })?,
        },
    };
    Ok((uid, gid))
}

fn passwd_home(etc: &Etc, uid: u32) -> Option<String> {
    let passwd = etc.read("passwd");
    let uid = uid.to_string();
    passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() >= 7 && f[2] == uid).map(|f| f[5].into())
}

fn check_mapped(kind: &'static str, id: u32, map: &[MapLine], ids: &IdPlan) -> Result<(), SpecError> {
    if map.iter().any(|l| id >= l.inside && id - l.inside < l.count) {
        return Ok(());
    }
    let why = if ids.via_helpers { "outside the subordinate ranges".into() } else { "single-ID map".into() };
    Err(SpecError::Unmapped { kind, id, why })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(p: &Path) -> Etc {
        Etc::Tree(p.to_path_buf())
    }

    #[test]
    fn volumes_parse_with_modes_and_reject_malformed() {
        let v = parse_volume("/tmp:/data:ro").unwrap();
        assert_eq!((v.dst.as_path(), v.readonly), (Path::new("/data"), true));
        assert!(!parse_volume("/tmp:/data").unwrap().readonly);
        for bad in ["/tmp", "/tmp:data", "/tmp:/d:rx", ":/d", "/tmp:/d:ro:x"] {
            assert!(matches!(parse_volume(bad), Err(SpecError::Volume(_))), "{bad}");
        }
        assert!(matches!(parse_volume("/does/not/exist:/d"), Err(SpecError::VolumeSource { .. })));
    }

    #[test]
    fn users_resolve_by_name_and_number() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        let etc = t.path().join("etc");
        std::fs::write(etc.join("passwd"), "root:x:0:0::/root:/bin/sh\nalice:x:1000:1001::/home/a:/bin/sh\n").unwrap();
        std::fs::write(etc.join("group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(resolve_user("alice", &tree(t.path())).unwrap(), (1000, 1001));
        assert_eq!(resolve_user("1000", &tree(t.path())).unwrap(), (1000, 1001));
        assert_eq!(resolve_user("1000:staff", &tree(t.path())).unwrap(), (1000, 50));
        assert_eq!(resolve_user("4242", &tree(t.path())).unwrap(), (4242, 0));
        assert!(matches!(resolve_user("bob", &tree(t.path())), Err(SpecError::UnknownUser { .. })));
        assert!(matches!(resolve_user("alice:", &tree(t.path())), Err(SpecError::User(_))));
        assert_eq!(passwd_home(&tree(t.path()), 1000).as_deref(), Some("/home/a"));
    }

    #[test]
    fn passwd_symlinked_to_a_host_path_is_read_inside_the_tree() {
        let t = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("passwd"), "evil:x:4242:4242::/:/bin/sh\n").unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(host.path().join("passwd"), t.path().join("etc/passwd")).unwrap();
        assert!(matches!(resolve_user("evil", &tree(t.path())), Err(SpecError::UnknownUser { .. })));
        assert_eq!(passwd_home(&tree(t.path()), 4242), None);
        // The same absolute path inside the tree is the one that counts.
        let inside = t.path().join(host.path().strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::write(inside.join("passwd"), "evil:x:1234:1235::/e:/bin/sh\n").unwrap();
        assert_eq!(resolve_user("evil", &tree(t.path())).unwrap(), (1234, 1235));
    }

    #[test]
    fn the_working_directory_is_bound_unless_it_would_expose_a_protected_home() {
        let home = |mode| Home { path: "/home/u".into(), mode, keep: None, owner: (0, 0) };
        let binds = |cwd: &str, h: Option<&Home>| host_binds(Path::new(cwd), h);
        let cow = home(HomeMode::Cow);
        assert_eq!(binds("/home/u/proj", Some(&cow)), (vec![PathBuf::from("/home/u/proj")], vec![]));
        assert_eq!(binds("/work", Some(&cow)), (vec![PathBuf::from("/work")], vec![]));
        assert_eq!(binds("/", Some(&cow)), (vec![], vec![]));
        for cwd in ["/home/u", "/home"] {
            let (b, notices) = binds(cwd, Some(&cow));
            assert!(b.is_empty() && notices.len() == 1 && notices[0].contains("copy-on-write"), "{cwd}: {notices:?}");
        }
        let (b, notices) = binds("/home/u", Some(&home(HomeMode::Ro)));
        assert!(b.is_empty() && notices[0].contains("read-only"), "{notices:?}");
        // A read-write home already covers a working directory inside it.
        assert_eq!(binds("/home/u/proj", Some(&home(HomeMode::Rw))), (vec![], vec![]));
        assert_eq!(binds("/home/u", Some(&home(HomeMode::Rw))), (vec![], vec![]));
        assert_eq!(binds("/work", None), (vec![PathBuf::from("/work")], vec![]));
    }

    #[test]
    fn unmapped_ids_are_refused_with_the_reason() {
        let ids = IdPlan::single(0, 0, 1000, 1000, None);
        assert!(check_mapped("uid", 0, &ids.uid_map, &ids).is_ok());
        let e = check_mapped("uid", 1000, &ids.uid_map, &ids).unwrap_err().to_string();
        assert!(e.contains("uid 1000 is not mapped") && e.contains("single-ID"), "{e}");
    }
}
