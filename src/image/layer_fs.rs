//! File-descriptor-relative operations inside one layer directory. Every path is resolved with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)` from the layer's
//! root fd, one directory fd at a time, and every final name is created or changed relative to its parent's fd
//! with no-follow semantics: no symlink, whether it came with the layer or was planted by an earlier entry, is
//! ever followed, and nothing above the layer root can be named.

use rustix::fs::{self as rfs, AtFlags, Dev, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The overlay's opaque-directory marker (kernel overlayfs `userxattr` name; docs/design/overlay.md).
pub const OPAQUE_XATTR: &str = "user.overlay.opaque";

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// Why a directory of an entry's path could not be opened.
#[derive(Debug)]
pub enum DirError {
    /// A component is a symbolic link (ELOOP from RESOLVE_NO_SYMLINKS), or would leave the root (EXDEV).
    Symlink,
    /// A component exists and is not a directory.
    NotDir,
    /// The directory does not exist (only when not creating).
    Missing,
    Io(Errno),
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Opens the directory at the relative path `name` below `parent` (one component or several), never following a
/// symlink and never leaving `parent`.
pub fn open_child_dir(parent: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, DirError> {
    match rfs::openat2(parent, name, dir_flags(), Mode::empty(), RESOLVE) {
        Ok(fd) => Ok(fd),
        Err(Errno::LOOP) | Err(Errno::XDEV) => Err(DirError::Symlink),
        Err(Errno::NOTDIR) => Err(DirError::NotDir),
        Err(Errno::NOENT) => Err(DirError::Missing),
        Err(e) => Err(DirError::Io(e)),
    }
}

/// Opens the directory `comps` below `root`, creating missing components (mode 0755, as tar does for implicit
/// parents) when `create`. A whiteout in the way is replaced by an opaque directory: within one layer, a
/// whiteout followed by entries below the same name means "delete the lower one, then create this".
pub fn open_dir(root: BorrowedFd<'_>, comps: &[OsString], create: bool) -> Result<OwnedFd, DirError> {
    // The common case, every directory already there: one openat2 of the whole path, just as safe.
    if !comps.is_empty() {
        let joined = comps.join(OsStr::new("/"));
        match open_child_dir(root, &joined) {
            Ok(fd) => return Ok(fd),
            Err(DirError::Missing) | Err(DirError::NotDir) if create => {}
            Err(e) => return Err(e),
        }
    }
    let mut fd = rfs::openat(root, ".", dir_flags(), Mode::empty()).map_err(DirError::Io)?;
    for c in comps {
        let next = match open_child_dir(fd.as_fd(), c) {
            Err(DirError::Missing) if create => {
                make_dir(fd.as_fd(), c, false)?;
                open_child_dir(fd.as_fd(), c)?
            }
            Err(DirError::NotDir) if create && is_whiteout(fd.as_fd(), c) => {
                rfs::unlinkat(fd.as_fd(), c.as_os_str(), AtFlags::empty()).map_err(DirError::Io)?;
                make_dir(fd.as_fd(), c, true)?;
                open_child_dir(fd.as_fd(), c)?
            }
            other => other?,
        };
        fd = next;
    }
    Ok(fd)
}

fn make_dir(parent: BorrowedFd<'_>, name: &OsStr, opaque: bool) -> Result<(), DirError> {
    match rfs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(DirError::Io(e)),
    }
    if opaque {
        let fd = open_child_dir(parent, name)?;
        set_opaque(fd.as_fd()).map_err(DirError::Io)?;
    }
    Ok(())
}

/// What is at `name` in `parent`, without following a symlink.
pub fn kind_at(parent: BorrowedFd<'_>, name: &OsStr) -> Option<rfs::Stat> {
    rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW).ok()
}

/// A 0/0 character device: the overlay's whiteout.
pub fn is_whiteout_stat(st: &rfs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

pub fn is_whiteout(parent: BorrowedFd<'_>, name: &OsStr) -> bool {
    kind_at(parent, name).is_some_and(|st| is_whiteout_stat(&st))
}

/// Creates the overlay whiteout for `name` (a 0/0 character device, which Linux >= 5.8 lets an unprivileged
/// user create: the one device `vfs_mknod` exempts from CAP_MKNOD).
pub fn make_whiteout(parent: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    rfs::mknodat(parent, name, FileType::CharacterDevice, Mode::empty(), 0 as Dev)
}

/// Marks a directory opaque: the overlay shows none of the lower layers' entries below it.
pub fn set_opaque(dir: BorrowedFd<'_>) -> Result<(), Errno> {
    rfs::fsetxattr(dir, OPAQUE_XATTR, b"y", rfs::XattrFlags::empty())
}

/// Removes whatever is at `name` in `parent`: a non-directory is unlinked, a directory removed with its whole
/// tree, walking by fds (no symlink in the tree is followed).
pub fn remove_entry(parent: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    match rfs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) => {
            {
                let dir = open_child_dir(parent, name).map_err(|e| match e {
                    DirError::Io(e) => e,
                    _ => Errno::NOTDIR,
                })?;
                let names: Vec<OsString> = rfs::Dir::read_from(dir.as_fd())?
                    .filter_map(|e| e.ok())
                    .map(|e| {
                        <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(e.file_name().to_bytes()).to_os_string()
                    })
                    .filter(|n: &OsString| n != "." && n != "..")
                    .collect();
                for n in names {
                    remove_entry(dir.as_fd(), &n)?;
                }
            }
            rfs::unlinkat(parent, name, AtFlags::REMOVEDIR)
        }
        Err(e) => Err(e),
    }
}

/// Creates a regular file `name` in `parent` for writing (it must not exist: the caller removed it).
pub fn create_file(parent: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rfs::openat(parent, name, flags, Mode::from_raw_mode(0o600))
}

/// Opens `name` in `parent` as an `O_PATH` handle without following it (to change a symlink's owner or times).
pub fn open_nofollow_path(parent: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    rfs::openat(parent, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
}

/// Opens `name` in `parent` for changing its metadata (a FIFO without blocking), never following a symlink.
pub fn open_for_meta(parent: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    rfs::openat(parent, name, flags, Mode::empty())
}
