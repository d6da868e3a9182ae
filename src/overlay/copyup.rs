//! Copy-up: bring a lower entry into the upper layer before it changes.
//!
//! Like kernel overlayfs, the copy is built in `WORK/work` under a temporary name and renamed
//! into place, so the upper layer never shows a half-copied file. Content keeps its holes
//! (SEEK_DATA/SEEK_HOLE, or a reflink when the filesystem has one); mode, owner, timestamps
//! and xattrs follow.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, SeekFrom, Stat};
use rustix::io::Errno;

use super::filesystem::Overlay;
use super::inode::{Found, ROOT};
use super::layers::{is_dir, set_times, times_of, UPPER};
use super::xattr::copy_xattrs;

const CHUNK: usize = 1 << 20;

impl Overlay {
    /// A fresh name in the work directory.
    pub(crate) fn tmp_name(&self) -> String {
        let n = self.tmp_counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("#burrow-{}-{n}", std::process::id())
    }

    /// The handle of directory node `id` in the upper layer, copying it (and its parents) up
    /// first. The caller holds the tree lock exclusively.
    pub(crate) fn upper_dir(&self, id: u64) -> Result<Arc<OwnedFd>, Errno> {
        let real = self.reals_locked(id)?.swap_remove(0);
        if real.layer == UPPER {
            return Ok(real.fd);
        }
        self.copy_up_node(id, false)?;
        let real = self.reals_locked(id)?.swap_remove(0);
        if real.layer != UPPER {
            return Err(Errno::IO);
        }
        Ok(real.fd)
    }

    /// Copies up node `id` (with its parent directories); `trunc` skips the content. An entry
    /// removed meanwhile, or below a removed directory (the kernel still holds it open), is
    /// copied to an unnamed upper object.
    /// The caller holds the tree lock exclusively.
    pub(crate) fn copy_up_node(&self, id: u64, trunc: bool) -> Result<(), Errno> {
        let node = self.node(id)?;
        if node.layer() == UPPER {
            return Ok(());
        }
        let found = self.found_of(id)?;
        if node.dead || !self.named(node.parent) {
            return self.copy_up_orphan(id, &found, trunc);
        }
        self.copy_up_entry(node.parent, &node.name, &found, trunc).map(|_| ())
    }

    /// Whether directory node `dir` and all its ancestors up to the root still have their
    /// names (a child of a removed directory has nowhere to be copied to).
    fn named(&self, mut dir: u64) -> bool {
        let table = self.table();
        while dir != ROOT {
            match table.get(dir) {
                Some(n) if !n.dead => dir = n.parent,
                _ => return false,
            }
        }
        true
    }

    /// Copies the entry `found` named `name` in directory node `parent` into the upper layer
    /// (copying the parent up first) and re-points its node; returns the entry as found now.
    /// The parent's times stay as they were, as with kernel overlayfs: a copy-up is no change.
    pub(crate) fn copy_up_entry(&self, parent: u64, name: &OsStr, found: &Found, trunc: bool) -> Result<Found, Errno> {
        if found.layer() == UPPER {
            return Ok(found.clone());
        }
        let dir = self.upper_dir(parent)?;
        let dir_stat = rustix::fs::fstat(&*dir)?;
        let work = self.layers.work();
        let tmp = self.tmp_name();
        let flags = if is_dir(&found.stat) { AtFlags::REMOVEDIR } else { AtFlags::empty() };
        let built = self
            .build_copy(&found.fds[0], &found.stat, &tmp, trunc)
            .and_then(|()| self.layers.open_path(work, OsStr::new(&tmp)))
            .and_then(|fd| rustix::fs::renameat(work, tmp.as_str(), &*dir, name).map(|()| fd));
        let fd = match built {
            Ok(fd) => Arc::new(fd),
            Err(e) => {
                let _ = rustix::fs::unlinkat(work, tmp.as_str(), flags);
                return Err(e);
            }
        };
        let _ = set_times(&*dir, &times_of(&dir_stat));
        self.copyups.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let upper = rustix::fs::fstat(&*fd)?;
        let hint = self.layers.report_ino(found.layer(), &found.stat);
        let mut table = self.table();
        let id = table.id_for(parent, name, found, hint);
        let live = table.get(id).is_some_and(|n| n.key == found.key());
        if live {
            table.moved_up(id, &upper, fd.clone());
        }
        drop(table);
        if live && !is_dir(&found.stat) && upper.st_nlink != found.stat.st_nlink {
            // A lower hard link: the copy breaks the link (nlink 1 now), which the kernel's
            // cached attributes would not show.
            self.invalidate_attr(id);
        }
        let mut now = Found { layers: vec![UPPER], fds: vec![fd], stat: upper };
        if is_dir(&found.stat) {
            now.layers.extend(&found.layers);
            now.fds.extend(found.fds.iter().cloned());
            if live {
                // Merged now: its nlink turns to 1.
                self.invalidate_attr(id);
            }
        }
        Ok(now)
    }

    /// A lower entry removed from the overlay (or below a removed directory) while still open,
    /// then changed: its copy (a file, or an empty directory) goes to the work directory and
    /// loses its name there at once, as an unnamed upper object (`st_nlink` 0); the node keeps
    /// the handle for good.
    fn copy_up_orphan(&self, id: u64, found: &Found, trunc: bool) -> Result<(), Errno> {
        let work = self.layers.work();
        let tmp = self.tmp_name();
        let flags = if is_dir(&found.stat) { AtFlags::REMOVEDIR } else { AtFlags::empty() };
        let built = self
            .build_copy(&found.fds[0], &found.stat, &tmp, trunc)
            .and_then(|()| self.layers.open_path(work, OsStr::new(&tmp)));
        let _ = rustix::fs::unlinkat(work, tmp.as_str(), flags);
        let fd = Arc::new(built?);
        self.copyups.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let upper = rustix::fs::fstat(&*fd)?;
        let mut table = self.table();
        // No name leads to it any more: dead, so its handle is never closed (it could not be
        // opened again by name).
        table.mark_dead(id);
        table.moved_up(id, &upper, fd);
        drop(table);
        self.invalidate_attr(id);
        Ok(())
    }

    /// Builds the copy of the object `src` (an `O_PATH` handle, attributes `st`) as
    /// `WORK/work/tmp`.
    fn build_copy(&self, src: &OwnedFd, st: &Stat, tmp: &str, trunc: bool) -> Result<(), Errno> {
        let work = self.layers.work();
        let perm = Mode::from_raw_mode(st.st_mode & 0o7777);
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                let src = self.layers.reopen(src, OFlags::RDONLY)?;
                let dst = rustix::fs::openat(
                    work,
                    tmp,
                    OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                if !trunc {
                    copy_data(&src, &dst, st.st_size as u64)?;
                }
                copy_xattrs(&src, &dst);
            }
            FileType::Directory => {
                rustix::fs::mkdirat(work, tmp, Mode::from_raw_mode(0o700))?;
                let src = self.layers.reopen(src, OFlags::RDONLY | OFlags::DIRECTORY);
                let dst =
                    rustix::fs::openat(work, tmp, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
                if let Ok(src) = src {
                    copy_xattrs(&src, &dst);
                }
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(src, "", Vec::new())?;
                rustix::fs::symlinkat(target.as_c_str(), work, tmp)?;
            }
            kind => rustix::fs::mknodat(work, tmp, kind, perm, st.st_rdev)?,
        }
        set_owner_mode_times(work, tmp, st)
    }
}

/// Applies owner, then mode (a chown clears set-id bits), then timestamps to `work/tmp`.
pub(crate) fn set_owner_mode_times(work: &OwnedFd, tmp: &str, st: &Stat) -> Result<(), Errno> {
    let symlink = FileType::from_raw_mode(st.st_mode) == FileType::Symlink;
    // A host owner that is not mapped here (shown as the overflow id) cannot be set: the copy
    // keeps the server's own id, as the only choice that still lets it be read and written.
    let _ = rustix::fs::chownat(
        work,
        tmp,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    );
    if !symlink {
        rustix::fs::chmodat(work, tmp, Mode::from_raw_mode(st.st_mode & 0o7777), AtFlags::empty())?;
    }
    rustix::fs::utimensat(work, tmp, &times_of(st), AtFlags::SYMLINK_NOFOLLOW)
}

/// Copies `size` bytes keeping holes: reflink if possible, else data segments only.
fn copy_data(src: &OwnedFd, dst: &OwnedFd, size: u64) -> Result<(), Errno> {
    if size == 0 || rustix::fs::ioctl_ficlone(dst, src).is_ok() {
        return Ok(());
    }
    let mut off = 0u64;
    while off < size {
        let data = match rustix::fs::seek(src, SeekFrom::Data(off)) {
            Ok(d) => d,
            Err(Errno::NXIO) => break,
            Err(_) => {
                copy_range(src, dst, off, size)?;
                break;
            }
        };
        let hole = rustix::fs::seek(src, SeekFrom::Hole(data)).unwrap_or(size);
        copy_range(src, dst, data, hole.min(size))?;
        off = hole;
    }
    rustix::fs::ftruncate(dst, size)
}

fn copy_range(src: &OwnedFd, dst: &OwnedFd, start: u64, end: u64) -> Result<(), Errno> {
    let mut pos = start;
    while pos < end {
        let len = ((end - pos) as usize).min(1 << 30);
        let (mut i, mut o) = (pos, pos);
        match rustix::fs::copy_file_range(src, Some(&mut i), dst, Some(&mut o), len) {
            Ok(0) => return Ok(()),
            Ok(n) => pos += n as u64,
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                return copy_range_rw(src.as_fd(), dst.as_fd(), pos, end)
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn copy_range_rw(
    src: std::os::fd::BorrowedFd<'_>,
    dst: std::os::fd::BorrowedFd<'_>,
    mut pos: u64,
    end: u64,
) -> Result<(), Errno> {
    let mut buf = vec![0u8; CHUNK];
    while pos < end {
        let want = ((end - pos) as usize).min(CHUNK);
        let n = rustix::io::pread(src, &mut buf[..want], pos)?;
        if n == 0 {
            break;
        }
        let mut done = 0;
        while done < n {
            done += rustix::io::pwrite(dst, &buf[done..n], pos + done as u64)?;
        }
        pos += n as u64;
    }
    Ok(())
}
