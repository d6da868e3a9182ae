//! Namespace changes that take a name away: unlink, rmdir, rename.
//!
//! A removal of a name that a lower layer still shows leaves a whiteout; a directory that has
//! lower parts cannot be renamed (EXDEV, as kernel overlayfs without `redirect_dir`). Nodes
//! that lose their last name keep their handles: open files go on working with `st_nlink` 0.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, RenameFlags};
use rustix::io::Errno;

use super::dirops::set_opaque;
use super::filesystem::{Overlay, R};
use super::inode::{Found, Table};
use super::layers::{check_name, is_dir, is_whiteout, stat_at, Real, UPPER};
use super::lookup::{lookup_merged, open_same, Open};
use super::readdir::empty_upper_whiteouts;

impl Overlay {
    /// Removes a non-directory (`dir == false`) or an empty directory.
    pub(crate) fn remove(&self, parent: u64, name: &OsStr, dir: bool) -> R<()> {
        let _tree = self.tree_write();
        check_name(name)?;
        let parent_reals = self.parent_dir(parent)?;
        let mut found = lookup_merged(&self.layers, &parent_reals, name, if dir { Open::Dirs } else { Open::Nothing })?
            .ok_or(Errno::NOENT)?;
        match (dir, is_dir(&found.stat)) {
            (false, true) => return Err(Errno::ISDIR),
            (true, false) => return Err(Errno::NOTDIR),
            _ => {}
        }
        let need_whiteout = found.layer() != UPPER || lower_has(&parent_reals, name);
        let id = self.id_of(parent, name, &found);
        // A node that may lose its last name needs a handle from now on: take the one it holds
        // now (the budget may close it before the end of this call), else open one. A node
        // the kernel does not hold needs none.
        if found.fds.is_empty() {
            let held = self.table().get(id).filter(|n| n.key == found.key()).map(|n| n.fds.clone());
            match held {
                Some(Some(fds)) => found.fds = fds,
                Some(None) => {
                    let real = parent_reals.iter().find(|r| r.layer == found.layer()).ok_or(Errno::STALE)?;
                    found.fds.push(Arc::new(open_same(&self.layers, real, name, &found.stat)?));
                }
                None => {}
            }
        }
        if dir {
            let whiteouts = empty_upper_whiteouts(&self.layers, &found.reals())?.ok_or(Errno::NOTEMPTY)?;
            if found.layer() == UPPER {
                for wh in whiteouts {
                    rustix::fs::unlinkat(&*found.fds[0], wh.as_os_str(), AtFlags::empty())?;
                }
            }
        }
        if found.layer() == UPPER {
            let upper = &parent_reals[0].fd;
            if need_whiteout {
                self.replace_with_whiteout(upper, name, dir)?;
            } else {
                let flags = if dir { AtFlags::REMOVEDIR } else { AtFlags::empty() };
                rustix::fs::unlinkat(&**upper, name, flags)?;
            }
        } else {
            let upper = self.upper_dir(parent)?;
            self.layers.make_whiteout(&*upper, name)?;
        }
        let mut table = self.table();
        // The node may have lost its last name: it needs its handles from now on. (Nothing
        // closes handles meanwhile: that happens only under the tree lock, held here.)
        keep_handles(&mut table, id, &found);
        if dir {
            table.mark_dead(id);
        } else {
            let last = found.layer() != UPPER || found.stat.st_nlink <= 1;
            table.name_removed(id, parent, name, last);
        }
        Ok(())
    }

    /// The node id the kernel knows the entry `found` named `name` in `parent` by.
    pub(crate) fn id_of(&self, parent: u64, name: &OsStr, found: &Found) -> u64 {
        let hint = self.layers.report_ino(found.layer(), &found.stat);
        self.table().id_for(parent, name, found, hint)
    }

    /// Atomically turns the upper entry `name` of `upper` into a whiteout (built in work, then
    /// renamed over a file or exchanged with a directory).
    fn replace_with_whiteout(&self, upper: &OwnedFd, name: &OsStr, dir: bool) -> R<()> {
        let work = self.layers.work();
        let tmp = self.tmp_name();
        rustix::fs::mknodat(work, tmp.as_str(), FileType::CharacterDevice, Mode::empty(), 0)?;
        if dir {
            let r = rustix::fs::renameat_with(work, tmp.as_str(), upper, name, RenameFlags::EXCHANGE);
            if let Err(e) = r {
                let _ = rustix::fs::unlinkat(work, tmp.as_str(), AtFlags::empty());
                return Err(e);
            }
            rustix::fs::unlinkat(work, tmp.as_str(), AtFlags::REMOVEDIR)
        } else {
            let r = rustix::fs::renameat(work, tmp.as_str(), upper, name);
            if r.is_err() {
                let _ = rustix::fs::unlinkat(work, tmp.as_str(), AtFlags::empty());
            }
            r
        }
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
        let _tree = self.tree_write();
        check_name(name)?;
        check_name(newname)?;
        let old_reals = self.parent_dir(parent)?;
        let new_reals = self.parent_dir(newparent)?;
        let src = lookup_merged(&self.layers, &old_reals, name, Open::All)?.ok_or(Errno::NOENT)?;
        let dst = lookup_merged(&self.layers, &new_reals, newname, Open::All)?;
        let exchange = flags.contains(RenameFlags::EXCHANGE);
        if parent == newparent && name == newname {
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
            if !exchange && src.layer() == UPPER && d.layer() == UPPER && d.key() == src.key() {
                // Two names of one upper file: rename(2) does nothing (see the design notes).
                return Ok(());
            }
            if !exchange {
                self.check_replace(&src, d)?;
            }
        }
        // The node ids as the kernel knows them (before copy-up changes the real identities).
        let src_id = self.id_of(parent, name, &src);
        let dst_id = dst.as_ref().map(|d| self.id_of(newparent, newname, d));
        let old_upper = self.upper_dir(parent)?;
        let new_upper = self.upper_dir(newparent)?;
        let moved = self.copy_up_entry(parent, name, &src, false)?;
        if let (true, Some(d)) = (exchange, &dst) {
            self.copy_up_entry(newparent, newname, d, false)?;
        }
        let old_needs_whiteout = !exchange && lower_has(&old_reals, name);
        if !exchange {
            self.clear_target(&new_upper, newname, dst.as_ref(), is_dir(&src.stat))?;
        }
        let mut rflags = flags & (RenameFlags::EXCHANGE | RenameFlags::NOREPLACE);
        if rflags.contains(RenameFlags::NOREPLACE) && stat_at(&*new_upper, newname).is_ok_and(|st| is_whiteout(&st)) {
            // A whiteout is a free name (the lookup above found nothing there): a plain rename
            // replaces it atomically, where RENAME_NOREPLACE would fail with EEXIST.
            rflags.remove(RenameFlags::NOREPLACE);
        }
        rustix::fs::renameat_with(&*old_upper, name, &*new_upper, newname, rflags)?;
        if is_dir(&src.stat) && new_reals.len() > 1 {
            set_opaque(&*moved.fds[0])?;
        }
        if old_needs_whiteout {
            self.layers.make_whiteout(&*old_upper, name)?;
        }
        let mut table = self.table();
        if let (Some(id), Some(d), false) = (dst_id, &dst, exchange) {
            keep_handles(&mut table, id, d);
            if is_dir(&d.stat) {
                table.mark_dead(id);
            } else {
                let last = d.layer() != UPPER || d.stat.st_nlink <= 1;
                table.name_removed(id, newparent, newname, last);
            }
        }
        table.name_moved(src_id, (parent, name), (newparent, newname));
        if let (Some(id), true) = (dst_id, exchange) {
            table.name_moved(id, (newparent, newname), (parent, name));
        }
        Ok(())
    }

    /// The kernel's checks for replacing `d` by `src`: type match, an empty target directory.
    fn check_replace(&self, src: &Found, d: &Found) -> R<()> {
        match (is_dir(&src.stat), is_dir(&d.stat)) {
            (true, false) => Err(Errno::NOTDIR),
            (false, true) => Err(Errno::ISDIR),
            (true, true) => empty_upper_whiteouts(&self.layers, &d.reals())?.map(|_| ()).ok_or(Errno::NOTEMPTY),
            (false, false) => Ok(()),
        }
    }

    /// Makes the upper target name ready to be renamed over: whiteouts inside an empty target
    /// directory go, and a whiteout cannot be replaced by a directory so it is removed.
    fn clear_target(&self, upper: &OwnedFd, newname: &OsStr, dst: Option<&Found>, src_dir: bool) -> R<()> {
        if let Some(d) = dst.filter(|d| d.layer() == UPPER && is_dir(&d.stat)) {
            if let Some(whs) = empty_upper_whiteouts(&self.layers, &d.reals())? {
                for wh in whs {
                    rustix::fs::unlinkat(&*d.fds[0], wh.as_os_str(), AtFlags::empty())?;
                }
            }
        }
        match stat_at(upper, newname) {
            Ok(st) if is_whiteout(&st) && src_dir => rustix::fs::unlinkat(upper, newname, AtFlags::empty()),
            _ => Ok(()),
        }
    }
}

/// Gives node `id` (if live and still this entry) the handles of `found` when its own were
/// closed.
fn keep_handles(table: &mut Table, id: u64, found: &Found) {
    if table.get(id).is_some_and(|n| n.key == found.key() && n.layers == found.layers) {
        table.install_fds(id, found.fds.clone());
    }
}

/// Whether `name` is visible in a lower layer of the directory `dir` (its handles, top
/// first): decides if a removal must leave a whiteout.
fn lower_has(dir: &[Real], name: &OsStr) -> bool {
    dir.iter().filter(|r| r.layer != UPPER).find_map(|r| stat_at(&*r.fd, name).ok()).is_some_and(|st| !is_whiteout(&st))
}

/// Kernel overlayfs without `redirect_dir` refuses to move a directory that has lower parts.
fn check_movable(f: &Found) -> R<()> {
    if is_dir(&f.stat) && (f.layer() != UPPER || f.layers.len() > 1) {
        return Err(Errno::XDEV);
    }
    Ok(())
}
