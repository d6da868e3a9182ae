//! The overlay state and the per-file operations (attributes, open, read, write, xattrs).
//! Namespace changes (create, remove, rename) live in `dirops.rs`; the `fuser::Filesystem`
//! glue in `fuse.rs`.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use fuser::{FileAttr, TimeOrNow};
use rustix::fs::{AtFlags, Mode, OFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;

use super::dirops::{Caller, New};
use super::handles::{FileHandle, Handles};
use super::inode::{attr, Found, Node, Table};
use super::layers::{Layers, UPPER};
use super::lookup::{lookup_merged, lookup_root};
use super::readdir::Entry;
use super::{xattr, OverlayConfig, OverlayError};

pub(crate) type R<T> = Result<T, Errno>;

#[derive(Debug)]
pub(crate) struct Overlay {
    pub(crate) layers: Layers,
    table: Mutex<Table>,
    /// Namespace changes take it exclusively; lookups and listings share it, so they never
    /// see the middle of a multi-step change (rename then whiteout, copy-up then update).
    pub(crate) tree: RwLock<()>,
    pub(crate) handles: Handles,
    pub(crate) ttl: Duration,
    pub(crate) tmp_counter: AtomicU64,
    /// Number of copy-ups so far: a read-only handle on a lower file checks for its own
    /// copy-up only when this moved since it was opened.
    pub(crate) copyups: AtomicU64,
    pub(crate) euid: u32,
    pub(crate) egid: u32,
    /// Set once the FUSE session exists: tells the kernel to drop attributes it cached for long.
    pub(crate) notifier: std::sync::Arc<std::sync::OnceLock<fuser::Notifier>>,
}

impl Overlay {
    pub(crate) fn new(cfg: &OverlayConfig) -> Result<Self, OverlayError> {
        let layers = Layers::new(cfg)?;
        let root =
            lookup_root(&layers).map_err(|e| OverlayError::Layer { path: cfg.upper.clone(), source: e.into() })?;
        Ok(Overlay {
            layers,
            table: Mutex::new(Table::new(root)),
            tree: RwLock::new(()),
            handles: Handles::default(),
            // Layers change only through this server, so the kernel may cache for long.
            ttl: Duration::from_secs(86400),
            tmp_counter: AtomicU64::new(0),
            copyups: AtomicU64::new(0),
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            notifier: std::sync::Arc::default(),
        })
    }

    /// Drops the kernel's cached attributes of node `id` (not its page cache: offset -1), for a change the
    /// kernel cannot see, such as a directory becoming merged on copy-up (its nlink turns to 1 then).
    pub(crate) fn invalidate_attr(&self, id: u64) {
        if let Some(n) = self.notifier.get() {
            let _ = n.inval_inode(fuser::INodeNo(id), -1, 0);
        }
    }

    pub(crate) fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn node(&self, ino: u64) -> R<Node> {
        self.table().get(ino).cloned().ok_or(Errno::STALE)
    }

    pub(crate) fn stat_node(&self, node: &Node) -> R<Stat> {
        self.layers.stat(node.layer, &node.path)
    }

    pub(crate) fn attr_of(&self, ino: u64, node: &Node, st: &Stat) -> FileAttr {
        attr(st, ino, node.is_dir && node.dir_layers.len() > 1)
    }

    /// Looks `name` up in directory `parent` and registers the result with the kernel.
    pub(crate) fn lookup(&self, parent: u64, name: &OsStr) -> R<Option<(u64, u64, FileAttr)>> {
        let _tree = self.tree.read().unwrap_or_else(|e| e.into_inner());
        let dir = self.node(parent)?;
        if !dir.is_dir {
            return Err(Errno::NOTDIR);
        }
        self.lookup_in(&dir, name)
    }

    /// Looks `name` up in the directory node `dir` (caller holds the tree lock).
    pub(crate) fn lookup_in(&self, dir: &Node, name: &OsStr) -> R<Option<(u64, u64, FileAttr)>> {
        let path = super::layers::child_path(&dir.path, name);
        let Some(found) = lookup_merged(&self.layers, &dir.dir_layers, &path)? else {
            return Ok(None);
        };
        Ok(Some(self.remember(path, found)))
    }

    /// Registers `found` with the kernel: node id, generation, attributes.
    pub(crate) fn remember(&self, path: PathBuf, found: Found) -> (u64, u64, FileAttr) {
        let hint = self.layers.report_ino(found.layer, &found.stat);
        let merged = found.dir_layers.len() > 1;
        let st = found.stat;
        let (id, generation) = self.table().remember(path, found, hint);
        (id, generation, attr(&st, id, merged))
    }

    pub(crate) fn getattr(&self, ino: u64, fh: Option<u64>) -> R<FileAttr> {
        let node = self.node(ino)?;
        let st = match fh.and_then(|fh| self.handles.get(fh)) {
            // A read-only handle opened before a copy-up still holds the lower file: the
            // attributes (the size the kernel reads up to) are the upper copy's, as for reads.
            Some(f) => match self.read_fd(&f)? {
                Some(upper) => rustix::fs::fstat(&*upper)?,
                None => rustix::fs::fstat(&f.fd)?,
            },
            None => self.stat_node(&node)?,
        };
        Ok(self.attr_of(ino, &node, &st))
    }

    /// chmod, chown, truncate, utimens: copy up, then change the upper file.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn setattr(
        &self,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<u64>,
    ) -> R<FileAttr> {
        let nothing =
            mode.is_none() && uid.is_none() && gid.is_none() && size.is_none() && atime.is_none() && mtime.is_none();
        let times_only = mode.is_none() && uid.is_none() && gid.is_none() && size.is_none();
        if nothing || (times_only && self.node(ino)?.dead) {
            // The writeback cache flushes the kernel's cached times, also of a file that was
            // just removed (its ctime changed): that must not bring it back by a copy-up.
            return self.getattr(ino, fh);
        }
        {
            let _tree = self.tree.write().unwrap_or_else(|e| e.into_inner());
            self.copy_up_flags(ino, size == Some(0))?;
        }
        let node = self.node(ino)?;
        let root = self.layers.root(UPPER);
        let path = super::layers::at(&node.path);
        if uid.is_some() || gid.is_some() {
            rustix::fs::chownat(
                root,
                path,
                uid.map(rustix::fs::Uid::from_raw),
                gid.map(rustix::fs::Gid::from_raw),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        if let Some(mode) = mode {
            rustix::fs::chmodat(root, path, Mode::from_raw_mode(mode & 0o7777), AtFlags::empty())?;
        }
        if let Some(size) = size {
            self.truncate(&node, size, fh)?;
        }
        // truncate(2) always stamps mtime, even to the same size; with the writeback cache the
        // kernel leaves that to the server.
        let mtime = mtime.or(size.map(|_| TimeOrNow::Now));
        if atime.is_some() || mtime.is_some() {
            let times = Timestamps { last_access: timespec(atime), last_modification: timespec(mtime) };
            rustix::fs::utimensat(root, path, &times, AtFlags::SYMLINK_NOFOLLOW)?;
        }
        let st = self.stat_node(&node)?;
        Ok(self.attr_of(ino, &node, &st))
    }

    fn truncate(&self, node: &Node, size: u64, fh: Option<u64>) -> R<()> {
        if let Some(f) = fh.and_then(|fh| self.handles.get(fh)) {
            if f.layer == UPPER && f.flags.intersects(OFlags::WRONLY | OFlags::RDWR) {
                return rustix::fs::ftruncate(&f.fd, size);
            }
        }
        let fd = self.layers.open(UPPER, &node.path, OFlags::WRONLY, 0)?;
        rustix::fs::ftruncate(&fd, size)
    }

    pub(crate) fn readlink(&self, ino: u64) -> R<Vec<u8>> {
        let node = self.node(ino)?;
        let target = rustix::fs::readlinkat(self.layers.root(node.layer), &node.path, Vec::new())?;
        Ok(target.into_bytes())
    }

    /// Opens the real file once for this FUSE handle; opening for writing copies up first.
    pub(crate) fn open(&self, ino: u64, flags: i32) -> R<u64> {
        let flags = OFlags::from_bits_retain(flags as u32);
        let write = flags.intersects(OFlags::WRONLY | OFlags::RDWR | OFlags::TRUNC);
        if write && self.node(ino)?.layer != UPPER {
            let _tree = self.tree.write().unwrap_or_else(|e| e.into_inner());
            self.copy_up_flags(ino, flags.contains(OFlags::TRUNC))?;
        }
        let epoch = self.copyups.load(Ordering::Acquire);
        let node = self.node(ino)?;
        let keep = OFlags::SYNC | OFlags::DSYNC | OFlags::TRUNC;
        let fd = self.layers.open(node.layer, &node.path, flags & keep | writable_mode(flags), 0);
        // A file with write-only permission for an unmapped owner cannot be opened for reading.
        let fd = match fd {
            Err(Errno::ACCESS) if flags & OFlags::RWMODE == OFlags::WRONLY => {
                self.layers.open(node.layer, &node.path, flags & (keep | OFlags::RWMODE), 0)?
            }
            fd => fd?,
        };
        Ok(self.handles.insert(FileHandle {
            fd,
            layer: node.layer,
            ino,
            epoch,
            flags: flags & OFlags::RWMODE,
            reopened: Mutex::new(None),
        }))
    }

    /// The fd to read from: the handle's own, or the upper copy if the file was copied up
    /// after this read-only handle was opened on the lower file.
    pub(crate) fn read_fd(&self, h: &FileHandle) -> R<Option<Arc<OwnedFd>>> {
        if h.layer == UPPER || self.copyups.load(Ordering::Acquire) == h.epoch {
            return Ok(None);
        }
        let mut reopened = h.reopened.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fd) = reopened.as_ref() {
            return Ok(Some(fd.clone()));
        }
        let node = self.node(h.ino)?;
        if node.layer == h.layer {
            return Ok(None);
        }
        let fd = Arc::new(self.layers.open(node.layer, &node.path, OFlags::RDONLY, 0)?);
        *reopened = Some(fd.clone());
        Ok(Some(fd))
    }

    pub(crate) fn file(&self, fh: u64) -> R<Arc<FileHandle>> {
        self.handles.get(fh).ok_or(Errno::BADF)
    }

    /// `/proc/self/fd/ROOT/PATH` for the node's real file: the xattr calls need a path (there
    /// is no `*at` form before Linux 6.13) and this one is resolved from the layer fd.
    fn proc_path(&self, node: &Node) -> PathBuf {
        let root = self.layers.root(node.layer).as_raw_fd();
        Path::new(&format!("/proc/self/fd/{root}")).join(&node.path)
    }

    pub(crate) fn getxattr(&self, ino: u64, name: &OsStr) -> R<Vec<u8>> {
        let node = self.node(ino)?;
        xattr::get(&self.proc_path(&node), name)
    }

    pub(crate) fn listxattr(&self, ino: u64) -> R<Vec<u8>> {
        let node = self.node(ino)?;
        xattr::list(&self.proc_path(&node))
    }

    pub(crate) fn setxattr(&self, ino: u64, name: &OsStr, value: &[u8], flags: i32) -> R<()> {
        if xattr::is_private(name) {
            return Err(Errno::OPNOTSUPP);
        }
        {
            let _tree = self.tree.write().unwrap_or_else(|e| e.into_inner());
            self.copy_up(ino)?;
        }
        let node = self.node(ino)?;
        xattr::set(&self.proc_path(&node), name, value, flags)
    }

    pub(crate) fn removexattr(&self, ino: u64, name: &OsStr) -> R<()> {
        let node = self.node(ino)?;
        // Removing a name the file does not have must not copy it up.
        xattr::get(&self.proc_path(&node), name)?;
        {
            let _tree = self.tree.write().unwrap_or_else(|e| e.into_inner());
            self.copy_up(ino)?;
        }
        let node = self.node(ino)?;
        xattr::remove(&self.proc_path(&node), name)
    }

    pub(crate) fn statfs(&self) -> R<rustix::fs::StatVfs> {
        rustix::fs::fstatvfs(self.layers.root(UPPER))
    }
}

/// The access mode to open a real file with: with the kernel's writeback cache, a write-only
/// open must also read (to fill partially written pages), so it becomes read-write.
pub(crate) fn writable_mode(flags: OFlags) -> OFlags {
    match flags & OFlags::RWMODE {
        OFlags::WRONLY => OFlags::RDWR,
        mode => mode,
    }
}

/// What a write by `who` does to the set-ID bits of the file `fd` when the caller lacks
/// CAP_FSETID (the kernel says so with `FUSE_WRITE_KILL_SUIDGID`; it sends it for direct-I/O
/// writes instead of clearing the bits itself): set-user-ID goes, set-group-ID goes if the
/// group may execute or the caller is neither in the file's group nor root of the namespace.
/// Returns whether the mode changed: the kernel must then be told, as it only drops its cached
/// size and times after a direct write (a `stat` asking for the mode alone would show the bits).
pub(crate) fn drop_setid_for_write(fd: &OwnedFd, who: Caller) -> R<bool> {
    let st = rustix::fs::fstat(fd)?;
    let mode = st.st_mode & 0o7777;
    let mut kill = mode & 0o4000;
    if mode & 0o2000 != 0 && (mode & 0o010 != 0 || (who.gid != st.st_gid && who.uid != 0)) {
        kill |= 0o2000;
    }
    if kill == 0 {
        return Ok(false);
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode & !kill))?;
    Ok(true)
}

fn timespec(t: Option<TimeOrNow>) -> Timespec {
    match t {
        None => Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT },
        Some(TimeOrNow::Now) => Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_NOW },
        Some(TimeOrNow::SpecificTime(t)) => {
            let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or(Duration::ZERO);
            Timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos() as _ }
        }
    }
}

impl Overlay {
    /// The merged listing of directory `ino` for a read at `offset`: a fresh one at offset 0,
    /// kept on the node so later offsets of the same pass index the same list, and dropped
    /// when the pass reads past the end (or the directory changes).
    pub(crate) fn dir_entries(&self, ino: u64, offset: u64) -> R<Arc<Vec<Entry>>> {
        let _tree = self.tree.read().unwrap_or_else(|e| e.into_inner());
        let node = self.node(ino)?;
        if !node.is_dir {
            return Err(Errno::NOTDIR);
        }
        if let Some(list) = node.listing.filter(|_| offset != 0) {
            if offset as usize >= list.len() {
                self.table().set_listing(ino, None);
            }
            return Ok(list);
        }
        let dot = |name: &str| Entry { name: name.into(), ino, kind: fuser::FileType::Directory };
        let mut list = vec![dot("."), dot("..")];
        list.extend(super::readdir::list(&self.layers, &node.path, &node.dir_layers)?);
        let list = Arc::new(list);
        self.table().set_listing(ino, Some(list.clone()));
        Ok(list)
    }

    /// Creates and opens a regular file (the `create` request).
    pub(crate) fn create_file(
        &self,
        who: Caller,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> R<(u64, u64, FileAttr)> {
        let (id, generation, attr, fd) = self.create_entry(who, parent, name, New::File { mode, flags })?;
        let fd = fd.ok_or(Errno::IO)?;
        let fh = self.handles.insert(FileHandle {
            fd,
            layer: UPPER,
            ino: id,
            epoch: 0,
            flags: OFlags::from_bits_retain(flags as u32) & OFlags::RWMODE,
            reopened: Mutex::new(None),
        });
        Ok((fh, generation, attr))
    }
}
