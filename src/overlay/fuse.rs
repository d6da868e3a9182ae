//! Serving the overlay over FUSE: mount(2) the FUSE device directly (the caller is root of its
//! user namespace, so no setuid fusermount3 is involved) and run the request loop.

use std::ffi::CString;
use std::path::Path;

use fuser::{Config, Session, SessionACL};
use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, UnmountFlags};

use super::filesystem::Overlay;
use super::{OverlayConfig, OverlayError};

/// Request threads: enough to overlap I/O waits on a small machine, few enough to stay lean.
/// `BURROW_OVERLAY_THREADS` overrides it (1 to 64).
fn threads() -> usize {
    std::env::var("BURROW_OVERLAY_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(2)
}

/// How many node handles the server keeps open (see `inode.rs`): raises `RLIMIT_NOFILE` to
/// its hard limit, then allows half of it, at most 65,536 (they pin kernel memory: a `struct
/// file` and the dentry each); `BURROW_OVERLAY_MAX_FDS` overrides it (tests use a tiny one).
fn fd_budget() -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.maximum != lim.current {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: lim.maximum, maximum: lim.maximum });
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(1 << 20);
    let default = usize::try_from(soft / 2).unwrap_or(usize::MAX).clamp(64, 65536);
    std::env::var("BURROW_OVERLAY_MAX_FDS").ok().and_then(|v| v.parse().ok()).filter(|&n| n >= 1).unwrap_or(default)
}

/// Grows the process's descriptor table once, now, to hold `n` descriptors. The kernel grows it
/// by doubling when a new descriptor does not fit, and a process with several threads then
/// waits for an RCU grace period (`synchronize_rcu` in `expand_fdtable`) while holding up the
/// request being served: with node handles piling up to the budget, that was five to eight
/// waits of milliseconds each in the middle of a walk or a create burst. Growing it before the
/// request threads exist costs nothing of the sort (the table is never shrunk anyway).
fn presize_fd_table(any: &impl std::os::fd::AsFd, n: usize) {
    let Ok(n) = i32::try_from(n) else { return };
    // A duplicate at descriptor `n - 1` or above makes the table that large; closed at once.
    let _ = rustix::io::fcntl_dupfd_cloexec(any, n.max(1) - 1);
}

/// Mounts the overlay on `mountpoint` with mount(2), calls `ready` once the mount is live,
/// then serves requests until it is unmounted (or its mount namespace dies), and returns.
pub fn mount_and_serve(cfg: &OverlayConfig, mountpoint: &Path, ready: impl FnOnce()) -> Result<(), OverlayError> {
    mount_and_serve_with(cfg, mountpoint, MountFlags::NOSUID | MountFlags::NODEV, ready)
}

/// [`mount_and_serve`] with explicit mount flags (the standalone binary passes `-o` flags).
pub fn mount_and_serve_with(
    cfg: &OverlayConfig,
    mountpoint: &Path,
    flags: MountFlags,
    ready: impl FnOnce(),
) -> Result<(), OverlayError> {
    let budget = fd_budget();
    let fs = Overlay::new(cfg, budget)?;
    // Modes arrive already masked by the kernel; the server's own umask must not mask again.
    rustix::process::umask(Mode::empty());
    let dev = rustix::fs::open("/dev/fuse", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| OverlayError::DevFuse(e.into()))?;
    // Room for the node handles, the handles waiting to be closed (`closer.rs`) and 1,024 more
    // (layers, open files), within the limit.
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(1 << 20);
    let want = budget.saturating_add(super::closer::BATCH + 1024);
    presize_fd_table(&dev, want.min(usize::try_from(soft).unwrap_or(usize::MAX)));
    let data = format!(
        "fd={},rootmode=40000,user_id={},group_id={},allow_other,default_permissions",
        std::os::fd::AsRawFd::as_raw_fd(&dev),
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    let data = CString::new(data)
        .map_err(|_| OverlayError::Option { option: "mount data".into(), reason: "contains a NUL byte".into() })?;
    let mount_err = |e: rustix::io::Errno| OverlayError::FuseMount { path: mountpoint.to_owned(), source: e.into() };
    rustix::mount::mount("burrow-overlayfs", mountpoint, "fuse.burrow-overlayfs", flags, Some(data.as_c_str()))
        .map_err(mount_err)?;
    let mut config = Config::default();
    config.n_threads = Some(threads());
    config.clone_fd = true;
    let session_err = |source| OverlayError::Session { path: mountpoint.to_owned(), source };
    let notifier = fs.notifier.clone();
    let session = match Session::from_fd(fs, dev, SessionACL::All, config) {
        Ok(s) => s,
        Err(e) => {
            let _ = rustix::mount::unmount(mountpoint, UnmountFlags::DETACH);
            return Err(session_err(e));
        }
    };
    let _ = notifier.set(session.notifier());
    ready();
    let result = session.run();
    if result.is_err() {
        // Leave no dead mount behind (ENOTCONN for every user) if serving broke down.
        let _ = rustix::mount::unmount(mountpoint, UnmountFlags::DETACH);
    }
    result.map_err(session_err)
}
