//! Merged lookup: which layers hold a name, from the handles of the parent's layers.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use rustix::fs::Stat;
use rustix::io::Errno;

use super::inode::Found;
use super::layers::{is_dir, is_whiteout, stat_at, Layers, Real};

/// Looks `name` up in the directory whose merged layers are `dir` (top first), the way kernel
/// overlayfs does: the first whiteout hides everything below, a non-directory hides everything
/// below, directories merge down to the first opaque one. Each real directory found is opened
/// (`O_PATH`, never following a symlink) and described by that handle; a non-directory is
/// opened only when `open_files` (else its node opens it by name when first used: a walk that
/// only stats files opens nothing).
pub(crate) fn lookup_merged(
    layers: &Layers,
    dir: &[Real],
    name: &OsStr,
    open_files: bool,
) -> Result<Option<Found>, Errno> {
    let mut found: Option<Found> = None;
    for (i, d) in dir.iter().enumerate() {
        let st = match stat_at(&*d.fd, name) {
            Ok(st) => st,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => continue,
            Err(e) => return Err(e),
        };
        if is_whiteout(&st) {
            break;
        }
        if !is_dir(&st) {
            if found.is_some() {
                break;
            }
            let mut fds = Vec::new();
            if open_files {
                fds.push(Arc::new(open_same(layers, d, name, &st)?));
            }
            return Ok(Some(Found { layers: vec![d.layer], fds, stat: st }));
        }
        let fd = open_same(layers, d, name, &st)?;
        // Opaqueness only matters when something lies below.
        let opaque = i + 1 < dir.len() && layers.is_opaque(&fd);
        let f = found.get_or_insert_with(|| Found { layers: Vec::new(), fds: Vec::new(), stat: st });
        f.layers.push(d.layer);
        f.fds.push(Arc::new(fd));
        if opaque {
            break;
        }
    }
    Ok(found)
}

/// Opens (`O_PATH`) the entry `name` of `dir` that was just found with attributes `st`; it must
/// still be that object.
pub(crate) fn open_same(layers: &Layers, dir: &Real, name: &OsStr, st: &Stat) -> Result<OwnedFd, Errno> {
    let fd = layers.open_path(&*dir.fd, name)?;
    let now = rustix::fs::fstat(&fd)?;
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
        return Err(Errno::STALE);
    }
    Ok(fd)
}

/// The root directory: every layer root merges, down to the first opaque one.
pub(crate) fn lookup_root(layers: &Layers) -> Result<Found, Errno> {
    let mut found = Found { layers: Vec::new(), fds: Vec::new(), stat: rustix::fs::fstat(&*layers.root(0).fd)? };
    for layer in 0..layers.count() {
        let root = layers.root(layer);
        found.layers.push(layer);
        found.fds.push(root.fd.clone());
        if layer + 1 < layers.count() && layers.is_opaque(&*root.fd) {
            break;
        }
    }
    Ok(found)
}
