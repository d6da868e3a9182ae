//! Merged lookup: which layers hold a name, from the handles of the parent's layers.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use rustix::fs::Stat;
use rustix::io::Errno;

use super::inode::Found;
use super::layers::{is_dir, is_whiteout, stat_at, Layers, Real};

/// Which real objects a lookup opens (`O_PATH`) for its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Open {
    /// None (a node opens its handles by name when it first needs them: a walk that only
    /// stats entries opens nothing, and a directory is opened once, at its first listing or
    /// child lookup, not again at every lookup of its name).
    Nothing,
    /// Every layer of a directory (a removal lists it), not a non-directory.
    Dirs,
    /// Everything found.
    All,
}

/// Looks `name` up in the directory whose merged layers are `dir` (top first), the way kernel
/// overlayfs does: the first whiteout hides everything below, a non-directory hides everything
/// below, directories merge down to the first opaque one. The objects found are opened
/// (`O_PATH`, never following a symlink) as `open` asks; a directory with layers below it is
/// opened anyway, since its opaque xattr can only be read through a handle, and then all of
/// its layers are (a `Found` holds handles for all its layers or for none).
pub(crate) fn lookup_merged(layers: &Layers, dir: &[Real], name: &OsStr, open: Open) -> Result<Option<Found>, Errno> {
    let mut hits: Vec<(&Real, Stat, Option<OwnedFd>)> = Vec::new();
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
            if !hits.is_empty() {
                break;
            }
            let mut fds = Vec::new();
            if open == Open::All {
                fds.push(Arc::new(open_same(layers, d, name, &st)?));
            }
            return Ok(Some(Found { layers: vec![d.layer], fds, stat: st }));
        }
        // Opaqueness only matters when something lies below.
        let below = i + 1 < dir.len();
        let fd = if below || open != Open::Nothing { Some(open_same(layers, d, name, &st)?) } else { None };
        let opaque = below && fd.as_ref().is_some_and(|fd| layers.is_opaque(fd));
        hits.push((d, st, fd));
        if opaque {
            break;
        }
    }
    let Some(stat) = hits.first().map(|h| h.1) else {
        return Ok(None);
    };
    let mut found = Found { layers: hits.iter().map(|h| h.0.layer).collect(), fds: Vec::new(), stat };
    if hits.iter().any(|h| h.2.is_some()) {
        for (d, st, fd) in hits {
            let fd = match fd {
                Some(fd) => fd,
                None => open_same(layers, d, name, &st)?,
            };
            found.fds.push(Arc::new(fd));
        }
    }
    Ok(Some(found))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::layers::UPPER;
    use crate::overlay::OverlayConfig;

    fn layers(t: &tempfile::TempDir, lowers: usize) -> Layers {
        let p = |n: &str| {
            let d = t.path().join(n);
            std::fs::create_dir_all(&d).unwrap();
            d
        };
        let cfg =
            OverlayConfig { lowers: (0..lowers).map(|i| p(&format!("l{i}"))).collect(), upper: p("u"), work: p("w") };
        Layers::new(&cfg).unwrap()
    }

    #[test]
    fn a_lookup_opens_only_what_it_is_asked_for_or_needs_for_opaqueness() {
        let t = tempfile::tempdir().unwrap();
        let l = layers(&t, 2);
        for d in ["l0/d", "l1/d", "l1/only", "u/top"] {
            std::fs::create_dir(t.path().join(d)).unwrap();
        }
        std::fs::write(t.path().join("l0/f"), "x").unwrap();
        let root: Vec<Real> = (0..l.count()).map(|i| l.root(i)).collect();
        let name = OsStr::new;

        // A directory only in the bottom layer: nothing to read an xattr from, nothing opened.
        let only = lookup_merged(&l, &root, name("only"), Open::Nothing).unwrap().unwrap();
        assert_eq!((only.layers.clone(), only.fds.len()), (vec![2], 0));
        // A file: opened only when asked for everything.
        assert!(lookup_merged(&l, &root, name("f"), Open::Dirs).unwrap().unwrap().fds.is_empty());
        assert_eq!(lookup_merged(&l, &root, name("f"), Open::All).unwrap().unwrap().fds.len(), 1);
        // A directory with a layer below it: its opaque xattr needs a handle, so all its layers
        // are opened, the top one checked to be the object found.
        let d = lookup_merged(&l, &root, name("d"), Open::Nothing).unwrap().unwrap();
        assert_eq!((d.layers.clone(), d.fds.len()), (vec![1, 2], 2));
        let top = rustix::fs::fstat(&*d.fds[0]).unwrap();
        assert_eq!((top.st_dev, top.st_ino), d.key());
        // An upper directory above lowers is opened for the same reason; asked for, always.
        assert_eq!(lookup_merged(&l, &root, name("top"), Open::Nothing).unwrap().unwrap().fds.len(), 1);
        assert_eq!(lookup_merged(&l, &root[2..], name("only"), Open::Dirs).unwrap().unwrap().fds.len(), 1);
        assert!(lookup_merged(&l, &root, name("missing"), Open::All).unwrap().is_none());
        assert_eq!(root[0].layer, UPPER);
    }
}
