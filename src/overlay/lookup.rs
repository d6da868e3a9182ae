//! Merged lookup: which layer holds a name, and which layers a directory merges.

use std::path::Path;

use rustix::io::Errno;

use super::inode::Found;
use super::layers::{is_dir, is_whiteout, Layers};

/// Looks `path` up through `dir_layers` (the parent directory's layers, top first), the way
/// kernel overlayfs does: the first whiteout hides everything below, a non-directory hides
/// everything below, directories merge down to the first opaque one.
pub(crate) fn lookup_merged(
    layers: &Layers,
    dir_layers: &[usize],
    path: &Path,
) -> Result<Option<Found>, Errno> {
    let mut found: Option<Found> = None;
    for (i, &layer) in dir_layers.iter().enumerate() {
        let st = match layers.stat(layer, path) {
            Ok(st) => st,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => continue,
            Err(e) => return Err(e),
        };
        if is_whiteout(&st) {
            break;
        }
        match &mut found {
            None if !is_dir(&st) => {
                return Ok(Some(Found {
                    layer,
                    stat: st,
                    dir_layers: Vec::new(),
                }))
            }
            None => {
                found = Some(Found {
                    layer,
                    stat: st,
                    dir_layers: vec![layer],
                })
            }
            Some(_) if !is_dir(&st) => break,
            Some(f) => f.dir_layers.push(layer),
        }
        // Opaqueness only matters when something lies below.
        if i + 1 < dir_layers.len() && layers.is_opaque(layer, path) {
            break;
        }
    }
    Ok(found)
}

/// The root directory: every layer root merges, down to the first opaque one.
pub(crate) fn lookup_root(layers: &Layers) -> Result<Found, Errno> {
    let mut dir_layers = Vec::new();
    for layer in 0..layers.count() {
        dir_layers.push(layer);
        if layer + 1 < layers.count() && layers.is_opaque(layer, Path::new("")) {
            break;
        }
    }
    let stat = layers.stat(0, Path::new(""))?;
    Ok(Found {
        layer: 0,
        stat,
        dir_layers,
    })
}
