//! `fuser::Filesystem` glue: decode each request, call the overlay, encode the reply.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::path::Path;
use std::time::UNIX_EPOCH;

use fuser::{
    BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request,
    TimeOrNow, WriteFlags,
};

use super::dirops::{Caller, New};
use super::filesystem::Overlay;

const GEN: Generation = Generation(0);

fn e(err: rustix::io::Errno) -> Errno {
    Errno::from_i32(err.raw_os_error())
}

fn caller(req: &Request) -> Caller {
    Caller { uid: req.uid(), gid: req.gid() }
}

/// Attributes of a negative entry: node id 0 tells the kernel to cache the absence.
fn negative() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Largest write the kernel may send in one request (fewer round trips for big writes).
const MAX_WRITE: u32 = 1 << 20;

impl Filesystem for Overlay {
    // flush, fsyncdir and access are left unimplemented on purpose: their ENOSYS tells the
    // kernel to stop sending them (nothing is buffered here, and default_permissions makes
    // the kernel check access itself), which saves a round trip on every close.

    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_readahead(MAX_WRITE);
        for flag in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_MAX_PAGES,
            // Symlink targets never change in place (a new link is a new inode), so the
            // kernel may keep them: no READLINK on every walk through /bin or /lib.
            InitFlags::FUSE_CACHE_SYMLINKS,
        ] {
            let _ = config.add_capabilities(flag);
        }
        // No FUSE_WRITEBACK_CACHE: it makes the kernel own mtime/ctime (a truncate to the
        // same size then keeps the old mtime, and cached times are flushed back later), which
        // breaks agreement with kernel overlayfs; measured here (with cached write opens) it
        // was slower than direct I/O for write-only opens (docs/design/overlay.md).
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.lookup(parent.0, name) {
            Ok(Some((_, g, attr))) => reply.entry(&self.ttl, &attr, Generation(g)),
            Ok(None) => reply.entry(&self.ttl, &negative(), GEN),
            Err(err) => reply.error(e(err)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.table().forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.getattr(ino.0, fh.map(|f| f.0)) {
            Ok(attr) => reply.attr(&self.ttl, &attr),
            Err(err) => reply.error(e(err)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let fh = fh.map(|f| f.0);
        match self.setattr(ino.0, mode, uid, gid, size, atime, mtime, fh) {
            Ok(attr) => reply.attr(&self.ttl, &attr),
            Err(err) => reply.error(e(err)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(err) => reply.error(e(err)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let what = New::Node { mode, rdev };
        match self.create_entry(caller(req), parent.0, name, what) {
            Ok((_, g, attr, _)) => reply.entry(&self.ttl, &attr, Generation(g)),
            Err(err) => reply.error(e(err)),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        match self.create_entry(caller(req), parent.0, name, New::Dir { mode }) {
            Ok((_, g, attr, _)) => reply.entry(&self.ttl, &attr, Generation(g)),
            Err(err) => reply.error(e(err)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove(parent.0, name, false) {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(e(err)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove(parent.0, name, true) {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(e(err)),
        }
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        match self.create_entry(caller(req), parent.0, link_name, New::Symlink { target }) {
            Ok((_, g, attr, _)) => reply.entry(&self.ttl, &attr, Generation(g)),
            Err(err) => reply.error(e(err)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let flags = rustix::fs::RenameFlags::from_bits_retain(flags.bits());
        match Overlay::rename(self, parent.0, name, newparent.0, newname, flags) {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(e(err)),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        match Overlay::link(self, ino.0, newparent.0, newname) {
            Ok((_, g, attr)) => reply.entry(&self.ttl, &attr, Generation(g)),
            Err(err) => reply.error(e(err)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match Overlay::open(self, ino.0, flags.0) {
            Ok(fh) => reply.opened(FileHandle(fh), open_flags(flags.0)),
            Err(err) => reply.error(e(err)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let h = match self.file(fh.0) {
            Ok(h) => h,
            Err(err) => return reply.error(e(err)),
        };
        let f = &*h;
        let other = match self.read_fd(f) {
            Ok(o) => o,
            Err(err) => return reply.error(e(err)),
        };
        let fd = other.as_deref().unwrap_or(&f.fd);
        READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.resize(size as usize, 0);
            match rustix::io::pread(fd, &mut buf[..], offset) {
                Ok(n) => reply.data(&buf[..n]),
                Err(err) => reply.error(e(err)),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let h = match self.file(fh.0) {
            Ok(h) => h,
            Err(err) => return reply.error(e(err)),
        };
        let f = &*h;
        if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
            match super::filesystem::drop_setid_for_write(&f.fd, caller(req)) {
                Ok(true) => self.invalidate_attr(f.ino),
                Ok(false) => {}
                Err(err) => return reply.error(e(err)),
            }
        }
        let mut done = 0;
        while done < data.len() {
            match rustix::io::pwrite(&f.fd, &data[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(err) if done == 0 => return reply.error(e(err)),
                Err(_) => break,
            }
        }
        reply.written(done as u32);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.handles.remove(fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        let h = match self.file(fh.0) {
            Ok(h) => h,
            Err(err) => return reply.error(e(err)),
        };
        let f = &*h;
        let r = if datasync { rustix::fs::fdatasync(&f.fd) } else { rustix::fs::fsync(&f.fd) };
        match r {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(e(err)),
        }
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // ENOSYS once makes the kernel open directories by itself from then on (no OPENDIR
        // and RELEASEDIR round trips), with FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR: listings are
        // cached by the kernel and dropped when it changes the directory.
        reply.error(Errno::ENOSYS);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let entries = match self.dir_entries(ino.0, offset) {
            Ok(x) => x,
            Err(err) => return reply.error(e(err)),
        };
        for (i, ent) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ent.ino), i as u64 + 1, ent.kind, &ent.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let entries = match self.dir_entries(ino.0, offset) {
            Ok(x) => x,
            Err(err) => return reply.error(e(err)),
        };
        let _tree = self.tree_read();
        let dir = match self.reals_locked(ino.0) {
            Ok(d) => d,
            Err(err) => return reply.error(e(err)),
        };
        for (i, ent) in entries.iter().enumerate().skip(offset as usize) {
            let next = i as u64 + 1;
            if ent.name == "." || ent.name == ".." {
                let attr = FileAttr { ino: INodeNo(ent.ino), kind: FileType::Directory, ..negative() };
                if reply.add(INodeNo(ent.ino), next, &ent.name, &std::time::Duration::ZERO, &attr, GEN) {
                    break;
                }
                continue;
            }
            let (id, g, attr) = match self.lookup_in(ino.0, &dir, &ent.name) {
                Ok(Some(x)) => x,
                Ok(None) | Err(_) => continue,
            };
            if reply.add(INodeNo(id), next, &ent.name, &self.ttl, &attr, Generation(g)) {
                // Not sent: the kernel will not count this lookup.
                self.table().forget(id, 1);
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match Overlay::statfs(self) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(err) => reply.error(e(err)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        match Overlay::setxattr(self, ino.0, name, value, flags) {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(e(err)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        xattr_reply(Overlay::getxattr(self, ino.0, name), size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        xattr_reply(Overlay::listxattr(self, ino.0), size, reply);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match Overlay::removexattr(self, ino.0, name) {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(e(err)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.create_file(caller(req), parent.0, name, mode, flags) {
            Ok((fh, g, attr)) => reply.created(&self.ttl, &attr, Generation(g), FileHandle(fh), open_flags(flags)),
            Err(err) => reply.error(e(err)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let r = self.file(fh.0).and_then(|f| {
            rustix::fs::fallocate(&f.fd, rustix::fs::FallocateFlags::from_bits_retain(mode as u32), offset, length)
        });
        match r {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(e(err)),
        }
    }

    fn lseek(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        let pos = match whence {
            libc::SEEK_DATA => rustix::fs::SeekFrom::Data(offset as u64),
            libc::SEEK_HOLE => rustix::fs::SeekFrom::Hole(offset as u64),
            _ => return reply.error(Errno::EINVAL),
        };
        let r = self.file(fh.0).and_then(|f| rustix::fs::seek(&f.fd, pos));
        match r {
            Ok(p) => reply.offset(p as i64),
            Err(err) => reply.error(e(err)),
        }
    }
}

/// How the kernel should cache an open file. Only this server changes the layers, so cached
/// pages stay valid across opens (keep-cache). A write-only open can never be read or mmapped,
/// so it goes around the page cache (direct I/O): one copy less per write, and no
/// security.capability lookup before each write (the kernel's file_remove_privs); the set-id
/// bits that a write must clear are cleared here instead (see `write`).
fn open_flags(flags: i32) -> FopenFlags {
    if flags & libc::O_ACCMODE == libc::O_WRONLY {
        FopenFlags::FOPEN_DIRECT_IO
    } else {
        FopenFlags::FOPEN_KEEP_CACHE
    }
}

fn xattr_reply(r: Result<Vec<u8>, rustix::io::Errno>, size: u32, reply: ReplyXattr) {
    match r {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(v) => reply.data(&v),
        Err(err) => reply.error(e(err)),
    }
}
