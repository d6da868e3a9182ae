//! One differential run: fresh lower layers from a seed, a kernel and a FUSE overlay over
//! them, the same ops on both, then the merged trees and the lower fingerprints compared.

use super::exec::{show, Exec};
use super::lower::{build_layers, fingerprint};
use super::mounts::{mount_fuse, mount_kernel, unmount, FuseMount, Layout};
use super::ops::Op;
use super::rng::Rng;
use super::times;
use super::tree::{diff_lines, snapshot};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct Env {
    pub work: PathBuf,
    pub fuse_prog: PathBuf,
    pub dir_nlink: bool,
    /// Compare the parents' mtime/ctime changes after every op (`BURROW_DIFF_IGNORE=parenttimes`
    /// turns it off while hunting other bugs).
    pub parent_times: bool,
}

/// Seeds found with generator v1 (before issue 12): their lower layers and op lists are made as
/// they were then (`v1(seed)`); every other seed uses generator v2.
pub const V1_SEEDS: &[u64] = &[108_256_570_798_764];

pub fn v1(seed: u64) -> bool {
    V1_SEEDS.contains(&seed)
}

/// The op list of a sequence: the same list for the same seed on every machine.
pub fn ops_for(seed: u64) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    let count = rng.range(5, 40) as usize;
    if v1(seed) {
        super::ops::random_ops(&mut rng, count)
    } else {
        super::ops::random_ops_v2(&mut rng, count)
    }
}

#[derive(Debug)]
pub enum Outcome {
    Agree,
    /// What disagreed, and the index of the op where it did (None: final tree or lower).
    Disagree {
        at: Option<usize>,
        what: String,
    },
}

/// Seed of the lower layers of a sequence (the op list has its own stream).
pub fn lower_rng(seed: u64) -> Rng {
    Rng::new(seed ^ 0x6c6f_7765_7273)
}

pub fn layer_count(seed: u64) -> usize {
    1 + (seed % 3) as usize
}

/// Fresh `base` with generated layers; returns their paths and raw fingerprints.
pub fn fresh_layers(base: &Path, seed: u64) -> Result<(Vec<PathBuf>, Vec<Vec<String>>), String> {
    if base.exists() {
        fs::remove_dir_all(base).map_err(|e| format!("remove {}: {e}", base.display()))?;
    }
    fs::create_dir_all(base).map_err(|e| e.to_string())?;
    if seed == super::shapes::SEED {
        let lowers = super::shapes::build(base).map_err(|e| format!("build the rename-shape layers: {e}"))?;
        let prints = lowers.iter().map(|l| fingerprint(l)).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
        return Ok((lowers, prints));
    }
    let lowers =
        build_layers(&mut lower_rng(seed), base, layer_count(seed)).map_err(|e| format!("build layers: {e}"))?;
    if !v1(seed) {
        super::lower::add_setgid(&mut Rng::new(seed ^ 0x7367_6964), &lowers)
            .map_err(|e| format!("setgid directories: {e}"))?;
    }
    let prints = lowers.iter().map(|l| fingerprint(l)).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    Ok((lowers, prints))
}

pub fn check_lowers(lowers: &[PathBuf], before: &[Vec<String>]) -> Result<(), String> {
    for (l, b) in lowers.iter().zip(before) {
        let now = fingerprint(l).map_err(|e| e.to_string())?;
        if &now != b {
            return Err(format!("lower layer {} changed:\n{}", l.display(), diff_lines("before", b, "after", &now)));
        }
    }
    Ok(())
}

/// Runs `ops` on both drivers. `Err` is an infrastructure failure (mount failed...).
pub fn run_sequence(env: &Env, seed: u64, ops: &[Op]) -> Result<Outcome, String> {
    let base = env.work.join("seq");
    let (lowers, prints) = fresh_layers(&base, seed)?;
    let kl = Layout::new(&base, "kernel", &lowers).map_err(|e| e.to_string())?;
    let fl = Layout::new(&base, "fuse", &lowers).map_err(|e| e.to_string())?;
    mount_kernel(&kl)?;
    let second = match mount_second(env, &fl) {
        Ok(f) => f,
        Err(e) => {
            let _ = unmount(&kl.mnt);
            return Err(e);
        }
    };
    let outcome = compare(env, &kl.mnt, &fl.mnt, ops);
    let r1 = unmount(&kl.mnt);
    let r2 = second.unmount();
    r1?;
    r2?;
    if let Err(e) = check_lowers(&lowers, &prints) {
        return Ok(Outcome::Disagree { at: None, what: e });
    }
    Ok(outcome)
}

/// The driver under test; `BURROW_DIFF_FUSE_PROGRAM=kernel` puts a second kernel overlay
/// there, which checks the harness itself (it must then never see a disagreement).
pub enum Second {
    Fuse(FuseMount),
    Kernel(PathBuf),
}

impl Second {
    pub fn unmount(self) -> Result<(), String> {
        match self {
            Second::Fuse(f) => f.unmount(),
            Second::Kernel(m) => unmount(&m),
        }
    }
}

pub fn mount_second(env: &Env, l: &Layout) -> Result<Second, String> {
    if env.fuse_prog == Path::new("kernel") {
        mount_kernel(l)?;
        return Ok(Second::Kernel(l.mnt.clone()));
    }
    mount_fuse(&env.fuse_prog, l, &env.work.join("fuse.log")).map(Second::Fuse)
}

fn compare(env: &Env, kmnt: &Path, fmnt: &Path, ops: &[Op]) -> Outcome {
    let mut k = Exec::new(kmnt, env.dir_nlink);
    let mut f = Exec::new(fmnt, env.dir_nlink);
    f.stable_ino = env.fuse_prog != Path::new("kernel");
    // Descriptor slots on which the kernel departed from POSIX (`fd_quirk`): from then on the two
    // sides' descriptors legitimately differ, and only the final trees are compared.
    let mut diverged = [false; super::ops::SLOTS as usize];
    for (i, op) in ops.iter().enumerate() {
        if let Some(s) = super::ops::fd_reset(op) {
            diverged[usize::from(s)] = false;
        }
        let tk = times::before(kmnt, op);
        let rk = k.apply(op);
        let tk = times::after(kmnt, &tk, i);
        let tf = times::before(fmnt, op);
        let rf = f.apply(op);
        let tf = times::after(fmnt, &tf, i);
        count_result(&rk);
        if let Some(s) = super::ops::fd_slot(op) {
            if diverged[usize::from(s)] || fd_quirk(&rk, &rf) {
                diverged[usize::from(s)] = true;
                if changes_metadata(op) {
                    // Kernel overlayfs copies a lower file up through a descriptor whose name is
                    // gone and so brings the name back (6.18: open a lower FIFO, unlink it,
                    // fchmod the descriptor: the FIFO is listed again). The rest of the sequence
                    // would only show that kernel bug.
                    CUT_SHORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Outcome::Agree;
                }
                continue;
            }
        }
        let quirk = kernel_quirk(op, &rk, &rf);
        if rk != rf && !quirk {
            return Outcome::Disagree {
                at: Some(i),
                what: format!("op {}: `{op}`\n  kernel: {}\n  fuse:   {}", i + 1, show(&rk), show(&rf)),
            };
        }
        if let Some(d) = times::compare(&tk, &tf).filter(|_| env.parent_times && !quirk) {
            return Outcome::Disagree { at: Some(i), what: format!("op {}: `{op}` ({})\n  {d}", i + 1, show(&rk)) };
        }
    }
    k.close_all();
    f.close_all();
    let sk = snapshot(kmnt, env.dir_nlink);
    let sf = snapshot(fmnt, env.dir_nlink);
    if sk != sf {
        return Outcome::Disagree {
            at: None,
            what: format!("final merged trees differ:\n{}", diff_lines("kernel", &sk, "fuse", &sf)),
        };
    }
    Outcome::Agree
}

/// Where kernel overlayfs departs from POSIX and burrow deliberately does not: renaming one name of a file
/// onto another name of the same file is a successful no-op (POSIX rename(2)); kernel overlayfs (userxattr,
/// no index) returns ESTALE for two upper hard links made through the overlay. Both leave the tree unchanged,
/// which the final comparison still checks.
fn kernel_quirk(op: &super::ops::Op, kernel: &super::exec::Res, fuse: &super::exec::Res) -> bool {
    matches!(op, super::ops::Op::Rename { .. }) && *kernel == Err(libc::ESTALE) && fuse.is_ok()
}

/// Where kernel overlayfs departs from POSIX on a descriptor whose last name is gone (checked on
/// 6.18): a file that came from a lower layer keeps `st_nlink` 1 (the lower inode's), and a
/// metadata change through it needs a copy-up that fails: EEXIST (it meets the whiteout), EIO,
/// ENOTDIR or ENOENT (its directory tree was removed). POSIX and the FUSE overlay (issue 12) say 0 links and
/// a working call, so only that is accepted: a FUSE error other than the kernel's still disagrees.
fn fd_quirk(kernel: &super::exec::Res, fuse: &super::exec::Res) -> bool {
    match (kernel, fuse) {
        (Ok(k), Ok(f)) => k != f && k.replace(" nlink=1", " nlink=0") == *f,
        (Err(e), Ok(_)) => [libc::EEXIST, libc::EIO, libc::ENOTDIR, libc::ENOENT].contains(e),
        _ => false,
    }
}

fn changes_metadata(op: &Op) -> bool {
    match op {
        Op::AsUser(inner) => changes_metadata(inner),
        Op::FdChmod { .. } | Op::FdChown { .. } | Op::FdSetXattr { .. } | Op::FdTruncate { .. } => true,
        _ => false,
    }
}

/// Sequences whose comparison stopped at a kernel departure (see `compare`).
pub static CUT_SHORT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How often each result kind was seen (ok or errno name): shows that the sequences reach
/// the error paths, not only the happy ones.
static RESULTS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

fn count_result(r: &super::exec::Res) {
    let key = match r {
        Ok(_) => String::from("ok"),
        Err(e) => super::exec::errno_name(*e),
    };
    if let Ok(mut m) = RESULTS.lock() {
        *m.entry(key).or_default() += 1;
    }
}

pub fn result_counts() -> String {
    let m = RESULTS.lock().map(|m| m.clone()).unwrap_or_default();
    m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

/// The merged view of the lower layers alone, for a reproducer's context.
pub fn describe_layers(base: &Path, seed: u64) -> String {
    match fresh_layers(base, seed) {
        Ok((lowers, prints)) => {
            let mut s = String::new();
            for (l, p) in lowers.iter().zip(prints) {
                s += &format!("  layer {} (top first):\n", l.file_name().unwrap_or_default().to_string_lossy());
                for line in p {
                    s += &format!("    {line}\n");
                }
            }
            let _ = fs::remove_dir_all(base);
            s
        }
        Err(e) => e,
    }
}
