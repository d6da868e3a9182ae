//! Every rename shape between lower, merged, opaque and upper directories, onto new, existing,
//! removed (whited-out) names: one fixed pair of lower layers, one sequence per (source,
//! destination), each on fresh mounts of both drivers (results, parents' times, final trees).
//!
//! Layers (l0 on top):
//! - l1: x y e/ wh, lo/{f x y e/} (set-group-ID, group 1000), mg/{f1 x y e/}, op/hidden,
//!   ld/{c1 sub/c2}, od/old
//! - l0: mg/f0, op/ opaque with {f x y e/}, wh as a whiteout
//!
//! Before the rename, each sequence makes the upper-only directory `up/{f x e/ d/}`, removes the
//! lower `od/` and makes it again (opaque in the upper layer) with `{x y e/}`, a new directory
//! `nd/` in lo, mg, op and od, and removes `y` in every directory (a whiteout where a lower
//! one had it); after it, the entry moves on to the removed `y` of the root (or of `lo`).

use super::ops::{Op, RenameMode};
use std::fs;
use std::path::{Path, PathBuf};

/// `run_sequence` builds these layers instead of generated ones for this seed.
pub const SEED: u64 = u64::MAX - 0x7368;

const DIRS: [&str; 6] = ["", "lo", "mg", "op", "up", "od"];
const NAMES: [&str; 4] = ["n", "x", "y", "e"];
/// Sources: files of a lower-only, a merged (from either layer) and an opaque directory, a lower
/// directory with children, an opaque directory, an upper file, an upper directory.
/// Then directories made (upper) inside a lower-only, a merged, a lower opaque and an upper opaque
/// directory (`od`: removed and made again, so opaque in the upper layer).
const SOURCES: [&str; 12] =
    ["lo/f", "mg/f1", "mg/f0", "op/f", "ld", "op", "up/f", "up/d", "lo/nd", "mg/nd", "op/nd", "od/nd"];

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

pub fn build(base: &Path) -> std::io::Result<Vec<PathBuf>> {
    let (l0, l1) = (base.join("l0"), base.join("l1"));
    for d in ["lo/e", "mg/e", "op", "ld/sub", "e"] {
        fs::create_dir_all(l1.join(d))?;
    }
    fs::create_dir_all(l1.join("od/old"))?;
    for f in ["x", "y", "wh", "lo/f", "lo/x", "lo/y", "mg/f1", "mg/x", "mg/y", "op/hidden", "ld/c1", "ld/sub/c2"] {
        fs::write(l1.join(f), format!("l1 {f}\n"))?;
    }
    // A set-group-ID lower-only directory (shared project directories are; issue 12 item 3's
    // shape ends in one).
    std::os::unix::fs::chown(l1.join("lo"), None, Some(1000))?;
    fs::set_permissions(l1.join("lo"), std::os::unix::fs::PermissionsExt::from_mode(0o2775))?;
    fs::create_dir_all(l0.join("mg"))?;
    fs::create_dir_all(l0.join("op/e"))?;
    rustix::fs::lsetxattr(l0.join("op"), super::lower::OPAQUE_XATTR, b"y", rustix::fs::XattrFlags::empty())?;
    for f in ["mg/f0", "op/f", "op/x", "op/y"] {
        fs::write(l0.join(f), format!("l0 {f}\n"))?;
    }
    rustix::fs::mknodat(
        rustix::fs::CWD,
        l0.join("wh"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )?;
    Ok(vec![l0, l1])
}

fn setup_ops() -> Vec<Op> {
    let mut ops = vec![
        Op::Mkdir { path: "up".into(), mode: 0o755 },
        Op::Create { path: "up/f".into(), mode: 0o644 },
        Op::WriteAt { path: "up/f".into(), off: 0, len: 100, fill: 7 },
        Op::Create { path: "up/x".into(), mode: 0o644 },
        Op::Mkdir { path: "up/e".into(), mode: 0o755 },
        Op::Mkdir { path: "up/d".into(), mode: 0o755 },
        Op::Create { path: "up/d/inner".into(), mode: 0o600 },
        Op::Create { path: "up/y".into(), mode: 0o644 },
    ];
    ops.push(Op::Rmtree { path: "od".into() });
    ops.push(Op::Mkdir { path: "od".into(), mode: 0o755 });
    for f in ["x", "y"] {
        ops.push(Op::Create { path: join("od", f), mode: 0o644 });
    }
    ops.push(Op::Mkdir { path: "od/e".into(), mode: 0o755 });
    for d in ["lo", "mg", "op", "od"] {
        ops.push(Op::Mkdir { path: join(d, "nd"), mode: 0o755 });
        ops.push(Op::Create { path: join(d, "nd/inner"), mode: 0o644 });
    }
    ops.extend(DIRS.iter().map(|d| Op::Unlink { path: join(d, "y") }));
    ops
}

/// (description, ops) for every shape.
pub fn cases() -> Vec<(String, Vec<Op>)> {
    let mut out = Vec::new();
    for src in SOURCES {
        for dir in DIRS {
            for name in NAMES {
                let to = join(dir, name);
                if to == src {
                    continue;
                }
                let mut ops = setup_ops();
                ops.push(Op::Rename { from: src.into(), to: to.clone(), mode: RenameMode::Plain });
                ops.push(Op::Stat { path: to.clone() });
                ops.push(Op::Stat { path: src.into() });
                ops.push(Op::Readdir { path: dir.into() });
                // The renamed entry stays usable: a new entry inside it, or its content.
                ops.push(Op::Create { path: join(&to, "new"), mode: 0o644 });
                ops.push(Op::Read { path: to.clone() });
                // A second hop onto the removed name `y` of the root (of `lo` for entries already
                // in the root): issue 12 item 3, an upper directory made in an opaque one, moved
                // into a set-group-ID lower directory, then onto a whiteout.
                let next = if dir.is_empty() { "lo" } else { "" };
                ops.push(Op::Rename { from: to.clone(), to: join(next, "y"), mode: RenameMode::Plain });
                ops.push(Op::Readdir { path: next.into() });
                out.push((format!("rename {src} -> {to}"), ops));
            }
        }
    }
    out
}
