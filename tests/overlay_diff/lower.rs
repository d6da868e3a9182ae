//! Generated lower layers (with whiteouts and opaque directories in the upper ones) and a
//! raw fingerprint of a directory tree, used to prove the lower layers never change.

use super::exec::{file_type_char, list_xattrs};
use super::ops::{random_path, OWNERS, XATTRS};
use super::rng::{fnv64, pattern, Rng};
use rustix::fs::{AtFlags, Timespec, Timestamps, XattrFlags, CWD};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Kernel overlayfs' `userxattr` flavour of the opaque marker.
pub const OPAQUE_XATTR: &str = "user.overlay.opaque";

/// Builds `count` layers under `base` (`base/l0` is the top layer) and returns their paths.
pub fn build_layers(rng: &mut Rng, base: &Path, count: usize) -> std::io::Result<Vec<PathBuf>> {
    let mut layers = Vec::new();
    for i in 0..count {
        let dir = base.join(format!("l{i}"));
        fs::create_dir_all(&dir)?;
        let bottom = i + 1 == count;
        let entries = rng.range(4, 14);
        for _ in 0..entries {
            add_entry(rng, &dir, bottom)?;
        }
        layers.push(dir);
    }
    // Whiteouts last, and only where they hide something: a whiteout over nothing is a
    // degenerate tree no tool writes (the kernel then lists it in readdir of a non-merged
    // directory but lookup says ENOENT), and it would drown the interesting differences.
    for i in (0..count.saturating_sub(1)).rev() {
        for _ in 0..rng.range(0, 4) {
            let rel = random_path(rng);
            if hides_something(&layers[i..], &rel) && ensure_parent_dirs(&layers[i], &rel) {
                let p = layers[i].join(&rel);
                rustix::fs::mknodat(CWD, &p, rustix::fs::FileType::CharacterDevice, rustix::fs::Mode::empty(), 0)?;
            }
        }
    }
    // Times last: creating entries changes the directories' mtimes.
    for dir in &layers {
        set_times(rng, dir)?;
    }
    Ok(layers)
}

/// Generator v2: about a third of the layers' directories get the set-group-ID bit (their group
/// is one of `OWNERS`, often not the creator's), so entries made in them must take that group.
pub fn add_setgid(rng: &mut Rng, layers: &[PathBuf]) -> std::io::Result<()> {
    for layer in layers {
        let mut dirs = Vec::new();
        walk(layer, &mut |p, m| {
            if m.is_dir() && p != layer.as_path() {
                dirs.push((p.to_path_buf(), m.mode()));
            }
        })?;
        for (d, mode) in dirs {
            if rng.chance(1, 3) {
                fs::set_permissions(&d, fs::Permissions::from_mode((mode & 0o7777) | 0o2000))?;
            }
        }
    }
    Ok(())
}

fn ensure_parent_dirs(layer: &Path, rel: &str) -> bool {
    let full = layer.join(rel);
    let parent = full.parent().expect("paths have a parent");
    match fs::symlink_metadata(parent) {
        Ok(m) => m.is_dir(),
        Err(_) => fs::create_dir_all(parent).is_ok(),
    }
}

fn add_entry(rng: &mut Rng, layer: &Path, bottom: bool) -> std::io::Result<()> {
    let rel = random_path(rng);
    if !ensure_parent_dirs(layer, &rel) || fs::symlink_metadata(layer.join(&rel)).is_ok() {
        return Ok(());
    }
    let p = layer.join(&rel);
    let kind = rng.below(if bottom { 6 } else { 7 });
    match kind {
        0 | 1 => {
            let len = *rng.pick(&[0usize, 1, 100, 4096, 5000, 20_000]);
            fs::write(&p, pattern(rng.next_u64() as u8, len))?;
            if rng.chance(1, 6) {
                // A sparse tail: copy-up must keep size and content.
                let f = fs::OpenOptions::new().write(true).open(&p)?;
                std::os::unix::fs::FileExt::write_at(&f, b"tail", 1 << 20)?;
            }
            fs::set_permissions(&p, fs::Permissions::from_mode(*rng.pick(&[0o644, 0o600, 0o755, 0o444, 0o4755])))?;
        }
        2 => {
            fs::create_dir(&p)?;
            fs::set_permissions(&p, fs::Permissions::from_mode(*rng.pick(&[0o755, 0o700, 0o555, 0o1777])))?;
        }
        3 => std::os::unix::fs::symlink(format!("../{}", random_path(rng)), &p)?,
        4 => nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644)).map_err(std::io::Error::from)?,
        5 => {
            // A hard link to another regular file of this layer, if the drawn one is.
            let other = layer.join(random_path(rng));
            match fs::symlink_metadata(&other) {
                Ok(m) if m.is_file() => fs::hard_link(&other, &p)?,
                _ => fs::write(&p, b"x")?,
            }
        }
        _ => {
            fs::create_dir(&p)?;
            rustix::fs::lsetxattr(&p, OPAQUE_XATTR, b"y", XattrFlags::empty())?;
        }
    }
    decorate(rng, &p)
}

enum Entry {
    Missing,
    Whiteout,
    Dir { opaque: bool },
    Other,
}

fn entry(layer: &Path, rel: &str) -> Entry {
    use std::os::unix::fs::FileTypeExt;
    let p = layer.join(rel);
    match fs::symlink_metadata(&p) {
        Err(_) => Entry::Missing,
        Ok(m) if m.file_type().is_char_device() && m.rdev() == 0 => Entry::Whiteout,
        Ok(m) if m.is_dir() => {
            let mut buf = [0u8; 8];
            Entry::Dir { opaque: rustix::fs::lgetxattr(&p, OPAQUE_XATTR, &mut buf[..]).is_ok() }
        }
        Ok(_) => Entry::Other,
    }
}

/// Whether a whiteout at `rel` in `layers[0]` would hide an entry of the layers below:
/// overlayfs' lookup, path component by component (whiteouts stop it, an opaque
/// directory or a non-directory ends the merge).
fn hides_something(layers: &[PathBuf], rel: &str) -> bool {
    if !matches!(entry(&layers[0], rel), Entry::Missing) {
        return false;
    }
    let parts: Vec<&str> = rel.split('/').collect();
    let mut merged: Vec<usize> = (0..layers.len()).collect();
    for depth in 0..parts.len() {
        let prefix = parts[..=depth].join("/");
        let last = depth + 1 == parts.len();
        let mut next = Vec::new();
        for &i in &merged {
            match entry(&layers[i], &prefix) {
                Entry::Missing => continue,
                Entry::Whiteout => break,
                Entry::Other if last => return i > 0,
                Entry::Other => break,
                Entry::Dir { .. } if last => return i > 0,
                Entry::Dir { opaque } => {
                    next.push(i);
                    if opaque {
                        break;
                    }
                }
            }
        }
        if last {
            return false;
        }
        // Layer 0 gets the parent directory created if it lacks it (not opaque).
        if !next.contains(&0) && !matches!(entry(&layers[0], &prefix), Entry::Missing) {
            return false;
        }
        if !next.contains(&0) {
            next.insert(0, 0);
        }
        merged = next;
    }
    false
}

/// Owner and user xattrs (symlinks: owner only; user xattrs are not allowed on them).
fn decorate(rng: &mut Rng, p: &Path) -> std::io::Result<()> {
    let uid = *rng.pick(&OWNERS);
    let gid = *rng.pick(&OWNERS);
    let mode = fs::symlink_metadata(p)?.mode();
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
    let m = fs::symlink_metadata(p)?;
    if m.file_type().is_symlink() {
        return Ok(());
    }
    // chown cleared set-id bits; the lower layer is meant to carry them.
    fs::set_permissions(p, fs::Permissions::from_mode(mode & 0o7777))?;
    if m.is_file() || m.is_dir() {
        for name in XATTRS {
            if rng.chance(1, 3) {
                rustix::fs::lsetxattr(p, name, &[rng.next_u64() as u8 | 1], XattrFlags::empty())?;
            }
        }
    }
    Ok(())
}

fn set_times(rng: &mut Rng, dir: &Path) -> std::io::Result<()> {
    let mut all = Vec::new();
    walk(dir, &mut |p, _| all.push(p.to_path_buf()))?;
    all.reverse(); // children before parents
    for p in all {
        let t = Timespec { tv_sec: rng.range(1_000_000_000, 1_700_000_000) as i64, tv_nsec: 0 };
        let ts = Timestamps { last_access: t, last_modification: t };
        rustix::fs::utimensat(CWD, &p, &ts, AtFlags::SYMLINK_NOFOLLOW)?;
    }
    Ok(())
}

/// Depth-first, sorted walk (the root included).
pub fn walk(root: &Path, f: &mut dyn FnMut(&Path, &fs::Metadata)) -> std::io::Result<()> {
    let m = fs::symlink_metadata(root)?;
    f(root, &m);
    if m.is_dir() {
        let mut names: Vec<_> = fs::read_dir(root)?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
        names.sort();
        for n in names {
            walk(&root.join(n), f)?;
        }
    }
    Ok(())
}

/// Everything about a raw tree that a lower layer must keep: names, types, modes, owners,
/// mtimes, device numbers, inode identity of hard links, content and all xattrs.
pub fn fingerprint(root: &Path) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut inos = std::collections::BTreeMap::new();
    walk(root, &mut |p, m| {
        let rel = p.strip_prefix(root).unwrap_or(p).display().to_string();
        let next = inos.len();
        let link_id = *inos.entry(m.ino()).or_insert(next);
        let t = file_type_char(m);
        let extra = match t {
            'f' => fs::read(p).map(|d| format!("{:x}", fnv64(&d))).unwrap_or_else(|e| e.to_string()),
            'l' => fs::read_link(p).map(|t| t.display().to_string()).unwrap_or_default(),
            _ => String::new(),
        };
        let xattrs = list_xattrs(p).map(|v| v.join(",")).unwrap_or_default();
        lines.push(format!(
            "/{rel} {t} {:o} {}:{} size={} mtime={}.{} rdev={} nlink={} id={link_id} {extra} [{xattrs}]",
            m.mode(),
            m.uid(),
            m.gid(),
            if t == 'd' { 0 } else { m.size() },
            m.mtime(),
            m.mtime_nsec(),
            m.rdev(),
            m.nlink()
        ));
    })?;
    Ok(lines)
}
