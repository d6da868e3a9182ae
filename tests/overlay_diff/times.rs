//! The parents' timestamps around every op: whether the op changed the mtime and the ctime of
//! the directories that hold its names. The two drivers run at different times, so the values
//! are not compared, only whether each changed.
//!
//! To keep that decidable: after an op changed a parent's mtime, both sides set it to the same
//! old value (so the next op starts from a value no clock gives); a ctime is compared only when it
//! was older than 20 ms before the op on both sides (the coarse clock could otherwise give the
//! same value twice). Stats are `statx(AT_STATX_FORCE_SYNC)`: the FUSE client would otherwise
//! answer from attributes it cached before the server changed them (a copy-up of a child).

use super::ops::Op;
use rustix::fs::{AtFlags, StatxFlags, Timespec, Timestamps, CWD};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// (parent, mtime, ctime) before an op; `None`: the parent did not exist.
pub struct Before {
    now: Duration,
    parents: Vec<(String, Option<(Duration, Duration)>)>,
}

/// Per parent: mtime changed, ctime changed (None: not decidable on this side).
pub type After = Vec<(String, Option<(bool, Option<bool>)>)>;

fn parent_of(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => path[..i].to_string(),
        None => String::new(),
    }
}

/// The directories whose entries the op may change.
pub fn parents(op: &Op) -> Vec<String> {
    let mut v = match op {
        Op::AsUser(inner) => return parents(inner),
        Op::Rename { from, to, .. } | Op::Link { from, to } => vec![parent_of(from), parent_of(to)],
        Op::Create { path, .. }
        | Op::OpenCreat { path }
        | Op::OpenTrunc { path }
        | Op::WriteAt { path, .. }
        | Op::Truncate { path, .. }
        | Op::Unlink { path }
        | Op::Mkdir { path, .. }
        | Op::Rmdir { path }
        | Op::Rmtree { path }
        | Op::Symlink { path, .. }
        | Op::Chmod { path, .. }
        | Op::Chown { path, .. }
        | Op::Utimens { path, .. }
        | Op::SetXattr { path, .. }
        | Op::RemoveXattr { path, .. }
        | Op::CopyUpIno { path }
        | Op::Mksock { path }
        | Op::Mkfifo { path }
        | Op::OpenFd { path, .. }
        | Op::OpenRw { path, .. } => vec![parent_of(path)],
        _ => Vec::new(),
    };
    v.dedup();
    v
}

fn full(root: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

fn times(p: &Path) -> Option<(Duration, Duration)> {
    let st = rustix::fs::statx(CWD, p, AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_FORCE_SYNC, StatxFlags::BASIC_STATS)
        .ok()?;
    let d = |t: rustix::fs::StatxTimestamp| Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec);
    Some((d(st.stx_mtime), d(st.stx_ctime)))
}

pub fn before(root: &Path, op: &Op) -> Before {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Before { now, parents: parents(op).into_iter().map(|p| (p.clone(), times(&full(root, &p)))).collect() }
}

/// What changed; parents whose mtime changed get the old value `900_000_000 + index` s.
pub fn after(root: &Path, b: &Before, index: usize) -> After {
    let mut out = Vec::new();
    for (rel, was) in &b.parents {
        let p = full(root, rel);
        let now = times(&p);
        let entry = match (was, now) {
            (Some((m0, c0)), Some((m1, c1))) => {
                let ctime = (*c0 + Duration::from_millis(20) < b.now).then_some(c1 != *c0);
                Some((m1 != *m0, ctime))
            }
            _ => None,
        };
        if let Some((true, _)) = entry {
            let t = Timespec { tv_sec: 900_000_000 + index as i64, tv_nsec: 0 };
            let ts = Timestamps { last_access: t, last_modification: t };
            let _ = rustix::fs::utimensat(CWD, &p, &ts, AtFlags::SYMLINK_NOFOLLOW);
        }
        out.push((rel.clone(), entry));
    }
    out
}

/// `Some(description)` when the two sides disagree on a decidable change.
pub fn compare(kernel: &After, fuse: &After) -> Option<String> {
    for ((rel, k), (_, f)) in kernel.iter().zip(fuse) {
        let name = if rel.is_empty() { "/" } else { rel.as_str() };
        match (k, f) {
            (Some((km, kc)), Some((fm, fc))) => {
                if km != fm {
                    return Some(format!("parent {name}: mtime changed: kernel {km}, fuse {fm}"));
                }
                if let (Some(kc), Some(fc)) = (kc, fc) {
                    if kc != fc {
                        return Some(format!("parent {name}: ctime changed: kernel {kc}, fuse {fc}"));
                    }
                }
            }
            (None, None) => {}
            _ => return Some(format!("parent {name}: exists on one side only: kernel {k:?}, fuse {f:?}")),
        }
    }
    None
}
