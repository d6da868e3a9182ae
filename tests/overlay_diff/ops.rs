//! The operations the differential test applies, and the seeded generator of op lists.
//!
//! Paths come from a small fixed universe (names a, b, c up to three levels deep) that the
//! lower trees are generated from too: collisions with lower entries, whiteouts and each
//! other are then frequent, and an op list stays meaningful when the shrinker removes ops.

use super::rng::Rng;
use std::fmt;

pub const NAMES: [&str; 3] = ["a", "b", "c"];
/// Open file descriptors held across ops (to see copy-up under an open file).
pub const SLOTS: u8 = 3;
/// Owners used by chown and by the lower trees: all mapped in the test's user namespace.
pub const OWNERS: [u32; 3] = [0, 1000, 65534];
pub const XATTRS: [&str; 2] = ["user.a", "user.b"];
/// Names generator v2 sets: the overlay's own prefix must be stored escaped (kernel 6.7+), and a
/// user's `user.overlay.opaque` must not make a directory opaque.
pub const XATTRS_V2: [&str; 5] = ["user.a", "user.b", "user.overlay.x", "user.overlay.opaque", "user.overlay.origin"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameMode {
    Plain,
    NoReplace,
    Exchange,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrMode {
    Any,
    Create,
    Replace,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Create {
        path: String,
        mode: u32,
    },
    OpenTrunc {
        path: String,
    },
    WriteAt {
        path: String,
        off: u64,
        len: usize,
        fill: u8,
    },
    Truncate {
        path: String,
        len: u64,
    },
    Read {
        path: String,
    },
    Stat {
        path: String,
    },
    Unlink {
        path: String,
    },
    Mkdir {
        path: String,
        mode: u32,
    },
    Rmdir {
        path: String,
    },
    Rename {
        from: String,
        to: String,
        mode: RenameMode,
    },
    Link {
        from: String,
        to: String,
    },
    Symlink {
        target: String,
        path: String,
    },
    Readlink {
        path: String,
    },
    Chmod {
        path: String,
        mode: u32,
    },
    Chown {
        path: String,
        uid: u32,
        gid: u32,
    },
    Utimens {
        path: String,
        secs: i64,
    },
    SetXattr {
        path: String,
        name: &'static str,
        value: u8,
        mode: XattrMode,
    },
    RemoveXattr {
        path: String,
        name: &'static str,
    },
    ListXattr {
        path: String,
    },
    /// lstat, lchown to the same owner (forces a copy-up), lstat again: the FUSE overlay must
    /// keep the inode number (kernel overlayfs with `userxattr` does not: not compared).
    CopyUpIno {
        path: String,
    },
    /// A unix socket file (bind, then close the listener).
    Mksock {
        path: String,
    },
    Mkfifo {
        path: String,
    },
    Readdir {
        path: String,
    },
    OpenFd {
        slot: u8,
        path: String,
        write: bool,
    },
    ReadFd {
        slot: u8,
    },
    WriteFd {
        slot: u8,
        off: u64,
        len: usize,
        fill: u8,
    },
    CloseFd {
        slot: u8,
    },
    Fsync {
        path: String,
    },
    /// The op done with fsuid/fsgid of an unprivileged id (no capabilities): permission checks.
    AsUser(Box<Op>),
    // ---- generator v2 (issue 12) ----
    /// open O_WRONLY|O_CREAT (no O_EXCL): on an existing name it must not touch the parent.
    OpenCreat {
        path: String,
    },
    /// fd = open O_RDWR, to be used after its name or directories are gone.
    OpenRw {
        slot: u8,
        path: String,
    },
    /// fstat through the descriptor (st_nlink is 0 once the last name is gone).
    FdStat {
        slot: u8,
    },
    FdTruncate {
        slot: u8,
        len: u64,
    },
    FdChmod {
        slot: u8,
        mode: u32,
    },
    FdChown {
        slot: u8,
        uid: u32,
        gid: u32,
    },
    FdSetXattr {
        slot: u8,
        name: &'static str,
        value: u8,
    },
    /// open /proc/self/fd/N O_RDONLY and read it all (the magic link of an unlinked file).
    FdReopen {
        slot: u8,
    },
    /// rm -rf of a directory tree (or unlink of a non-directory).
    Rmtree {
        path: String,
    },
}

/// A random path of the universe, 1 to 3 components.
pub fn random_path(rng: &mut Rng) -> String {
    let depth = rng.range(1, 3);
    let parts: Vec<&str> = (0..depth).map(|_| *rng.pick(&NAMES)).collect();
    parts.join("/")
}

fn random_mode(rng: &mut Rng) -> u32 {
    *rng.pick(&[0o644, 0o600, 0o755, 0o700, 0o444, 0o000, 0o4755, 0o1777])
}

/// Offsets around page boundaries and beyond the usual file sizes (sparse writes).
fn random_offset(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 => 0,
        1 => rng.below(5000),
        2 => 4096 * rng.range(1, 3) - rng.below(3),
        _ => rng.range(60_000, 300_000),
    }
}

pub fn random_op(rng: &mut Rng) -> Op {
    let path = random_path(rng);
    let slot = rng.below(u64::from(SLOTS)) as u8;
    let fill = rng.next_u64() as u8;
    match rng.below(27) {
        0 | 1 => Op::Create { path, mode: random_mode(rng) },
        2 => Op::OpenTrunc { path },
        3 | 4 => Op::WriteAt { path, off: random_offset(rng), len: rng.range(1, 9000) as usize, fill },
        5 => Op::Truncate { path, len: *rng.pick(&[0, 1, 4096, 5000, 200_000]) },
        6 => Op::Read { path },
        7 => Op::Stat { path },
        8 => Op::Unlink { path },
        9 | 10 => Op::Mkdir { path, mode: *rng.pick(&[0o755, 0o700, 0o555, 0o1777]) },
        11 => Op::Rmdir { path },
        12 | 13 => {
            let mode = *rng.pick(&[RenameMode::Plain, RenameMode::Plain, RenameMode::NoReplace, RenameMode::Exchange]);
            Op::Rename { from: path, to: random_path(rng), mode }
        }
        14 => Op::Link { from: path, to: random_path(rng) },
        15 => {
            let target = match rng.below(3) {
                0 => format!("/{}", random_path(rng)),
                1 => format!("../{}", random_path(rng)),
                _ => random_path(rng),
            };
            Op::Symlink { target, path }
        }
        16 => Op::Readlink { path },
        17 => Op::Chmod { path, mode: random_mode(rng) },
        18 => Op::Chown { path, uid: *rng.pick(&OWNERS), gid: *rng.pick(&OWNERS) },
        19 => Op::Utimens { path, secs: rng.range(1_000_000_000, 1_800_000_000) as i64 },
        20 => {
            let mode = *rng.pick(&[XattrMode::Any, XattrMode::Any, XattrMode::Create, XattrMode::Replace]);
            Op::SetXattr { path, name: XATTRS[rng.below(XATTRS.len() as u64) as usize], value: fill, mode }
        }
        21 => Op::RemoveXattr { path, name: XATTRS[rng.below(XATTRS.len() as u64) as usize] },
        22 => match rng.below(5) {
            0 => Op::ListXattr { path },
            4 => Op::CopyUpIno { path },
            3 => Op::Mksock { path },
            1 => Op::Mkfifo { path },
            _ => Op::Fsync { path },
        },
        23 => Op::Readdir { path: if rng.chance(1, 3) { String::new() } else { path } },
        24 => Op::OpenFd { slot, path, write: rng.chance(1, 2) },
        25 => match rng.below(3) {
            0 => Op::ReadFd { slot },
            1 => Op::CloseFd { slot },
            _ => Op::WriteFd { slot, off: random_offset(rng), len: rng.range(1, 5000) as usize, fill },
        },
        _ => Op::ReadFd { slot },
    }
}

/// Generator v2: everything v1 makes, plus descriptors held across unlink, rename and rmtree of
/// their names and directories, open O_CREAT on existing names, set-group-ID directories (made
/// here and in the lower layers, see `lower::add_setgid`) and `user.overlay.*` xattrs.
pub fn random_ops_v2(rng: &mut Rng, count: usize) -> Vec<Op> {
    let mut out = Vec::new();
    while out.len() < count {
        let op = match rng.below(10) {
            0 | 1 => {
                out.extend(fd_scenario(rng));
                continue;
            }
            2 => random_op_v2(rng),
            _ => random_op(rng),
        };
        out.push(if rng.chance(1, 5) { Op::AsUser(Box::new(op)) } else { op });
    }
    out
}

fn random_op_v2(rng: &mut Rng) -> Op {
    let path = random_path(rng);
    let slot = rng.below(u64::from(SLOTS)) as u8;
    match rng.below(6) {
        0 => Op::OpenCreat { path },
        1 => Op::Mkdir { path, mode: *rng.pick(&[0o2775, 0o2755, 0o2777]) },
        2 => Op::Chmod { path, mode: *rng.pick(&[0o2775, 0o2755, 0o3777]) },
        3 => {
            let name = *rng.pick(&XATTRS_V2);
            Op::SetXattr { path, name, value: rng.next_u64() as u8, mode: XattrMode::Any }
        }
        4 => Op::RemoveXattr { path, name: XATTRS_V2[rng.below(XATTRS_V2.len() as u64) as usize] },
        _ => fd_op(rng, slot),
    }
}

fn fd_op(rng: &mut Rng, slot: u8) -> Op {
    match rng.below(8) {
        0 => Op::FdStat { slot },
        1 => Op::FdTruncate { slot, len: *rng.pick(&[0, 1, 4096, 5000, 200_000]) },
        2 => Op::FdChmod { slot, mode: *rng.pick(&[0o644, 0o600, 0o2755, 0o4755]) },
        3 => Op::FdChown { slot, uid: *rng.pick(&OWNERS), gid: *rng.pick(&OWNERS) },
        4 => Op::FdSetXattr {
            slot,
            name: XATTRS_V2[rng.below(XATTRS_V2.len() as u64) as usize],
            value: rng.next_u64() as u8,
        },
        5 => Op::FdReopen { slot },
        6 => Op::ReadFd { slot },
        _ => {
            Op::WriteFd { slot, off: random_offset(rng), len: rng.range(1, 5000) as usize, fill: rng.next_u64() as u8 }
        }
    }
}

/// A descriptor opened on a path, then its name (or a directory above it) unlinked, renamed or
/// removed as a tree, then used: the sequences a uniform draw almost never makes.
fn fd_scenario(rng: &mut Rng) -> Vec<Op> {
    let path = random_path(rng);
    let slot = rng.below(u64::from(SLOTS)) as u8;
    let mut ops = vec![if rng.chance(1, 4) {
        Op::OpenFd { slot, path: path.clone(), write: false }
    } else {
        Op::OpenRw { slot, path: path.clone() }
    }];
    let parts: Vec<&str> = path.split('/').collect();
    // The name itself or one of the directories above it.
    let cut = rng.range(1, parts.len() as u64) as usize;
    let victim = parts[..cut].join("/");
    ops.push(match rng.below(4) {
        0 => Op::Unlink { path: victim },
        1 => Op::Rmtree { path: victim },
        _ => Op::Rename { from: victim, to: random_path(rng), mode: RenameMode::Plain },
    });
    for _ in 0..rng.range(1, 4) {
        ops.push(fd_op(rng, slot));
    }
    ops
}

/// The descriptor slot an op uses through an already open descriptor (not the opens).
pub fn fd_slot(op: &Op) -> Option<u8> {
    match op {
        Op::AsUser(inner) => fd_slot(inner),
        Op::ReadFd { slot }
        | Op::WriteFd { slot, .. }
        | Op::FdStat { slot }
        | Op::FdTruncate { slot, .. }
        | Op::FdChmod { slot, .. }
        | Op::FdChown { slot, .. }
        | Op::FdSetXattr { slot, .. }
        | Op::FdReopen { slot } => Some(*slot),
        _ => None,
    }
}

/// The slot an op opens or closes (its earlier state no longer matters).
pub fn fd_reset(op: &Op) -> Option<u8> {
    match op {
        Op::AsUser(inner) => fd_reset(inner),
        Op::OpenFd { slot, .. } | Op::OpenRw { slot, .. } | Op::CloseFd { slot } => Some(*slot),
        _ => None,
    }
}

/// Id the `AsUser` ops run as: it owns some lower entries (see `OWNERS`), not others.
pub const USER: u32 = 1000;

pub fn random_ops(rng: &mut Rng, count: usize) -> Vec<Op> {
    (0..count)
        .map(|_| {
            let op = random_op(rng);
            if rng.chance(1, 5) {
                Op::AsUser(Box::new(op))
            } else {
                op
            }
        })
        .collect()
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Create { path, mode } => write!(f, "create {path} mode={mode:o} (O_CREAT|O_EXCL)"),
            Op::OpenTrunc { path } => write!(f, "open {path} O_WRONLY|O_TRUNC"),
            Op::WriteAt { path, off, len, fill } => write!(f, "pwrite {path} off={off} len={len} fill={fill}"),
            Op::Truncate { path, len } => write!(f, "truncate {path} {len}"),
            Op::Read { path } => write!(f, "read {path}"),
            Op::Stat { path } => write!(f, "lstat {path}"),
            Op::Unlink { path } => write!(f, "unlink {path}"),
            Op::Mkdir { path, mode } => write!(f, "mkdir {path} mode={mode:o}"),
            Op::Rmdir { path } => write!(f, "rmdir {path}"),
            Op::Rename { from, to, mode } => write!(f, "rename {from} -> {to} {mode:?}"),
            Op::Link { from, to } => write!(f, "link {from} -> {to}"),
            Op::Symlink { target, path } => write!(f, "symlink {path} -> {target}"),
            Op::Readlink { path } => write!(f, "readlink {path}"),
            Op::Chmod { path, mode } => write!(f, "chmod {path} {mode:o}"),
            Op::Chown { path, uid, gid } => write!(f, "lchown {path} {uid}:{gid}"),
            Op::Utimens { path, secs } => {
                write!(f, "utimensat {path} atime=mtime={secs} (nofollow)")
            }
            Op::SetXattr { path, name, value, mode } => write!(f, "lsetxattr {path} {name}={value} {mode:?}"),
            Op::RemoveXattr { path, name } => write!(f, "lremovexattr {path} {name}"),
            Op::ListXattr { path } => write!(f, "llistxattr {path}"),
            Op::Mkfifo { path } => write!(f, "mkfifo {path}"),
            Op::Mksock { path } => write!(f, "bind unix socket {path}"),
            Op::CopyUpIno { path } => write!(f, "inode number of {path} across a copy-up (lchown to same owner)"),
            Op::Readdir { path } => write!(f, "readdir /{path}"),
            Op::OpenFd { slot, path, write } => {
                write!(f, "fd{slot} = open {path} {}", if *write { "O_WRONLY" } else { "O_RDONLY" })
            }
            Op::ReadFd { slot } => write!(f, "pread fd{slot} (whole file)"),
            Op::WriteFd { slot, off, len, fill } => write!(f, "pwrite fd{slot} off={off} len={len} fill={fill}"),
            Op::CloseFd { slot } => write!(f, "close fd{slot}"),
            Op::Fsync { path } => write!(f, "open+fsync {path}"),
            Op::AsUser(op) => write!(f, "as uid/gid {USER}: {op}"),
            Op::OpenCreat { path } => write!(f, "open {path} O_WRONLY|O_CREAT mode=644"),
            Op::OpenRw { slot, path } => write!(f, "fd{slot} = open {path} O_RDWR"),
            Op::FdStat { slot } => write!(f, "fstat fd{slot}"),
            Op::FdTruncate { slot, len } => write!(f, "ftruncate fd{slot} {len}"),
            Op::FdChmod { slot, mode } => write!(f, "fchmod fd{slot} {mode:o}"),
            Op::FdChown { slot, uid, gid } => write!(f, "fchown fd{slot} {uid}:{gid}"),
            Op::FdSetXattr { slot, name, value } => write!(f, "fsetxattr fd{slot} {name}={value}"),
            Op::FdReopen { slot } => write!(f, "open /proc/self/fd/<fd{slot}> O_RDONLY, read it all"),
            Op::Rmtree { path } => write!(f, "rm -rf {path}"),
        }
    }
}
