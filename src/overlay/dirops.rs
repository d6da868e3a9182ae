//! Namespace changes that add a name: create, mkdir, mknod, symlink, link. Removals and
//! renames are in `rename.rs`.
//!
//! Every change lands in the upper layer, in the handle of the parent's upper directory. A
//! directory created where a whiteout was becomes opaque. New entries get the caller's ids,
//! and the parent's group when the parent is set-group-ID (the upper filesystem gives that
//! group, and the set-group-ID bit to a new directory, by itself).

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use fuser::FileAttr;
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, RenameFlags, Uid, XattrFlags};
use rustix::io::Errno;

use super::filesystem::{Overlay, R};
use super::inode::Found;
use super::layers::{check_name, is_whiteout, proc_path, stat_at, Layers, Real, OPAQUE_XATTR, UPPER};
use super::lookup::{lookup_merged, Open};

/// What to create.
#[derive(Debug)]
pub(crate) enum New<'a> {
    File {
        mode: u32,
        flags: i32,
    },
    Dir {
        mode: u32,
    },
    Symlink {
        target: &'a Path,
    },
    Node {
        mode: u32,
        rdev: u32,
    },
    /// A hard link to the upper object behind this handle.
    Link {
        from: Arc<OwnedFd>,
    },
}

/// Who creates: the caller's ids, as the FUSE request carries them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// A new entry: the open file (for `create`) and the entry's handle.
type Made = (Option<OwnedFd>, OwnedFd);

impl Overlay {
    /// The handles of directory node `parent`, which must still have a name.
    pub(crate) fn parent_dir(&self, parent: u64) -> R<Vec<Real>> {
        let dir = self.node(parent)?;
        if !dir.is_dir {
            return Err(Errno::NOTDIR);
        }
        if dir.dead {
            return Err(Errno::NOENT);
        }
        self.reals_locked(parent)
    }

    /// Creates `name` in `parent`; returns its node id, attributes and, for files, the fd.
    pub(crate) fn create_entry(
        &self,
        who: Caller,
        parent: u64,
        name: &OsStr,
        what: New<'_>,
    ) -> R<(u64, u64, FileAttr, Option<OwnedFd>)> {
        let _tree = self.tree_write();
        self.create_entry_locked(who, parent, name, what)
    }

    fn create_entry_locked(
        &self,
        who: Caller,
        parent: u64,
        name: &OsStr,
        what: New<'_>,
    ) -> R<(u64, u64, FileAttr, Option<OwnedFd>)> {
        check_name(name)?;
        let dir = self.parent_dir(parent)?;
        let over_whiteout = match dir.first().filter(|r| r.layer == UPPER).map(|r| stat_at(&*r.fd, name)) {
            // A whiteout is a free name, replaced atomically.
            Some(Ok(st)) if is_whiteout(&st) => true,
            Some(Ok(_)) => return Err(Errno::EXIST),
            Some(Err(Errno::NOENT)) | None => {
                let lower = if dir[0].layer == UPPER { &dir[1..] } else { &dir[..] };
                if !lower.is_empty() && lookup_merged(&self.layers, lower, name, Open::Nothing)?.is_some() {
                    return Err(Errno::EXIST);
                }
                false
            }
            Some(Err(e)) => return Err(e),
        };
        let upper = self.upper_dir(parent)?;
        let (uid, gid) = self.owner_for(who, &upper)?;
        let (file, fd) = if over_whiteout {
            self.make_over_whiteout(&upper, name, &what, uid, gid)?
        } else {
            make(&self.layers, &*upper, name, &what, uid, gid)?
        };
        let stat = rustix::fs::fstat(&fd)?;
        let (id, generation, attr) =
            self.remember(parent, name, Found { layers: vec![UPPER], fds: vec![Arc::new(fd)], stat });
        Ok((id, generation, attr, file))
    }

    /// Builds the new entry in work and moves it over the whiteout `name` in `upper`: a
    /// rename for non-directories, an exchange for a directory (marked opaque first, so the
    /// lower directory that the whiteout hid stays hidden), after which the whiteout is deleted.
    fn make_over_whiteout(
        &self,
        upper: &OwnedFd,
        name: &OsStr,
        what: &New<'_>,
        uid: Option<Uid>,
        gid: Option<Gid>,
    ) -> R<Made> {
        let tmp = self.tmp_name();
        let work = self.layers.work();
        let made = make(&self.layers, work, OsStr::new(&tmp), what, uid, gid)?;
        let dir = matches!(what, New::Dir { .. });
        let placed = if dir {
            set_opaque(&made.1)
                .and_then(|()| rustix::fs::renameat_with(work, tmp.as_str(), upper, name, RenameFlags::EXCHANGE))
        } else {
            rustix::fs::renameat(work, tmp.as_str(), upper, name)
        };
        match placed {
            Ok(()) if dir => rustix::fs::unlinkat(work, tmp.as_str(), AtFlags::empty())?,
            Ok(()) => {}
            Err(e) => {
                let flags = if dir { AtFlags::REMOVEDIR } else { AtFlags::empty() };
                let _ = rustix::fs::unlinkat(work, tmp.as_str(), flags);
                return Err(e);
            }
        }
        Ok(made)
    }

    /// The owner to set on a new entry in the upper directory `dir`, or `None` where the
    /// filesystem already chose right (the server's own ids; the group of a set-group-ID
    /// parent). The parent's mode is read only when the caller's group is not the server's.
    fn owner_for(&self, who: Caller, dir: &OwnedFd) -> R<(Option<Uid>, Option<Gid>)> {
        let uid = (who.uid != self.euid).then(|| Uid::from_raw(who.uid));
        let gid = if who.gid == self.egid || rustix::fs::fstat(dir)?.st_mode & 0o2000 != 0 {
            None
        } else {
            Some(Gid::from_raw(who.gid))
        };
        Ok((uid, gid))
    }

    /// Copies up the entry `ino` and hard-links it as `name` in `newparent`.
    pub(crate) fn link(&self, ino: u64, newparent: u64, name: &OsStr) -> R<(u64, u64, FileAttr)> {
        let _tree = self.tree_write();
        self.copy_up_node(ino, false)?;
        let from = self.reals_locked(ino)?.swap_remove(0);
        if from.layer != UPPER {
            return Err(Errno::IO);
        }
        let who = Caller { uid: self.euid, gid: self.egid };
        let (id, generation, attr, _) = self.create_entry_locked(who, newparent, name, New::Link { from: from.fd })?;
        Ok((id, generation, attr))
    }
}

/// Sets `user.overlay.opaque=y` on the directory behind the handle `fd`.
pub(crate) fn set_opaque(fd: &impl AsFd) -> R<()> {
    rustix::fs::setxattr(proc_path(fd).as_c_str(), OPAQUE_XATTR, b"y", XattrFlags::empty())
}

/// Creates the entry `what` as `name` in `dir`, gives it the caller's ids, and returns its
/// handle (and the open file for a regular file).
fn make(layers: &Layers, dir: &impl AsFd, name: &OsStr, what: &New<'_>, uid: Option<Uid>, gid: Option<Gid>) -> R<Made> {
    check_name(name)?;
    let mut file = None;
    match what {
        New::File { mode, flags } => {
            let requested = OFlags::from_bits_retain(*flags as u32);
            let keep = OFlags::SYNC | OFlags::DSYNC;
            let flags = (requested & keep)
                | super::filesystem::writable_mode(requested)
                | OFlags::CREATE
                | OFlags::EXCL
                | OFlags::NOFOLLOW
                | OFlags::CLOEXEC;
            file = Some(rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(mode & 0o7777))?);
        }
        New::Dir { mode } => rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode & 0o7777))?,
        New::Symlink { target } => {
            let target = CString::new(target.as_os_str().as_encoded_bytes()).map_err(|_| Errno::INVAL)?;
            rustix::fs::symlinkat(target.as_c_str(), dir, name)?
        }
        New::Node { mode, rdev } => rustix::fs::mknodat(
            dir,
            name,
            FileType::from_raw_mode(*mode),
            Mode::from_raw_mode(mode & 0o7777),
            u64::from(*rdev),
        )?,
        New::Link { from } => {
            // linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH in the initial namespace; the
            // magic link reaches the same object without it.
            rustix::fs::linkat(rustix::fs::CWD, proc_path(&**from).as_c_str(), dir, name, AtFlags::SYMLINK_FOLLOW)?;
            return Ok((None, layers.open_path(dir, name)?));
        }
    }
    let remove = |e: Errno| {
        let flags = if matches!(what, New::Dir { .. }) { AtFlags::REMOVEDIR } else { AtFlags::empty() };
        let _ = rustix::fs::unlinkat(dir, name, flags);
        e
    };
    // By name: the caller holds the tree lock, so the name is still the new entry (a re-open
    // of the file through /proc would cost a procfs walk per create).
    let fd = layers.open_path(dir, name).map_err(remove)?;
    if uid.is_some() || gid.is_some() {
        let r = rustix::fs::chownat(&fd, "", uid, gid, AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW);
        // chown(2) clears the set-id bits the entry was created with; the kernel's overlay creates it with the
        // caller's ids directly and keeps them, so put them back.
        let setid = match what {
            New::File { mode, .. } | New::Dir { mode } | New::Node { mode, .. } => Some(*mode & 0o7777),
            _ => None,
        }
        .filter(|m| m & 0o6000 != 0);
        let r = r.and_then(|()| match setid {
            Some(m) => rustix::fs::chmod(proc_path(&fd).as_c_str(), Mode::from_raw_mode(m)),
            None => Ok(()),
        });
        r.map_err(remove)?;
    }
    Ok((file, fd))
}
