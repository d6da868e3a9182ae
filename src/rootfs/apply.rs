//! Applies a mount plan inside the container's own mount namespace and pivots into it.
//!
//! The scheme is bubblewrap's and leaves nothing on the host: a tmpfs is mounted over `/tmp` of this private
//! namespace and becomes the root through `pivot_root`, with the host's tree below it at `/oldroot` (where the
//! host's `/tmp` is visible again, since the tmpfs moved away from it). The container's root is assembled at
//! `/newroot` from sources under `/oldroot`, then a second `pivot_root(".", ".")` makes it `/` and the old tree
//! is detached. Mount targets are resolved with `RESOLVE_IN_ROOT` (see [`super::resolve`]) and mounted through
//! their `/proc/self/fd` path, so a symlink in the rootfs can never redirect a mount onto the host.

use super::plan::{Op, Root};
use super::resolve::{fd_path, open_in_root, Kind};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}{hint}")]
pub struct MountError {
    pub what: String,
    #[source]
    pub source: io::Error,
    pub hint: String,
}

pub(super) fn err(what: impl Into<String>) -> impl FnOnce(io::Error) -> MountError {
    let what = what.into();
    move |source| {
        let hint = match source.raw_os_error() {
            Some(libc::EROFS) => {
                " (it does not exist in the read-only root filesystem: create it there, or use --rootfs-rw)"
            }
            Some(libc::EACCES) => {
                " (the container's root may not write that directory: its owner is outside the container's ID \
                 map; create the mount point in the tree, or choose another target)"
            }
            _ => "",
        };
        MountError { what, source, hint: hint.into() }
    }
}

pub(super) fn nix_err(what: impl Into<String>) -> impl FnOnce(nix::Error) -> MountError {
    let f = err(what);
    move |e| f(io::Error::from(e))
}

const BASE_CANDIDATES: [&str; 3] = ["/tmp", "/mnt", "/var/tmp"];
const OLD: &str = "/oldroot";
const NEW: &str = "/newroot";
const PROC: &str = "/oldroot/proc";

/// Builds the root described by `ops` and makes it `/` of the calling process. The caller must be alone in a
/// fresh mount namespace (the container's init does `unshare(CLONE_NEWNS)` first). Returns the notices for the
/// user (a fallback taken on the way).
pub fn enter(ops: &[Op]) -> Result<Vec<String>, MountError> {
    // Nothing done below may propagate back to the host's namespace.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(nix_err("make / private"))?;
    let base = BASE_CANDIDATES.iter().find(|p| Path::new(p).is_dir()).copied().unwrap_or("/tmp");
    mount(Some("tmpfs"), base, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755"))
        .map_err(nix_err(format!("mount tmpfs on {base}")))?;
    for dir in ["newroot", "oldroot"] {
        std::fs::create_dir(Path::new(base).join(dir)).map_err(err(format!("mkdir {base}/{dir}")))?;
    }
    nix::unistd::pivot_root(base, &Path::new(base).join("oldroot")).map_err(nix_err("pivot_root to scratch"))?;
    nix::unistd::chdir("/").map_err(nix_err("chdir /"))?;

    seal_sources(ops)?;
    let mut root: Option<OwnedFd> = None;
    let mut notices = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        match (op, &root) {
            (Op::Root(r), _) => root = Some(mount_root(r, ops)?),
            (Op::Home(home), Some(rfd)) => notices.extend(super::home::mount(rfd, home, host)?),
            (op, Some(rfd)) => apply(op, rfd, index)?,
            (_, None) => unreachable!("plan() always starts with Op::Root"),
        }
    }
    drop(root);
    nix::unistd::chdir(NEW).map_err(nix_err("chdir to the new root"))?;
    nix::unistd::pivot_root(".", ".").map_err(nix_err("pivot_root into the container root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(nix_err("detach the host's tree"))?;
    nix::unistd::chdir("/").map_err(nix_err("chdir /"))?;
    Ok(notices)
}

fn host(p: &Path) -> PathBuf {
    Path::new(OLD).join(p.strip_prefix("/").unwrap_or(p))
}

fn bind(src: &Path, dst: &str, readonly: bool, what: &str) -> Result<(), MountError> {
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).map_err(nix_err(what))?;
    if readonly {
        set_readonly(dst, what)
    } else {
        set_nodev(dst, what)
    }
}

/// Makes the mount at `path`, and every mount below it, read-only (and nodev, like every bind).
pub(super) fn set_readonly(path: impl AsRef<Path>, what: &str) -> Result<(), MountError> {
    set_attrs(path, libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NODEV, what, "read-only")
}

/// Makes a writable bind at `path`, and every mount below it, nodev: a device node in a bound directory (a
/// rootfs, a volume) must not open a device the container was not given in /dev.
fn set_nodev(path: impl AsRef<Path>, what: &str) -> Result<(), MountError> {
    set_attrs(path, libc::MOUNT_ATTR_NODEV, what, "nodev")
}

fn set_attrs(path: impl AsRef<Path>, attrs: u64, what: &str, name: &str) -> Result<(), MountError> {
    let bytes = path.as_ref().as_os_str().as_encoded_bytes();
    let c = std::ffi::CString::new(bytes).map_err(|_| err(what)(io::Error::from_raw_os_error(libc::EINVAL)))?;
    crate::sys::mount_setattr_recursive(&c, attrs).map_err(err(format!("{what} ({name})")))
}

/// The last operation: setuid and setgid bits and file capabilities count nowhere in the container (nosuid
/// on every mount below the new root), or, with `--allow-setuid`, count on the root filesystem (its nosuid,
/// set by the copy-on-write layer, cleared; a mount inherited locked from the host keeps it).
fn set_suid(allow: bool) -> Result<(), MountError> {
    let c = std::ffi::CString::new(NEW).expect("no NUL");
    if !allow {
        return crate::sys::mount_setattr_recursive(&c, libc::MOUNT_ATTR_NOSUID).map_err(err("make the root nosuid"));
    }
    match crate::sys::mount_setattr(&c, 0, libc::MOUNT_ATTR_NOSUID, false) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(()),
        r => r.map_err(err("allow setuid on the root")),
    }
}

/// `ops` is the whole plan: the layered host root makes its mount points in the layers' upper directories.
fn mount_root(root: &Root, ops: &[Op]) -> Result<OwnedFd, MountError> {
    match root {
        Root::Dir { path, writable } => bind(&host(path), NEW, !writable, &format!("bind rootfs {}", path.display()))?,
        Root::Host => bind(Path::new(OLD), NEW, true, "bind the host's / read-only")?,
        Root::HostLayered(layout) => {
            let points = super::upper::mount_points(ops, |p| host(p).is_dir());
            super::layered::mount_layout(layout, Path::new(OLD), Path::new(NEW), &points)?
        }
        // An image is always the lower layers of a copy-on-write mount, which init binds as a Dir.
        Root::Image { .. } => {
            return Err(MountError {
                what: "an image root without its overlay".into(),
                source: io::Error::from_raw_os_error(libc::EINVAL),
                hint: String::new(),
            })
        }
    }
    let fd = rustix::fs::open(NEW, rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY, rustix::fs::Mode::empty())
        .map_err(|e| err("open the new root")(e.into()))?;
    Ok(fd)
}

/// Resolves `dst` in the root, creating it as `kind`, and returns the path mount(2) should use.
pub(super) fn target(root: &OwnedFd, dst: &Path, kind: Kind) -> Result<(OwnedFd, String), MountError> {
    let fd =
        open_in_root(root.as_fd(), PROC, dst, Some(kind)).map_err(err(format!("mount target {}", dst.display())))?;
    let path = fd_path(PROC, &fd);
    Ok((fd, path))
}

/// Binds host path `src` (recursively) at container path `dst`, then makes it read-only when asked. The new mount
/// is reached by resolving `dst` again: the first descriptor names the directory it now covers.
pub(super) fn bind_at(
    root: &OwnedFd,
    src: &Path,
    dst: &Path,
    kind: Kind,
    readonly: bool,
    what: &str,
) -> Result<(), MountError> {
    let (_fd, t) = target(root, dst, kind)?;
    mount(Some(src), t.as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(nix_err(what))?;
    let (_fd, t) = target(root, dst, kind)?;
    if readonly {
        set_readonly(&t, what)
    } else {
        set_nodev(&t, what)
    }
}

/// Resolves an existing kernel path (None when this kernel has no such file).
fn existing(root: &OwnedFd, dst: &Path) -> Result<Option<(OwnedFd, String)>, MountError> {
    match open_in_root(root.as_fd(), PROC, dst, None) {
        Ok(fd) => {
            let path = fd_path(PROC, &fd);
            Ok(Some((fd, path)))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(err(format!("resolve {}", dst.display()))(e)),
    }
}

/// Hides `dst`: the sealed empty directory over a directory, the sealed empty file over anything else (a bind
/// keeps its source's read-only, nosuid, nodev and noexec flags: one mount per path). With
/// `owner_only_is_closed` (the host's root is not in the ID map), a path only its owner may open is left as it
/// is: its owner is the kernel's root, and no capability of the container's namespace applies to it.
fn mask(root: &OwnedFd, dst: &Path, owner_only_is_closed: bool) -> Result<(), MountError> {
    let Some((fd, t)) = existing(root, dst)? else { return Ok(()) };
    let mode = rustix::fs::fstat(&fd).map_err(|e| err(format!("stat {}", dst.display()))(e.into()))?.st_mode;
    if owner_only_is_closed && mode & 0o077 == 0 {
        return Ok(());
    }
    let src = if mode & libc::S_IFMT == libc::S_IFDIR { SEALED_DIR } else { SEALED_FILE };
    mount(Some(src), t.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(nix_err(format!("mask {}", dst.display())))
}

const SEALED: &str = "/sealed";
const SEALED_DIR: &str = "/sealed/empty-dir";
const SEALED_FILE: &str = "/sealed/empty-file";

fn staged_file(index: usize) -> String {
    format!("{SEALED}/file-{index}")
}

/// Makes the sources that masks and generated files are bound from, in the scratch root: an empty directory,
/// an empty file and the content of every [`Op::File`], under one directory then bound onto itself read-only,
/// nodev, nosuid and noexec. Every bind made from it keeps those flags, so each mask or file is one mount
/// (not a bind and a `mount_setattr` each), and nothing can be added to a source through its mount.
fn seal_sources(ops: &[Op]) -> Result<(), MountError> {
    std::fs::create_dir(SEALED).map_err(err(format!("mkdir {SEALED}")))?;
    std::fs::DirBuilder::new().mode(0o555).create(SEALED_DIR).map_err(err(format!("mkdir {SEALED_DIR}")))?;
    std::fs::write(SEALED_FILE, b"").map_err(err(format!("create {SEALED_FILE}")))?;
    for (index, op) in ops.iter().enumerate() {
        if let Op::File { content, .. } = op {
            let staged = staged_file(index);
            std::fs::write(&staged, content).map_err(err(format!("write {staged}")))?;
        }
    }
    let what = "bind the sources of masks and generated files";
    mount(Some(SEALED), SEALED, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(nix_err(what))?;
    let attrs = libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NOEXEC;
    set_attrs(SEALED, attrs, what, "read-only")
}

/// Makes the kernel path `dst` (under /proc) read-only: bound over itself, then the new mount (reached by
/// resolving `dst` again: the first descriptor names what it covers) made read-only.
fn read_only(root: &OwnedFd, dst: &Path) -> Result<(), MountError> {
    let what = format!("bind {} read-only", dst.display());
    let Some((_fd, t)) = existing(root, dst)? else { return Ok(()) };
    mount(Some(t.as_str()), t.as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(nix_err(what.as_str()))?;
    let Some((_fd, t)) = existing(root, dst)? else {
        return Err(err(what)(io::Error::from_raw_os_error(libc::ENOENT)));
    };
    set_readonly(&t, &what)
}

/// An empty, writable directory over `dst`: a directory of the scratch tmpfs (nosuid, nodev) bound there,
/// rather than a tmpfs of its own (a new superblock costs several binds' time, made and torn down).
fn tmpfs(root: &OwnedFd, dst: &Path, mode: u32, index: usize) -> Result<(), MountError> {
    let dir = format!("/tmpfs-{index}");
    super::dev::scratch_dir(&dir, mode)?;
    let (_fd, t) = target(root, dst, Kind::Dir)?;
    mount(Some(dir.as_str()), t.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(nix_err(format!("mount a tmpfs on {}", dst.display())))
}

fn fs_mount(root: &OwnedFd, dst: &Path, fstype: &str, flags: MsFlags, data: &str) -> Result<(), MountError> {
    let (_fd, t) = target(root, dst, Kind::Dir)?;
    mount(Some(fstype), t.as_str(), Some(fstype), flags, Some(data))
        .map_err(nix_err(format!("mount {fstype} on {}", dst.display())))
}

fn apply(op: &Op, root: &OwnedFd, index: usize) -> Result<(), MountError> {
    let safe = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    match op {
        Op::Root(_) | Op::Home(_) => unreachable!("handled by enter()"),
        Op::Suid { allow } => set_suid(*allow),
        Op::Mask { dst, owner_only_is_closed } => mask(root, dst, *owner_only_is_closed),
        Op::ReadOnly { dst } => read_only(root, dst),
        Op::Tmpfs { dst, mode } => tmpfs(root, dst, *mode, index),
        Op::Proc { dst } => fs_mount(root, dst, "proc", safe | MsFlags::MS_NOEXEC, ""),
        Op::Sysfs { dst, own_netns } => {
            let ro = safe | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY;
            if *own_netns && fs_mount(root, dst, "sysfs", ro, "").is_ok() {
                return Ok(());
            }
            // Without a network namespace of our own the kernel refuses a new sysfs instance.
            bind_at(root, &host(Path::new("/sys")), dst, Kind::Dir, true, "bind /sys")
        }
        Op::Cgroup2 { dst } => {
            // Hosts without cgroup2 (or refusing it in a user namespace) simply show none.
            let ro = safe | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY;
            let _ = fs_mount(root, dst, "cgroup2", ro, "");
            Ok(())
        }
        Op::Dev { tty_gid } => super::dev::mount_dev(root, &host(Path::new("/dev")), *tty_gid),
        Op::Bind { src, dst, readonly } => {
            let kind = if host(src).is_dir() { Kind::Dir } else { Kind::File };
            let what = format!("bind {} to {}", src.display(), dst.display());
            bind_at(root, &host(src), dst, kind, *readonly, &what)
        }
        Op::File { dst, .. } => {
            let fd = match open_in_root(root.as_fd(), PROC, dst, Some(Kind::File)) {
                Ok(fd) => fd,
                // A read-only rootfs without that file: nothing to show it on.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EROFS) | Some(libc::ENOENT)) => return Ok(()),
                Err(e) => return Err(err(format!("mount target {}", dst.display()))(e)),
            };
            // Sealed (read-only, nodev, nosuid, noexec) by seal_sources: the bind keeps it so.
            mount(
                Some(staged_file(index).as_str()),
                fd_path(PROC, &fd).as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(nix_err(format!("bind {}", dst.display())))
        }
    }
}
