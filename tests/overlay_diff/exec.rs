//! Applies one `Op` to a mounted tree and reduces its outcome to a comparable value:
//! `Ok(text)` or `Err(errno)`.

use super::ops::{Op, RenameMode, XattrMode, SLOTS, USER};
use super::rng::{fnv64, pattern};
use rustix::fs::{AtFlags, RenameFlags, Timespec, Timestamps, XattrFlags, CWD};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub type Res = Result<String, i32>;

/// Every open is non-blocking: a FIFO in the tree must not block the harness.
fn opts() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.custom_flags(nix::libc::O_NONBLOCK);
    o
}

pub fn errno_name(e: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(e))
}

pub fn show(r: &Res) -> String {
    match r {
        Ok(v) => format!("ok({v})"),
        Err(e) => format!("err({})", errno_name(*e)),
    }
}

fn io_err(e: io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

fn rx_err(e: rustix::io::Errno) -> i32 {
    e.raw_os_error()
}

/// Reads a whole file (bounded: the generator never makes files beyond ~310 kB).
fn read_all(f: &File) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = f.read_at(&mut buf, out.len() as u64)?;
        if n == 0 || out.len() > 4 << 20 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

pub fn content_summary(data: &[u8]) -> String {
    format!("len={} fnv={:016x}", data.len(), fnv64(data))
}

pub fn file_type_char(m: &fs::Metadata) -> char {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_dir() {
        'd'
    } else if t.is_symlink() {
        'l'
    } else if t.is_file() {
        'f'
    } else if t.is_fifo() {
        'p'
    } else if t.is_char_device() {
        'c'
    } else if t.is_socket() {
        's'
    } else {
        '?'
    }
}

/// The stat fields that must agree between drivers (no inode numbers, no times, no
/// directory sizes: those legitimately differ between file systems).
pub fn stat_line(m: &fs::Metadata, dir_nlink: bool) -> String {
    let t = file_type_char(m);
    let size = if t == 'd' { String::from("-") } else { m.size().to_string() };
    let nlink = if t == 'd' && !dir_nlink { String::from("-") } else { m.nlink().to_string() };
    format!("{t} perm={:o} owner={}:{} size={size} nlink={nlink}", m.permissions().mode() & 0o7777, m.uid(), m.gid())
}

pub struct Exec {
    root: PathBuf,
    fds: Vec<Option<File>>,
    /// Whether directory link counts are compared (kernel overlayfs reports 1 for merged
    /// directories; `BURROW_DIFF_IGNORE=dirnlink` masks that while hunting other bugs).
    pub dir_nlink: bool,
    /// Check that copy-up keeps the inode number (set for the FUSE side only).
    pub stable_ino: bool,
}

impl Exec {
    pub fn new(root: &Path, dir_nlink: bool) -> Self {
        Exec { root: root.to_path_buf(), fds: (0..SLOTS).map(|_| None).collect(), dir_nlink, stable_ino: false }
    }

    fn p(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    pub fn close_all(&mut self) {
        self.fds.iter_mut().for_each(|f| *f = None);
    }

    pub fn apply(&mut self, op: &Op) -> Res {
        match op {
            Op::AsUser(inner) => {
                // fsuid/fsgid are per thread, and a non-zero fsuid drops the file-system
                // capabilities (CAP_DAC_OVERRIDE, CAP_FOWNER...) until it is 0 again.
                nix::unistd::setfsgid(nix::unistd::Gid::from_raw(USER));
                nix::unistd::setfsuid(nix::unistd::Uid::from_raw(USER));
                let r = self.apply(inner);
                nix::unistd::setfsuid(nix::unistd::Uid::from_raw(0));
                nix::unistd::setfsgid(nix::unistd::Gid::from_raw(0));
                r
            }
            Op::Create { path, mode } => {
                let f = opts().write(true).create_new(true).mode(*mode).open(self.p(path));
                f.map(|_| String::new()).map_err(io_err)
            }
            Op::OpenCreat { path } => {
                let f = opts().write(true).create(true).mode(0o644).open(self.p(path));
                f.map(|_| String::new()).map_err(io_err)
            }
            Op::Rmtree { path } => {
                let p = self.p(path);
                let r = match fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => fs::remove_dir_all(&p),
                    Ok(_) => fs::remove_file(&p),
                    Err(e) => Err(e),
                };
                r.map(|_| String::new()).map_err(io_err)
            }
            Op::OpenTrunc { path } => {
                let f = opts().write(true).truncate(true).open(self.p(path));
                f.map(|_| String::new()).map_err(io_err)
            }
            Op::WriteAt { path, off, len, fill } => {
                let f = opts().write(true).open(self.p(path)).map_err(io_err)?;
                f.write_at(&pattern(*fill, *len), *off).map(|n| n.to_string()).map_err(io_err)
            }
            Op::Truncate { path, len } => {
                nix::unistd::truncate(&self.p(path), *len as i64).map_err(|e| e as i32)?;
                Ok(String::new())
            }
            Op::Read { path } => {
                let f = opts().read(true).open(self.p(path)).map_err(io_err)?;
                read_all(&f).map(|d| content_summary(&d)).map_err(io_err)
            }
            Op::Stat { path } => {
                fs::symlink_metadata(self.p(path)).map(|m| stat_line(&m, self.dir_nlink)).map_err(io_err)
            }
            Op::Unlink { path } => fs::remove_file(self.p(path)).map(|_| String::new()).map_err(io_err),
            Op::Mkdir { path, mode } => {
                rustix::fs::mkdir(self.p(path), rustix::fs::Mode::from_raw_mode(*mode)).map_err(rx_err)?;
                Ok(String::new())
            }
            Op::Rmdir { path } => fs::remove_dir(self.p(path)).map(|_| String::new()).map_err(io_err),
            Op::Rename { from, to, mode } => {
                let flags = match mode {
                    RenameMode::Plain => RenameFlags::empty(),
                    RenameMode::NoReplace => RenameFlags::NOREPLACE,
                    RenameMode::Exchange => RenameFlags::EXCHANGE,
                };
                rustix::fs::renameat_with(CWD, self.p(from), CWD, self.p(to), flags).map_err(rx_err)?;
                Ok(String::new())
            }
            Op::Link { from, to } => fs::hard_link(self.p(from), self.p(to)).map(|_| String::new()).map_err(io_err),
            Op::Symlink { target, path } => {
                std::os::unix::fs::symlink(target, self.p(path)).map(|_| String::new()).map_err(io_err)
            }
            Op::Readlink { path } => fs::read_link(self.p(path)).map(|t| t.display().to_string()).map_err(io_err),
            _ => self.apply_meta(op),
        }
    }

    fn apply_meta(&mut self, op: &Op) -> Res {
        match op {
            Op::Chmod { path, mode } => fs::set_permissions(self.p(path), fs::Permissions::from_mode(*mode))
                .map(|_| String::new())
                .map_err(io_err),
            Op::Chown { path, uid, gid } => {
                std::os::unix::fs::lchown(self.p(path), Some(*uid), Some(*gid)).map_err(io_err)?;
                // chown clears set-id bits: report the mode that results.
                fs::symlink_metadata(self.p(path)).map(|m| stat_line(&m, self.dir_nlink)).map_err(io_err)
            }
            Op::Utimens { path, secs } => {
                let t = Timespec { tv_sec: *secs, tv_nsec: 123_456_789 };
                let ts = Timestamps { last_access: t, last_modification: t };
                rustix::fs::utimensat(CWD, self.p(path), &ts, AtFlags::SYMLINK_NOFOLLOW).map_err(rx_err)?;
                let m = fs::symlink_metadata(self.p(path)).map_err(io_err)?;
                Ok(format!("mtime={}.{}", m.mtime(), m.mtime_nsec()))
            }
            Op::SetXattr { path, name, value, mode } => {
                let flags = match mode {
                    XattrMode::Any => XattrFlags::empty(),
                    XattrMode::Create => XattrFlags::CREATE,
                    XattrMode::Replace => XattrFlags::REPLACE,
                };
                rustix::fs::lsetxattr(self.p(path), *name, &[*value, b'v'], flags).map_err(rx_err)?;
                Ok(String::new())
            }
            Op::RemoveXattr { path, name } => {
                rustix::fs::lremovexattr(self.p(path), *name).map_err(rx_err)?;
                Ok(String::new())
            }
            Op::ListXattr { path } => list_xattrs(&self.p(path)).map(|v| v.join(",")),
            Op::CopyUpIno { path } => {
                let before = fs::symlink_metadata(self.p(path)).map_err(io_err)?;
                let (uid, gid) = (before.uid(), before.gid());
                std::os::unix::fs::lchown(self.p(path), Some(uid), Some(gid)).map_err(io_err)?;
                let after = fs::symlink_metadata(self.p(path)).map_err(io_err)?;
                // Kernel overlayfs in `userxattr` mode gives a copied-up file a new inode
                // number; the FUSE overlay must keep it (issue 3): a property, not a copy.
                if self.stable_ino && before.ino() != after.ino() {
                    return Ok(format!("inode number changed on copy-up: {} -> {}", before.ino(), after.ino()));
                }
                Ok(String::new())
            }
            Op::Mksock { path } => {
                std::os::unix::net::UnixListener::bind(self.p(path)).map(|_| String::new()).map_err(io_err)
            }
            Op::Mkfifo { path } => {
                nix::unistd::mkfifo(&self.p(path), nix::sys::stat::Mode::from_bits_truncate(0o640))
                    .map_err(|e| e as i32)?;
                Ok(String::new())
            }
            Op::Readdir { path } => read_dir_line(&self.p(path)),
            Op::Fsync { path } => {
                let f = opts().read(true).open(self.p(path)).map_err(io_err)?;
                f.sync_all().map(|_| String::new()).map_err(io_err)
            }
            _ => self.apply_fd(op),
        }
    }

    fn apply_fd(&mut self, op: &Op) -> Res {
        match op {
            Op::OpenFd { slot, path, write } => {
                self.fds[usize::from(*slot)] = None;
                let f = opts().read(!*write).write(*write).open(self.p(path)).map_err(io_err)?;
                self.fds[usize::from(*slot)] = Some(f);
                Ok(String::new())
            }
            Op::ReadFd { slot } => match &self.fds[usize::from(*slot)] {
                None => Ok(String::from("no fd")),
                Some(f) => read_all(f).map(|d| content_summary(&d)).map_err(io_err),
            },
            Op::WriteFd { slot, off, len, fill } => match &self.fds[usize::from(*slot)] {
                None => Ok(String::from("no fd")),
                Some(f) => f.write_at(&pattern(*fill, *len), *off).map(|n| n.to_string()).map_err(io_err),
            },
            Op::CloseFd { slot } => {
                self.fds[usize::from(*slot)] = None;
                Ok(String::new())
            }
            Op::OpenRw { slot, path } => {
                self.fds[usize::from(*slot)] = None;
                let f = opts().read(true).write(true).open(self.p(path)).map_err(io_err)?;
                self.fds[usize::from(*slot)] = Some(f);
                Ok(String::new())
            }
            _ => self.apply_fd_meta(op),
        }
    }

    /// The descriptor ops of generator v2: each reports what the descriptor shows afterwards.
    fn apply_fd_meta(&mut self, op: &Op) -> Res {
        use rustix::fs::{fchmod, fchown, fsetxattr, Gid, Mode, Uid};
        let slot = match op {
            Op::FdStat { slot }
            | Op::FdTruncate { slot, .. }
            | Op::FdChmod { slot, .. }
            | Op::FdChown { slot, .. }
            | Op::FdSetXattr { slot, .. }
            | Op::FdReopen { slot } => usize::from(*slot),
            _ => unreachable!("apply covers every op"),
        };
        let Some(f) = &self.fds[slot] else { return Ok(String::from("no fd")) };
        match op {
            Op::FdTruncate { len, .. } => f.set_len(*len).map_err(io_err)?,
            Op::FdChmod { mode, .. } => fchmod(f, Mode::from_raw_mode(*mode)).map_err(rx_err)?,
            Op::FdChown { uid, gid, .. } => {
                // All ids are mapped in the test's namespace (ops::OWNERS).
                fchown(f, Some(Uid::from_raw(*uid)), Some(Gid::from_raw(*gid))).map_err(rx_err)?
            }
            Op::FdSetXattr { name, value, .. } => {
                fsetxattr(f, *name, &[*value, b'f'], XattrFlags::empty()).map_err(rx_err)?
            }
            Op::FdReopen { .. } => {
                use std::os::fd::AsRawFd;
                let again = opts().read(true).open(format!("/proc/self/fd/{}", f.as_raw_fd())).map_err(io_err)?;
                return read_all(&again).map(|d| content_summary(&d)).map_err(io_err);
            }
            _ => {}
        }
        // What the descriptor shows now (fstat: nlink 0 once unlinked, mode after set-ID clearing).
        let m = f.metadata().map_err(io_err)?;
        Ok(stat_line(&m, self.dir_nlink))
    }
}

/// User-visible xattr names, sorted (values too, so a wrong value shows up).
pub fn list_xattrs(p: &Path) -> Result<Vec<String>, i32> {
    let mut buf = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(p, &mut buf[..]).map_err(rx_err)?;
    let mut out = Vec::new();
    for name in buf[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let name = String::from_utf8_lossy(name).to_string();
        let mut val = vec![0u8; 65536];
        let v = match rustix::fs::lgetxattr(p, name.as_str(), &mut val[..]) {
            Ok(len) => val[..len].escape_ascii().to_string(),
            Err(e) => format!("<{}>", errno_name(e.raw_os_error())),
        };
        out.push(format!("{name}={v}"));
    }
    out.sort();
    Ok(out)
}

pub fn read_dir_line(p: &Path) -> Res {
    let mut names = Vec::new();
    for e in fs::read_dir(p).map_err(io_err)? {
        let e = e.map_err(io_err)?;
        let t = e.file_type().map_err(io_err)?;
        let c = if t.is_dir() {
            'd'
        } else if t.is_symlink() {
            'l'
        } else if t.is_file() {
            'f'
        } else {
            'o'
        };
        names.push(format!("{}:{c}", e.file_name().to_string_lossy()));
    }
    names.sort();
    Ok(names.join(" "))
}
