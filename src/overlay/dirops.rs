//! Namespace changes: create, mkdir, mknod, symlink, link, unlink, rmdir, rename.
//!
//! Every change lands in the upper layer. A removal of a name that a lower layer still shows
//! leaves a whiteout; a directory created where a whiteout was becomes opaque; a directory
//! that has lower parts cannot be renamed (EXDEV, as kernel overlayfs without `redirect_dir`).

use std::ffi::{CString, OsStr};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use fuser::FileAttr;
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, RenameFlags, Uid, XattrFlags};
use rustix::io::Errno;

use super::filesystem::{Overlay, R};
use super::inode::Found;
use super::layers::{child_path, is_dir, is_whiteout, OPAQUE_XATTR, UPPER};
use super::lookup::lookup_merged;
use super::readdir::empty_upper_whiteouts;

/// What to create.
#[derive(Debug)]
pub(crate) enum New<'a> {
    File { mode: u32, flags: i32 },
    Dir { mode: u32 },
    Symlink { target: &'a Path },
    Node { mode: u32, rdev: u32 },
    Link { from: PathBuf },
}

/// Who creates: the caller's ids, as the FUSE request carries them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl Overlay {
    fn parent_dir(&self, parent: u64) -> R<(PathBuf, Vec<usize>)> {
        let dir = self.node(parent)?;
        if !dir.is_dir {
            return Err(Errno::NOTDIR);
        }
        Ok((dir.path, dir.dir_layers))
    }

    /// Creates `name` in `parent`; returns its node id, attributes and, for files, the fd.
    pub(crate) fn create_entry(
        &self,
        who: Caller,
        parent: u64,
        name: &OsStr,
        what: New<'_>,
    ) -> R<(u64, u64, FileAttr, Option<OwnedFd>)> {
        let _tree = self.tree.write().unwrap_or_else(|e| e.into_inner());
        let (dir_path, dir_layers) = self.parent_dir(parent)?;
        let path = child_path(&dir_path, name);
        let over_whiteout = match self.layers.stat(UPPER, &path) {
            Ok(st) if is_whiteout(&st) => true,
            Ok(_) => return Err(Errno::EXIST),
            Err(Errno::NOENT) => {
                if dir_layers.len() > 1 && lookup_merged(&self.layers, &dir_layers, &path)?.is_some() {
                    return Err(Errno::EXIST);
                }
                false
            }
            Err(e) => return Err(e),
        };
        if dir_layers.first() != Some(&UPPER) {
            self.copy_up_dir_path(&dir_path)?;
        }
        let (uid, gid) = self.owner_for(who, &dir_path);
        let fd = if over_whiteout {
            self.make_over_whiteout(&path, &what, uid, gid)?
        } else {
            make(self.layers.root(UPPER), &path, &what, uid, gid, &self.layers)?
        };
        let stat = match &fd {
            Some(f) => rustix::fs::fstat(f)?,
            None => self.layers.stat(UPPER, &path)?,
        };
        let dir_layers = if is_dir(&stat) { vec![UPPER] } else { Vec::new() };
        let (id, generation, attr) = self.remember(path, Found { layer: UPPER, stat, dir_layers });
        Ok((id, generation, attr, fd))
    }

    /// Builds the new entry in work and moves it over the whiteout at `path`: a rename for
    /// non-directories, an exchange for a directory (marked opaque first, so the lower
    /// directory that the whiteout hid stays hidden), after which the whiteout is deleted.
    fn make_over_whiteout(
        &self,
        path: &Path,
        what: &New<'_>,
        uid: Option<Uid>,
        gid: Option<Gid>,
    ) -> R<Option<OwnedFd>> {
        let tmp = self.tmp_name();
        let work = self.layers.work();
        let upper = self.layers.root(UPPER);
        let fd = make(work, Path::new(&tmp), what, uid, gid, &self.layers)?;
        let dir = matches!(what, New::Dir { .. });
        let placed = if dir {
            set_opaque_at(work, &tmp)
                .and_then(|()| rustix::fs::renameat_with(work, tmp.as_str(), upper, path, RenameFlags::EXCHANGE))
        } else {
            rustix::fs::renameat(work, tmp.as_str(), upper, path)
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
        Ok(fd)
    }

    /// The owner to set on a new entry, or `None` where the filesystem already chose right
    /// (the server's own ids; the group of a set-group-ID parent directory).
    fn owner_for(&self, who: Caller, dir_path: &Path) -> (Option<Uid>, Option<Gid>) {
        let uid = (who.uid != self.euid).then(|| Uid::from_raw(who.uid));
        let sgid = || self.layers.stat(UPPER, dir_path).is_ok_and(|st| st.st_mode & 0o2000 != 0);
        let gid = (who.gid != self.egid && !sgid()).then(|| Gid::from_raw(who.gid));
        (uid, gid)
    }

    /// Removes a non-directory (`dir == false`) or an empty directory.
    pub(crate) fn remove(&self, parent: u64, name: &OsStr, dir: bool) -> R<()> {
        let _tree = self.tree.write().unwrap_or_else(|e| e.into_inner());
        let (dir_path, dir_layers) = self.parent_dir(parent)?;
        let path = child_path(&dir_path, name);
        let found = lookup_merged(&self.layers, &dir_layers, &path)?.ok_or(Errno::NOENT)?;
        match (dir, is_dir(&found.stat)) {
            (false, true) => return Err(Errno::ISDIR),
            (true, false) => return Err(Errno::NOTDIR),
            _ => {}
        }
        let need_whiteout = found.layer != UPPER || self.layers.lower_has(&dir_layers, &path);
        if dir {
            let whiteouts = empty_upper_whiteouts(&self.layers, &path, &found.dir_layers)?.ok_or(Errno::NOTEMPTY)?;
            if found.layer == UPPER {
                for wh in whiteouts {
                    rustix::fs::unlinkat(self.layers.root(UPPER), path.join(wh), AtFlags::empty())?;
                }
            }
        }
        if found.layer == UPPER {
            if need_whiteout {
                self.replace_with_whiteout(&path, dir)?;
            } else {
                let flags = if dir { AtFlags::REMOVEDIR } else { AtFlags::empty() };
                rustix::fs::unlinkat(self.layers.root(UPPER), &path, flags)?;
            }
        } else {
            self.copy_up_dir_path(&dir_path)?;
            self.layers.make_whiteout(&path)?;
        }
        let id = self.id_of(&path, &found);
        if dir {
            self.table().mark_dead(id);
        } else {
            let last = found.layer != UPPER || found.stat.st_nlink <= 1;
            self.table().name_removed(id, &path, last);
        }
        Ok(())
    }

    /// The node id the kernel knows the entry `found` at `path` by.
    pub(crate) fn id_of(&self, path: &Path, found: &Found) -> u64 {
        let hint = self.layers.report_ino(found.layer, &found.stat);
        self.table().id_for(path, found, hint)
    }

    /// Atomically turns the upper entry at `path` into a whiteout (built in work, then
    /// renamed over a file or exchanged with a directory).
    fn replace_with_whiteout(&self, path: &Path, dir: bool) -> R<()> {
        let work = self.layers.work();
        let tmp = self.tmp_name();
        rustix::fs::mknodat(work, tmp.as_str(), FileType::CharacterDevice, Mode::empty(), 0)?;
        let upper = self.layers.root(UPPER);
        if dir {
            let r = rustix::fs::renameat_with(work, tmp.as_str(), upper, path, RenameFlags::EXCHANGE);
            if let Err(e) = r {
                let _ = rustix::fs::unlinkat(work, tmp.as_str(), AtFlags::empty());
                return Err(e);
            }
            rustix::fs::unlinkat(work, tmp.as_str(), AtFlags::REMOVEDIR)
        } else {
            let r = rustix::fs::renameat(work, tmp.as_str(), upper, path);
            if r.is_err() {
                let _ = rustix::fs::unlinkat(work, tmp.as_str(), AtFlags::empty());
            }
            r
        }
    }

    /// Copies up the entry `ino` and hard-links it as `name` in `newparent`.
    pub(crate) fn link(&self, ino: u64, newparent: u64, name: &OsStr) -> R<(u64, u64, FileAttr)> {
        {
            let _tree = self.tree.write().unwrap_or_else(|e| e.into_inner());
            self.copy_up(ino)?;
        }
        let from = self.node(ino)?.path;
        let who = Caller { uid: self.euid, gid: self.egid };
        let (id, generation, attr, _) = self.create_entry(who, newparent, name, New::Link { from })?;
        Ok((id, generation, attr))
    }

    /// Renames like kernel overlayfs: copy up, rename in upper, whiteout the old name when a
    /// lower layer still has it, and make a moved directory opaque in a merged parent.
    pub(crate) fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> R<()> {
        if flags.contains(RenameFlags::WHITEOUT) {
            return Err(Errno::INVAL);
        }
        let _tree = self.tree.write().unwrap_or_else(|e| e.into_inner());
        let (old_dir, old_layers) = self.parent_dir(parent)?;
        let (new_dir, new_layers) = self.parent_dir(newparent)?;
        let old = child_path(&old_dir, name);
        let new = child_path(&new_dir, newname);
        let src = lookup_merged(&self.layers, &old_layers, &old)?.ok_or(Errno::NOENT)?;
        let dst = lookup_merged(&self.layers, &new_layers, &new)?;
        let exchange = flags.contains(RenameFlags::EXCHANGE);
        if old == new {
            return Ok(());
        }
        check_movable(&src)?;
        if exchange {
            check_movable(dst.as_ref().ok_or(Errno::NOENT)?)?;
        }
        if let Some(d) = &dst {
            if flags.contains(RenameFlags::NOREPLACE) {
                return Err(Errno::EXIST);
            }
            if !exchange {
                self.check_replace(&src, d, &new)?;
            }
        }
        self.copy_up_dir_path(&old_dir)?;
        self.copy_up_dir_path(&new_dir)?;
        self.copy_up_found(&old, &src, false)?;
        if let (true, Some(d)) = (exchange, &dst) {
            self.copy_up_found(&new, d, false)?;
        }
        let old_needs_whiteout = !exchange && self.layers.lower_has(&old_layers, &old);
        let upper = self.layers.root(UPPER);
        if !exchange {
            self.clear_target(&new, dst.as_ref(), is_dir(&src.stat))?;
        }
        let rflags = flags & (RenameFlags::EXCHANGE | RenameFlags::NOREPLACE);
        rustix::fs::renameat_with(upper, &old, upper, &new, rflags)?;
        if is_dir(&src.stat) && new_layers.len() > 1 {
            self.layers.set_opaque(&new)?;
        }
        if old_needs_whiteout {
            self.layers.make_whiteout(&old)?;
        }
        // The node ids as the kernel knows them (before copy-up changed the real identities).
        let src_id = self.id_of(&old, &src);
        let dst_id = dst.as_ref().map(|d| self.id_of(&new, d));
        let mut table = self.table();
        if let (Some(id), Some(d), false) = (dst_id, &dst, exchange) {
            if is_dir(&d.stat) {
                table.mark_dead(id);
            } else {
                let last = d.layer != UPPER || d.stat.st_nlink <= 1;
                table.name_removed(id, &new, last);
            }
        }
        if !is_dir(&src.stat) && !exchange {
            table.name_moved(src_id, &old, &new);
            return Ok(());
        }
        if exchange {
            let swap = PathBuf::from(format!("\0{}", self.tmp_name()));
            table.rename_paths(&old, &swap);
            table.rename_paths(&new, &old);
            table.rename_paths(&swap, &new);
        } else {
            table.rename_paths(&old, &new);
        }
        Ok(())
    }

    /// The kernel's checks for replacing `d` by `src`: type match, an empty target directory.
    fn check_replace(&self, src: &Found, d: &Found, new: &Path) -> R<()> {
        match (is_dir(&src.stat), is_dir(&d.stat)) {
            (true, false) => Err(Errno::NOTDIR),
            (false, true) => Err(Errno::ISDIR),
            (true, true) => empty_upper_whiteouts(&self.layers, new, &d.dir_layers)?.map(|_| ()).ok_or(Errno::NOTEMPTY),
            (false, false) => Ok(()),
        }
    }

    /// Makes the upper target name ready to be renamed over: whiteouts inside an empty target
    /// directory go, and a whiteout cannot be replaced by a directory so it is removed.
    fn clear_target(&self, new: &Path, dst: Option<&Found>, src_dir: bool) -> R<()> {
        let upper = self.layers.root(UPPER);
        if let Some(d) = dst.filter(|d| d.layer == UPPER && is_dir(&d.stat)) {
            if let Some(whs) = empty_upper_whiteouts(&self.layers, new, &d.dir_layers)? {
                for wh in whs {
                    rustix::fs::unlinkat(upper, new.join(wh), AtFlags::empty())?;
                }
            }
        }
        match self.layers.stat(UPPER, new) {
            Ok(st) if is_whiteout(&st) && src_dir => rustix::fs::unlinkat(upper, new, AtFlags::empty()),
            _ => Ok(()),
        }
    }
}

/// Kernel overlayfs without `redirect_dir` refuses to move a directory that has lower parts.
fn check_movable(f: &Found) -> R<()> {
    if is_dir(&f.stat) && (f.layer != UPPER || f.dir_layers.len() > 1) {
        return Err(Errno::XDEV);
    }
    Ok(())
}

fn set_opaque_at(dirfd: &OwnedFd, name: &str) -> R<()> {
    let fd = rustix::fs::openat(
        dirfd,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::fsetxattr(&fd, OPAQUE_XATTR, b"y", XattrFlags::empty())
}

/// Creates the entry `what` as `dirfd/path` and gives it the caller's ids.
fn make(
    dirfd: &OwnedFd,
    path: &Path,
    what: &New<'_>,
    uid: Option<Uid>,
    gid: Option<Gid>,
    layers: &super::layers::Layers,
) -> R<Option<OwnedFd>> {
    let mut fd = None;
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
            fd = Some(rustix::fs::openat(dirfd, path, flags, Mode::from_raw_mode(mode & 0o7777))?);
        }
        New::Dir { mode } => rustix::fs::mkdirat(dirfd, path, Mode::from_raw_mode(mode & 0o7777))?,
        New::Symlink { target } => {
            let target = CString::new(target.as_os_str().as_encoded_bytes()).map_err(|_| Errno::INVAL)?;
            rustix::fs::symlinkat(target.as_c_str(), dirfd, path)?
        }
        New::Node { mode, rdev } => rustix::fs::mknodat(
            dirfd,
            path,
            FileType::from_raw_mode(*mode),
            Mode::from_raw_mode(mode & 0o7777),
            u64::from(*rdev),
        )?,
        New::Link { from } => {
            rustix::fs::linkat(layers.root(UPPER), from, dirfd, path, AtFlags::empty())?;
            return Ok(None);
        }
    }
    if uid.is_some() || gid.is_some() {
        let r = match &fd {
            Some(f) => rustix::fs::fchown(f, uid, gid),
            None => rustix::fs::chownat(dirfd, path, uid, gid, AtFlags::SYMLINK_NOFOLLOW),
        };
        // chown(2) clears the set-id bits the entry was created with; the kernel's overlay creates it with the
        // caller's ids directly and keeps them, so put them back.
        let setid = match what {
            New::File { mode, .. } | New::Dir { mode } | New::Node { mode, .. } => Some(*mode & 0o7777),
            _ => None,
        }
        .filter(|m| m & 0o6000 != 0);
        let r = r.and_then(|()| match (setid, &fd) {
            (Some(m), Some(f)) => rustix::fs::fchmod(f, Mode::from_raw_mode(m)),
            (Some(m), None) => rustix::fs::chmodat(dirfd, path, Mode::from_raw_mode(m), AtFlags::empty()),
            (None, _) => Ok(()),
        });
        if let Err(e) = r {
            let flags = if matches!(what, New::Dir { .. }) { AtFlags::REMOVEDIR } else { AtFlags::empty() };
            let _ = rustix::fs::unlinkat(dirfd, path, flags);
            return Err(e);
        }
    }
    Ok(fd)
}
