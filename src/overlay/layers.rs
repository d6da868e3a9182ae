//! Access to the layer directories by handle: every real object the server touches is reached
//! from an `O_PATH` descriptor of its parent directory by one name component, never by a path.
//!
//! The container can create symlinks in the upper layer (through the server), and it can race
//! renames against the server's requests. So no call here ever resolves more than one
//! component, and none follows a symlink: names are checked to be single components, opened
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` (plain
//! `O_NOFOLLOW` before Linux 5.6, equivalent for one component), and calls that have no `*at`
//! form go through `/proc/self/fd/N`, a magic link to the object itself.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;

use super::{OverlayConfig, OverlayError};

/// Index of the upper layer in [`Layers`]; lowers follow in `lowerdir=` order.
pub(crate) const UPPER: usize = 0;

/// xattr that marks an upper directory as hiding everything below it (kernel `userxattr` mode).
pub(crate) const OPAQUE_XATTR: &str = "user.overlay.opaque";
/// Prefix of the xattrs that belong to the overlay format and are hidden from users.
pub(crate) const PRIVATE_XATTR_PREFIX: &[u8] = b"user.overlay.";

/// The `O_PATH` descriptor of a real object in one layer.
#[derive(Debug, Clone)]
pub(crate) struct Real {
    pub(crate) layer: usize,
    pub(crate) fd: Arc<OwnedFd>,
}

/// The opened layer roots, the work directory and `/proc/self/fd`.
#[derive(Debug)]
pub(crate) struct Layers {
    roots: Vec<Arc<OwnedFd>>,
    devs: Vec<u64>,
    /// `WORK/work`: staging directory for atomic copy-up, the same one the kernel uses.
    work: OwnedFd,
    proc_fd: OwnedFd,
    /// `openat2` is missing (Linux < 5.6): single components are opened with `O_NOFOLLOW`.
    no_openat2: AtomicBool,
}

fn open_root(path: &Path) -> Result<OwnedFd, OverlayError> {
    rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| OverlayError::Layer { path: path.to_owned(), source: e.into() })
}

/// A name the kernel may send for a directory entry: one component, not `.` or `..`. FUSE
/// never sends others; checking keeps every `*at` call below a single-component lookup.
pub(crate) fn check_name(name: &OsStr) -> Result<(), Errno> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(Errno::INVAL);
    }
    if b.len() > 255 {
        return Err(Errno::NAMETOOLONG);
    }
    Ok(())
}

impl Layers {
    pub(crate) fn new(cfg: &OverlayConfig) -> Result<Self, OverlayError> {
        if cfg.lowers.is_empty() {
            return Err(OverlayError::NoLower);
        }
        let mut roots = vec![Arc::new(open_root(&cfg.upper)?)];
        for lower in &cfg.lowers {
            roots.push(Arc::new(open_root(lower)?));
        }
        let work_root = open_root(&cfg.work)?;
        let layer_err = |e: Errno| OverlayError::Layer { path: cfg.work.join("work"), source: e.into() };
        match rustix::fs::mkdirat(&work_root, "work", Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(layer_err(e)),
        }
        let work = rustix::fs::openat(
            &work_root,
            "work",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(layer_err)?;
        let mut devs = Vec::with_capacity(roots.len());
        for (fd, path) in roots.iter().zip(std::iter::once(&cfg.upper).chain(&cfg.lowers)) {
            let st =
                rustix::fs::fstat(&**fd).map_err(|e| OverlayError::Layer { path: path.clone(), source: e.into() })?;
            devs.push(st.st_dev);
        }
        let work_dev = rustix::fs::fstat(&work).map_err(layer_err)?.st_dev;
        if work_dev != devs[UPPER] {
            return Err(OverlayError::WorkOtherFs { work: cfg.work.clone(), upper: cfg.upper.clone() });
        }
        let proc_fd =
            rustix::fs::open("/proc/self/fd", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| OverlayError::Proc(e.into()))?;
        Ok(Layers { roots, devs, work, proc_fd, no_openat2: AtomicBool::new(false) })
    }

    pub(crate) fn count(&self) -> usize {
        self.roots.len()
    }

    pub(crate) fn root(&self, layer: usize) -> Real {
        Real { layer, fd: self.roots[layer].clone() }
    }

    pub(crate) fn work(&self) -> &OwnedFd {
        &self.work
    }

    /// Inode number reported for a real inode: the real number when the layer shares the
    /// upper filesystem (as kernel overlayfs does without xino), else tagged with the layer
    /// index in the high bits so two filesystems cannot collide.
    pub(crate) fn report_ino(&self, layer: usize, st: &Stat) -> u64 {
        self.report_ino_raw(layer, st.st_ino)
    }

    pub(crate) fn report_ino_raw(&self, layer: usize, ino: u64) -> u64 {
        if self.devs[layer] == self.devs[UPPER] {
            ino
        } else {
            ino ^ ((layer as u64) << 56)
        }
    }

    /// Opens the entry `name` of directory `dir` without following any symlink: `O_PATH`
    /// (plus `flags`) on the entry itself, a symlink included.
    pub(crate) fn open_at(&self, dir: &impl AsFd, name: &OsStr, flags: OFlags, mode: u32) -> Result<OwnedFd, Errno> {
        check_name(name)?;
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(mode);
        if !self.no_openat2.load(Ordering::Relaxed) {
            let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(dir, name, flags, mode, resolve) {
                Err(Errno::NOSYS) => self.no_openat2.store(true, Ordering::Relaxed),
                // Not a symlink refused by RESOLVE_NO_SYMLINKS: O_NOFOLLOW gives ELOOP there too.
                r => return r,
            }
        }
        rustix::fs::openat(dir, name, flags, mode)
    }

    /// An `O_PATH` handle of the entry `name` in `dir`.
    pub(crate) fn open_path(&self, dir: &impl AsFd, name: &OsStr) -> Result<OwnedFd, Errno> {
        self.open_at(dir, name, OFlags::PATH, 0)
    }

    /// Opens the object behind the handle `fd` again, with real access `flags`: through
    /// `/proc/self/fd/N`, so it reaches exactly that object, even once it has no name left.
    /// A directory is opened as `.` relative to its handle instead: the same object (a
    /// removed one too), without a procfs walk (about 4 µs less per listing here).
    pub(crate) fn reopen(&self, fd: &impl AsFd, flags: OFlags) -> Result<OwnedFd, Errno> {
        if flags.contains(OFlags::DIRECTORY) {
            return rustix::fs::openat(fd, ".", flags | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty());
        }
        let n = fd.as_fd().as_raw_fd().to_string();
        rustix::fs::openat(&self.proc_fd, n.as_str(), flags | OFlags::CLOEXEC, Mode::empty())
    }

    /// Whether the directory behind `fd` carries `user.overlay.opaque=y`.
    pub(crate) fn is_opaque(&self, fd: &impl AsFd) -> bool {
        let mut buf = [0u8; 4];
        matches!(rustix::fs::getxattr(proc_path(fd).as_c_str(), OPAQUE_XATTR, &mut buf), Ok(1) if buf[0] == b'y')
    }

    /// Creates a whiteout (a 0/0 character device, which unprivileged users may create since
    /// Linux 5.8) named `name` in the upper directory `dir`.
    pub(crate) fn make_whiteout(&self, dir: &impl AsFd, name: &OsStr) -> Result<(), Errno> {
        check_name(name)?;
        rustix::fs::mknodat(dir, name, FileType::CharacterDevice, Mode::empty(), 0)
    }
}

/// `/proc/self/fd/N`: a path for the calls that have no `*at` form (xattrs, chmod of a handle);
/// the kernel resolves it to the object itself, whatever name it has now.
pub(crate) fn proc_path(fd: &impl AsFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())).expect("no NUL in a number")
}

/// The entry `name` of `dir`, not followed if it is a symlink.
pub(crate) fn stat_at(dir: &impl AsFd, name: &OsStr) -> Result<Stat, Errno> {
    check_name(name)?;
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
}

/// Sets the access and modification times of the object behind the handle `fd` (a symlink
/// included: `AT_EMPTY_PATH` works on `O_PATH` handles).
pub(crate) fn set_times(fd: &impl AsFd, times: &Timestamps) -> Result<(), Errno> {
    match rustix::fs::utimensat(fd, "", times, AtFlags::EMPTY_PATH) {
        Err(Errno::INVAL) | Err(Errno::BADF) => {
            rustix::fs::utimensat(rustix::fs::CWD, proc_path(fd).as_c_str(), times, AtFlags::empty())
        }
        r => r,
    }
}

/// The timestamps of `st` (access, modification), to put back after a change.
pub(crate) fn times_of(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec { tv_sec: st.st_atime, tv_nsec: st.st_atime_nsec as _ },
        last_modification: Timespec { tv_sec: st.st_mtime, tv_nsec: st.st_mtime_nsec as _ },
    }
}

pub(crate) fn is_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

pub(crate) fn is_dir(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}
