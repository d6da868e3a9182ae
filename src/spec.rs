//! The validated, fully resolved description of one run. Built from the command line before anything is
//! created, so that every input error is reported first, with exit status 125.

use crate::cli::{OverlayDriver, RunArgs};
use crate::idmap::{Caller, IdPlan, MapLine};
use crate::image::config::Defaults as ImageDefaults;
use crate::rootfs::plan::{clean_container_path, Root, Volume};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("rootfs {path}: {source} (give an existing directory with --rootfs)")]
    Rootfs { path: PathBuf, source: std::io::Error },
    #[error("rootfs {0}: not a directory")]
    RootfsNotDir(PathBuf),
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
    #[error(transparent)]
    Image(crate::image::config::ConfigError),
    #[error("--upper {path}: {source}")]
    Upper { path: PathBuf, source: std::io::Error },
}

/// Everything a run needs, validated.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub caller: Caller,
    pub ids: IdPlan,
    pub root: Root,
    pub volumes: Vec<Volume>,
    pub tmpfs: Vec<PathBuf>,
    /// Host paths bound at the same place (host-root default only).
    pub host_binds: Vec<PathBuf>,
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
            Root::Dir { path, writable: args.rootfs_rw }
        }
        (None, Some(d)) => Root::Image { lowers: d.lowers.clone() },
        (None, None) => Root::Host,
    };
    let etc = match &root {
        Root::Dir { path, .. } => Etc::dir(&path.join("etc")),
        Root::Image { lowers } => Etc::layers(lowers),
        Root::Host | Root::HostLayered(_) => Etc::dir(Path::new("/etc")),
    };
    let volumes = args.volumes.iter().map(|v| parse_volume(v)).collect::<Result<Vec<_>, _>>()?;
    let tmpfs = args
        .tmpfs
        .iter()
        .map(|t| clean_container_path(t).ok_or_else(|| SpecError::Tmpfs(t.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    let cwd = std::env::current_dir().map_err(SpecError::Cwd)?;
    let host_binds = match root {
        Root::Host | Root::HostLayered(_) => host_binds(&cwd),
        Root::Dir { .. } | Root::Image { .. } => vec![],
    };
    let (uid, gid) = match args.user.as_ref().or(image.and_then(|d| d.user.as_ref())) {
        Some(u) => resolve_user(u, &etc)?,
        None => ids.caller_inside(),
    };
    check_mapped("uid", uid, &ids.uid_map, &ids)?;
    check_mapped("gid", gid, &ids.gid_map, &ids)?;
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
        hardening: crate::security::Profile::default(),
        verbose: args.verbose,
    })
}

/// The host-root default binds $HOME and the working directory read-write (the latter unless it is inside the
/// former, or `/`).
fn host_binds(cwd: &Path) -> Vec<PathBuf> {
    let mut binds = Vec::new();
    let home = std::env::var_os("HOME").map(PathBuf::from).and_then(|h| h.canonicalize().ok());
    if let Some(h) = &home {
        if h != Path::new("/") {
            binds.push(h.clone());
        }
    }
    let inside_home = home.as_ref().is_some_and(|h| cwd.starts_with(h));
    if cwd != Path::new("/") && !inside_home {
        binds.push(cwd.to_path_buf());
    }
    binds
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

/// Where the container's /etc/passwd and /etc/group are, seen from the host.
pub struct Etc {
    passwd: PathBuf,
    group: PathBuf,
}

impl Etc {
    pub fn dir(etc: &Path) -> Etc {
        Etc { passwd: etc.join("passwd"), group: etc.join("group") }
    }

    /// In an image: the top-most layer that has the file (a whiteout above it means there is none).
    pub fn layers(lowers: &[PathBuf]) -> Etc {
        let find = |name: &str| {
            for l in lowers {
                let p = l.join("etc").join(name);
                match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.is_file() => return p,
                    Ok(_) => break,
                    Err(_) => continue,
                }
            }
            PathBuf::from("/nonexistent")
        };
        Etc { passwd: find("passwd"), group: find("group") }
    }
}

/// Resolves `--user` against the container's /etc/passwd and /etc/group (read from the host side of the rootfs).
fn resolve_user(text: &str, etc: &Etc) -> Result<(u32, u32), SpecError> {
    let (user, group) = match text.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (text, None),
    };
    if user.is_empty() || group == Some("") {
        return Err(SpecError::User(text.into()));
    }
    let passwd = std::fs::read_to_string(&etc.passwd).unwrap_or_default();
    let entry = |f: &dyn Fn(&[&str]) -> bool| {
        passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|fields| fields.len() >= 7 && f(fields))
    };
    let (uid, default_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, entry(&|f| f[2] == user).and_then(|f| f[3].parse().ok()).unwrap_or(0)),
        Err(_) => {
            let f = entry(&|f| f[0] == user)
                .ok_or_else(|| SpecError::UnknownUser { name: user.into(), file: etc.passwd.clone() })?;
            let parse = |s: &str| s.parse::<u32>().map_err(|_| SpecError::User(text.into()));
            (parse(f[2])?, parse(f[3])?)
        }
    };
    let gid = match group {
        None => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => std::fs::read_to_string(&etc.group)
                .unwrap_or_default()
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| SpecError::UnknownUser { name: g.into(), file: etc.group.clone() })?,
        },
    };
    Ok((uid, gid))
}

fn passwd_home(etc: &Etc, uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string(&etc.passwd).ok()?;
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

    fn resolve_user_in(text: &str, dir: &Path) -> Result<(u32, u32), SpecError> {
        resolve_user(text, &Etc::dir(dir))
    }

    #[test]
    fn users_resolve_by_name_and_number() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("passwd"), "root:x:0:0::/root:/bin/sh\nalice:x:1000:1001::/home/a:/bin/sh\n")
            .unwrap();
        std::fs::write(t.path().join("group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(resolve_user_in("alice", t.path()).unwrap(), (1000, 1001));
        assert_eq!(resolve_user_in("1000", t.path()).unwrap(), (1000, 1001));
        assert_eq!(resolve_user_in("1000:staff", t.path()).unwrap(), (1000, 50));
        assert_eq!(resolve_user_in("4242", t.path()).unwrap(), (4242, 0));
        assert!(matches!(resolve_user_in("bob", t.path()), Err(SpecError::UnknownUser { .. })));
        assert!(matches!(resolve_user_in("alice:", t.path()), Err(SpecError::User(_))));
        assert_eq!(passwd_home(&Etc::dir(t.path()), 1000).as_deref(), Some("/home/a"));
    }

    #[test]
    fn unmapped_ids_are_refused_with_the_reason() {
        let ids = IdPlan::single(0, 0, 1000, 1000, None);
        assert!(check_mapped("uid", 0, &ids.uid_map, &ids).is_ok());
        let e = check_mapped("uid", 1000, &ids.uid_map, &ids).unwrap_err().to_string();
        assert!(e.contains("uid 1000 is not mapped") && e.contains("single-ID"), "{e}");
    }
}
