//! Copy-up: bring a lower entry into the upper layer before it changes.
//!
//! Like kernel overlayfs, the copy is built in `WORK/work` under a temporary name and renamed
//! into place, so the upper layer never shows a half-copied file. Content keeps its holes
//! (SEEK_DATA/SEEK_HOLE, or a reflink when the filesystem has one); mode, owner, timestamps
//! and xattrs follow.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, SeekFrom, Stat, Timespec, Timestamps};
use rustix::io::Errno;

use super::filesystem::Overlay;
use super::inode::Found;
use super::layers::{is_dir, UPPER};
use super::lookup::lookup_merged;
use super::xattr::copy_xattrs;

const CHUNK: usize = 1 << 20;

impl Overlay {
    /// A fresh name in the work directory.
    pub(crate) fn tmp_name(&self) -> String {
        let n = self.tmp_counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("#burrow-{}-{n}", std::process::id())
    }

    /// Ensures the directory at `path` exists in the upper layer, copying up its ancestors
    /// first; live nodes of these directories learn that they now have an upper part.
    pub(crate) fn copy_up_dir_path(&self, path: &Path) -> Result<(), Errno> {
        if path.as_os_str().is_empty() {
            return Ok(());
        }
        match self.layers.stat(UPPER, path) {
            Ok(st) if is_dir(&st) => return Ok(()),
            Ok(_) => return Err(Errno::IO),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
        let parent = path.parent().unwrap_or(Path::new(""));
        self.copy_up_dir_path(parent)?;
        let parent_layers = self.dir_layers_at(parent)?;
        let found = lookup_merged(&self.layers, &parent_layers, path)?.ok_or(Errno::NOENT)?;
        self.copy_up_found(path, &found, false)?;
        Ok(())
    }

    /// Layers of the merged directory at `path` (from the live node, else a fresh lookup).
    pub(crate) fn dir_layers_at(&self, path: &Path) -> Result<Vec<usize>, Errno> {
        {
            let table = self.table();
            if let Some(node) = table.dir_at(path).and_then(|id| table.get(id)) {
                return Ok(node.dir_layers.clone());
            }
        }
        let parent = path.parent().ok_or(Errno::NOENT)?;
        let parent_layers = self.dir_layers_at(parent)?;
        let found = lookup_merged(&self.layers, &parent_layers, path)?.ok_or(Errno::NOENT)?;
        Ok(found.dir_layers)
    }

    /// Copies up the node `ino` (with its parent directories); `trunc` skips the content.
    pub(crate) fn copy_up(&self, ino: u64) -> Result<(), Errno> {
        self.copy_up_flags(ino, false)
    }

    pub(crate) fn copy_up_flags(&self, ino: u64, trunc: bool) -> Result<(), Errno> {
        let node = self.node(ino)?;
        if node.layer == UPPER {
            return Ok(());
        }
        let parent = node.path.parent().unwrap_or(Path::new(""));
        self.copy_up_dir_path(parent)?;
        if node.is_dir {
            return self.copy_up_dir_path(&node.path);
        }
        let stat = self.layers.stat(node.layer, &node.path)?;
        let found = Found { layer: node.layer, stat, dir_layers: Vec::new() };
        self.copy_up_found(&node.path, &found, trunc)
    }

    /// Copies the entry `found` at `path` into the upper layer (its parent must be there).
    pub(crate) fn copy_up_found(&self, path: &Path, found: &Found, trunc: bool) -> Result<(), Errno> {
        if found.layer == UPPER {
            return Ok(());
        }
        let tmp = self.tmp_name();
        let work = self.layers.work();
        if let Err(e) = self.build_copy(path, found, &tmp, trunc) {
            let flags = if is_dir(&found.stat) { AtFlags::REMOVEDIR } else { AtFlags::empty() };
            let _ = rustix::fs::unlinkat(work, tmp.as_str(), flags);
            return Err(e);
        }
        rustix::fs::renameat(work, tmp.as_str(), self.layers.root(UPPER), path)?;
        self.copyups.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let upper = self.layers.stat(UPPER, path)?;
        let mut table = self.table();
        let hint = self.layers.report_ino(found.layer, &found.stat);
        let id = table.id_for(path, found, hint);
        if table.get(id).is_some() {
            table.moved_up(id, &upper);
        }
        let merged_dir = if is_dir(&found.stat) { table.dir_at(path) } else { None };
        if let Some(id) = merged_dir {
            table.moved_up(id, &upper);
        }
        drop(table);
        if let Some(id) = merged_dir {
            self.invalidate_attr(id);
        }
        Ok(())
    }

    fn build_copy(&self, path: &Path, found: &Found, tmp: &str, trunc: bool) -> Result<(), Errno> {
        let work = self.layers.work();
        let st = &found.stat;
        let perm = Mode::from_raw_mode(st.st_mode & 0o7777);
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                let src = self.layers.open(found.layer, path, OFlags::RDONLY, 0)?;
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
                let src = self.layers.open(found.layer, path, OFlags::RDONLY | OFlags::DIRECTORY, 0);
                let dst =
                    rustix::fs::openat(work, tmp, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
                if let Ok(src) = src {
                    copy_xattrs(&src, &dst);
                }
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(self.layers.root(found.layer), path, Vec::new())?;
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
    let times = Timestamps {
        last_access: Timespec { tv_sec: st.st_atime, tv_nsec: st.st_atime_nsec as _ },
        last_modification: Timespec { tv_sec: st.st_mtime, tv_nsec: st.st_mtime_nsec as _ },
    };
    rustix::fs::utimensat(work, tmp, &times, AtFlags::SYMLINK_NOFOLLOW)
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
