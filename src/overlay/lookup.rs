//! Merged lookup: which layers hold a name, from the handles of the parent's layers.

use std::ffi::OsStr;
use std::sync::Arc;

use rustix::io::Errno;

use super::inode::Found;
use super::layers::{is_dir, is_whiteout, Layers, Real};

/// Looks `name` up in the directory whose merged layers are `dir` (top first), the way kernel
/// overlayfs does: the first whiteout hides everything below, a non-directory hides everything
/// below, directories merge down to the first opaque one. Each real object found is opened
/// (`O_PATH`, never following a symlink) and described by that handle.
pub(crate) fn lookup_merged(layers: &Layers, dir: &[Real], name: &OsStr) -> Result<Option<Found>, Errno> {
    let mut found: Option<Found> = None;
    for (i, d) in dir.iter().enumerate() {
        let fd = match layers.open_path(&*d.fd, name) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => continue,
            Err(e) => return Err(e),
        };
        let st = rustix::fs::fstat(&fd)?;
        if is_whiteout(&st) {
            break;
        }
        // Opaqueness only matters when something lies below.
        let opaque = is_dir(&st) && i + 1 < dir.len() && layers.is_opaque(&fd);
        match &mut found {
            None if !is_dir(&st) => {
                return Ok(Some(Found { layers: vec![d.layer], fds: vec![Arc::new(fd)], stat: st }))
            }
            None => found = Some(Found { layers: vec![d.layer], fds: vec![Arc::new(fd)], stat: st }),
            Some(_) if !is_dir(&st) => break,
            Some(f) => {
                f.layers.push(d.layer);
                f.fds.push(Arc::new(fd));
            }
        }
        if opaque {
            break;
        }
    }
    Ok(found)
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
