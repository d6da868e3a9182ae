//! The overlay state and the per-file operations (attributes, open, read, write, xattrs).
//! Namespace changes (create, remove, rename) live in `dirops.rs`; the `fuser::Filesystem`
//! glue in `fuse.rs`.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use fuser::{FileAttr, TimeOrNow};
use rustix::fs::{AtFlags, Mode, OFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;

use super::closer::Closer;
use super::dirops::{Caller, New};
use super::handles::{FileHandle, Handles};
use super::inode::{attr, Found, Node, Table};
use super::layers::{proc_path, set_times, stat_at, Layers, Real, UPPER};
use super::lookup::{lookup_merged, lookup_root, Open};
use super::readdir::Entry;
use super::{xattr, OverlayConfig, OverlayError};

pub(crate) type R<T> = Result<T, Errno>;

/// Where a node's top real object is (see [`Overlay::locate`]).
enum Place {
    Handle(Real),
    Name { dir: Arc<OwnedFd>, name: OsString, layer: usize, key: (u64, u64) },
}

/// The locked node table; handles the table let go of are closed after it is unlocked.
pub(crate) struct TableGuard<'a>(Option<MutexGuard<'a, Table>>, &'a Closer);

impl std::ops::Deref for TableGuard<'_> {
    type Target = Table;
    fn deref(&self) -> &Table {
        self.0.as_ref().expect("held until drop")
    }
}

impl std::ops::DerefMut for TableGuard<'_> {
    fn deref_mut(&mut self) -> &mut Table {
        self.0.as_mut().expect("held until drop")
    }
}

impl Drop for TableGuard<'_> {
    fn drop(&mut self) {
        let Some(mut table) = self.0.take() else { return };
        let closing = table.take_closing();
        drop(table);
        if !closing.is_empty() {
            self.1.close(closing);
        }
    }
}

#[derive(Debug)]
pub(crate) struct Overlay {
    pub(crate) layers: Layers,
    table: Mutex<Table>,
    closer: Closer,
    /// Namespace changes take it exclusively; lookups, listings and re-opens of closed
    /// handles share it, so they never see the middle of a multi-step change (rename then
    /// whiteout, copy-up then update).
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
    /// The overlay of `cfg`, keeping at most `fd_budget` node handles open (see `inode.rs`).
    pub(crate) fn new(cfg: &OverlayConfig, fd_budget: usize) -> Result<Self, OverlayError> {
        let layers = Layers::new(cfg)?;
        let root =
            lookup_root(&layers).map_err(|e| OverlayError::Layer { path: cfg.upper.clone(), source: e.into() })?;
        Ok(Overlay {
            layers,
            table: Mutex::new(Table::new(root, fd_budget)),
            closer: Closer::new(),
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

    pub(crate) fn table(&self) -> TableGuard<'_> {
        TableGuard(Some(self.table.lock().unwrap_or_else(|e| e.into_inner())), &self.closer)
    }

    pub(crate) fn tree_read(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.tree.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn tree_write(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.tree.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn node(&self, ino: u64) -> R<Node> {
        self.table().get(ino).cloned().ok_or(Errno::STALE)
    }

    /// The node's open handles, if it has them.
    fn cached_reals(&self, id: u64) -> R<Option<Vec<Real>>> {
        let table = self.table();
        let node = table.get(id).ok_or(Errno::STALE)?;
        Ok(node
            .fds
            .as_ref()
            .map(|fds| node.layers.iter().zip(fds).map(|(&layer, fd)| Real { layer, fd: fd.clone() }).collect()))
    }

    /// The handles of node `id`'s real objects, top first (opened again if they were closed).
    pub(crate) fn reals(&self, id: u64) -> R<Vec<Real>> {
        if let Some(r) = self.cached_reals(id)? {
            return Ok(r);
        }
        let _tree = self.tree_read();
        self.reals_locked(id)
    }

    /// [`Overlay::reals`] for a caller that holds the tree lock: a closed handle is opened
    /// again from the parent's handle in the same layer, by the node's name, and must still be
    /// the node's (device, inode).
    pub(crate) fn reals_locked(&self, id: u64) -> R<Vec<Real>> {
        let (parent, name, layers, key) = {
            let table = self.table();
            let node = table.get(id).ok_or(Errno::STALE)?;
            if let Some(fds) = &node.fds {
                return Ok(node.layers.iter().zip(fds).map(|(&layer, fd)| Real { layer, fd: fd.clone() }).collect());
            }
            if node.dead {
                return Err(Errno::STALE);
            }
            (node.parent, node.name.clone(), node.layers.clone(), node.key)
        };
        let dir = self.reals_locked(parent)?;
        let mut fds = Vec::with_capacity(layers.len());
        for layer in &layers {
            let d = dir.iter().find(|r| r.layer == *layer).ok_or(Errno::STALE)?;
            fds.push(Arc::new(self.layers.open_path(&*d.fd, &name).map_err(|_| Errno::STALE)?));
        }
        let st = rustix::fs::fstat(&*fds[0])?;
        if (st.st_dev, st.st_ino) != key {
            return Err(Errno::STALE);
        }
        self.table().install_fds(id, fds).ok_or(Errno::STALE)?;
        self.cached_reals(id)?.ok_or(Errno::STALE)
    }

    /// The handle of the top-most real object of node `id`.
    pub(crate) fn top(&self, id: u64) -> R<Arc<OwnedFd>> {
        Ok(self.reals(id)?.swap_remove(0).fd)
    }

    /// Node `id` as a lookup result: its handles and current attributes.
    pub(crate) fn found_of(&self, id: u64) -> R<Found> {
        let reals = self.reals_locked(id)?;
        let stat = rustix::fs::fstat(&*reals[0].fd)?;
        Ok(Found {
            layers: reals.iter().map(|r| r.layer).collect(),
            fds: reals.into_iter().map(|r| r.fd).collect(),
            stat,
        })
    }

    pub(crate) fn attr_of(&self, ino: u64, node: &Node, st: &Stat) -> FileAttr {
        attr(st, ino, node.merged())
    }

    /// Looks `name` up in directory `parent` and registers the result with the kernel.
    pub(crate) fn lookup(&self, parent: u64, name: &OsStr) -> R<Option<(u64, u64, FileAttr)>> {
        let _tree = self.tree_read();
        if !self.node(parent)?.is_dir {
            return Err(Errno::NOTDIR);
        }
        let dir = self.reals_locked(parent)?;
        self.lookup_in(parent, &dir, name)
    }

    /// Looks `name` up in the directory node `parent` whose handles are `dir` (caller holds
    /// the tree lock).
    pub(crate) fn lookup_in(&self, parent: u64, dir: &[Real], name: &OsStr) -> R<Option<(u64, u64, FileAttr)>> {
        let Some(found) = lookup_merged(&self.layers, dir, name, Open::Nothing)? else {
            return Ok(None);
        };
        Ok(Some(self.remember(parent, name, found)))
    }

    /// Registers `found` with the kernel: node id, generation, attributes.
    pub(crate) fn remember(&self, parent: u64, name: &OsStr, found: Found) -> (u64, u64, FileAttr) {
        let hint = self.layers.report_ino(found.layer(), &found.stat);
        let merged = super::layers::is_dir(&found.stat) && found.layers.len() > 1;
        let st = found.stat;
        let (id, generation) = self.table().remember(parent, name, found, hint);
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
            None => self.stat_top(ino)?,
        };
        Ok(self.attr_of(ino, &node, &st))
    }

    /// chmod, chown, truncate, utimens: copy up, then change the upper object through its
    /// handle (also when it has no name left).
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
        if nothing {
            return self.getattr(ino, fh);
        }
        if self.node(ino)?.layer() != UPPER {
            let _tree = self.tree_write();
            self.copy_up_node(ino, size == Some(0))?;
        }
        let node = self.node(ino)?;
        let fd = self.top(ino)?;
        if node.layer() != UPPER {
            return Err(Errno::IO);
        }
        if uid.is_some() || gid.is_some() {
            rustix::fs::chownat(
                &*fd,
                "",
                uid.map(rustix::fs::Uid::from_raw),
                gid.map(rustix::fs::Gid::from_raw),
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        if let Some(mode) = mode {
            rustix::fs::chmod(proc_path(&*fd).as_c_str(), Mode::from_raw_mode(mode & 0o7777))?;
        }
        if let Some(size) = size {
            self.truncate(&fd, size, fh)?;
        }
        // truncate(2) always stamps mtime, even to the same size.
        let mtime = mtime.or(size.map(|_| TimeOrNow::Now));
        if atime.is_some() || mtime.is_some() {
            let times = Timestamps { last_access: timespec(atime), last_modification: timespec(mtime) };
            set_times(&*fd, &times)?;
        }
        let st = rustix::fs::fstat(&*fd)?;
        Ok(self.attr_of(ino, &node, &st))
    }

    fn truncate(&self, fd: &OwnedFd, size: u64, fh: Option<u64>) -> R<()> {
        if let Some(f) = fh.and_then(|fh| self.handles.get(fh)) {
            if f.layer == UPPER && f.flags.intersects(OFlags::WRONLY | OFlags::RDWR) {
                return rustix::fs::ftruncate(&f.fd, size);
            }
        }
        rustix::fs::ftruncate(self.layers.reopen(fd, OFlags::WRONLY)?, size)
    }

    pub(crate) fn readlink(&self, ino: u64) -> R<Vec<u8>> {
        let target = rustix::fs::readlinkat(&*self.top(ino)?, "", Vec::new())?;
        Ok(target.into_bytes())
    }

    /// Opens the real file once for this FUSE handle; opening for writing copies up first.
    pub(crate) fn open(&self, ino: u64, flags: i32) -> R<u64> {
        let flags = OFlags::from_bits_retain(flags as u32);
        let write = flags.intersects(OFlags::WRONLY | OFlags::RDWR | OFlags::TRUNC);
        if write && self.node(ino)?.layer() != UPPER {
            let _tree = self.tree_write();
            self.copy_up_node(ino, flags.contains(OFlags::TRUNC))?;
        }
        let epoch = self.copyups.load(Ordering::Acquire);
        let keep = OFlags::SYNC | OFlags::DSYNC | OFlags::TRUNC;
        let (layer, fd) = match self.open_real(ino, flags & keep | writable_mode(flags)) {
            // A file with write-only permission for an unmapped owner cannot be opened for reading.
            Err(Errno::ACCESS) if flags & OFlags::RWMODE == OFlags::WRONLY => {
                self.open_real(ino, flags & (keep | OFlags::RWMODE))?
            }
            r => r?,
        };
        Ok(self.handles.insert(FileHandle {
            fd,
            layer,
            ino,
            epoch,
            flags: flags & OFlags::RWMODE,
            reopened: Mutex::new(None),
        }))
    }

    /// Opens the top real object of node `id` with access `flags`: through its handle when the
    /// node holds one (or has no name left), else by its name in the parent's handle, under the
    /// tree lock (names stay put) and checked to be the node's (device, inode): one open
    /// instead of an `O_PATH` open and a re-open (`tar` opens every file it walks once).
    fn open_real(&self, id: u64, flags: OFlags) -> R<(usize, OwnedFd)> {
        if let Some(real) = self.cached_reals(id)?.map(|mut r| r.swap_remove(0)) {
            return Ok((real.layer, self.layers.reopen(&*real.fd, flags)?));
        }
        let _tree = self.tree_read();
        // O_TRUNC acts before the identity check could refuse: only through the handle.
        let place = if flags.contains(OFlags::TRUNC) { self.handle_of(id)? } else { self.locate(id)? };
        match place {
            Place::Handle(real) => Ok((real.layer, self.layers.reopen(&*real.fd, flags)?)),
            Place::Name { dir, name, layer, key } => {
                let fd = self.layers.open_at(&*dir, &name, flags, 0)?;
                let st = rustix::fs::fstat(&fd)?;
                if (st.st_dev, st.st_ino) != key {
                    return Err(Errno::STALE);
                }
                Ok((layer, fd))
            }
        }
    }

    /// Where the top real object of node `id` is: its handle, or, for a node that holds none,
    /// its parent's handle in the same layer and its name. The caller holds the tree lock.
    fn locate(&self, id: u64) -> R<Place> {
        let (parent, name, layer, key) = {
            let table = self.table();
            let node = table.get(id).ok_or(Errno::STALE)?;
            if let Some(fds) = &node.fds {
                return Ok(Place::Handle(Real { layer: node.layer(), fd: fds[0].clone() }));
            }
            if node.dead || node.parent == 0 {
                return Err(Errno::STALE);
            }
            (node.parent, node.name.clone(), node.layer(), node.key)
        };
        let dir = self.reals_locked(parent)?.into_iter().find(|r| r.layer == layer).ok_or(Errno::STALE)?;
        Ok(Place::Name { dir: dir.fd, name, layer, key })
    }

    /// [`Overlay::locate`] that always gives a handle (opened again if it was closed).
    fn handle_of(&self, id: u64) -> R<Place> {
        Ok(Place::Handle(self.reals_locked(id)?.swap_remove(0)))
    }

    /// The attributes of node `id`'s top real object: `fstat` of its handle, or, when the node
    /// holds none (a file that was only looked up, or closed by the budget), `statat` of its
    /// name in the parent's handle (no symlink followed), checked to be the node's (device,
    /// inode). One call, where opening a handle first took three (`stat` after `read`, as
    /// `tar` does for every file, reaches the server).
    fn stat_top(&self, id: u64) -> R<Stat> {
        if let Some(r) = self.cached_reals(id)? {
            return rustix::fs::fstat(&*r[0].fd);
        }
        let _tree = self.tree_read();
        match self.locate(id)? {
            Place::Handle(real) => rustix::fs::fstat(&*real.fd),
            Place::Name { dir, name, key, .. } => {
                let st = stat_at(&*dir, &name).map_err(|_| Errno::STALE)?;
                if (st.st_dev, st.st_ino) != key {
                    return Err(Errno::STALE);
                }
                Ok(st)
            }
        }
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
        // A node that cannot be reached any more keeps reading through the handle's own fd.
        let Ok(mut reals) = self.reals(h.ino) else {
            return Ok(None);
        };
        let real = reals.swap_remove(0);
        if real.layer == h.layer {
            return Ok(None);
        }
        let fd = Arc::new(self.layers.reopen(&*real.fd, OFlags::RDONLY)?);
        *reopened = Some(fd.clone());
        Ok(Some(fd))
    }

    pub(crate) fn file(&self, fh: u64) -> R<Arc<FileHandle>> {
        self.handles.get(fh).ok_or(Errno::BADF)
    }

    pub(crate) fn getxattr(&self, ino: u64, name: &OsStr) -> R<Vec<u8>> {
        xattr::get(&proc_path(&*self.top(ino)?), name)
    }

    pub(crate) fn listxattr(&self, ino: u64) -> R<Vec<u8>> {
        xattr::list(&proc_path(&*self.top(ino)?))
    }

    pub(crate) fn setxattr(&self, ino: u64, name: &OsStr, value: &[u8], flags: i32) -> R<()> {
        if self.node(ino)?.layer() != UPPER {
            let _tree = self.tree_write();
            self.copy_up_node(ino, false)?;
        }
        xattr::set(&proc_path(&*self.upper_top(ino)?), name, value, flags)
    }

    pub(crate) fn removexattr(&self, ino: u64, name: &OsStr) -> R<()> {
        // Removing a name the file does not have must not copy it up.
        self.getxattr(ino, name)?;
        if self.node(ino)?.layer() != UPPER {
            let _tree = self.tree_write();
            self.copy_up_node(ino, false)?;
        }
        xattr::remove(&proc_path(&*self.upper_top(ino)?), name)
    }

    /// The handle of node `id`'s upper object (after a copy-up).
    fn upper_top(&self, id: u64) -> R<Arc<OwnedFd>> {
        let real = self.reals(id)?.swap_remove(0);
        if real.layer != UPPER {
            return Err(Errno::IO);
        }
        Ok(real.fd)
    }

    pub(crate) fn statfs(&self) -> R<rustix::fs::StatVfs> {
        rustix::fs::fstatvfs(&*self.layers.root(UPPER).fd)
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
        let _tree = self.tree_read();
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
        list.extend(super::readdir::list(&self.layers, &self.reals_locked(ino)?)?);
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
