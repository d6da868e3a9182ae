//! Access to the layer directories: every operation is an `*at` call relative to a layer root
//! fd opened once, with `O_NOFOLLOW` on the last component, so the hot paths never rebuild an
//! absolute path and a symlink inside a layer never leads the server out of it.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::{OverlayConfig, OverlayError};

/// Index of the upper layer in [`Layers`]; lowers follow in `lowerdir=` order.
pub(crate) const UPPER: usize = 0;

/// xattr that marks an upper directory as hiding everything below it (kernel `userxattr` mode).
pub(crate) const OPAQUE_XATTR: &str = "user.overlay.opaque";
/// Prefix of the xattrs that belong to the overlay format and are hidden from users.
pub(crate) const PRIVATE_XATTR_PREFIX: &[u8] = b"user.overlay.";

/// The opened layer roots.
#[derive(Debug)]
pub(crate) struct Layers {
    roots: Vec<OwnedFd>,
    devs: Vec<u64>,
    /// `WORK/work`: staging directory for atomic copy-up, the same one the kernel uses.
    work: OwnedFd,
}

/// A relative path inside a layer; the root is the empty path.
pub(crate) fn at(path: &Path) -> &Path {
    if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    }
}

pub(crate) fn child_path(parent: &Path, name: &OsStr) -> PathBuf {
    if parent.as_os_str().is_empty() {
        PathBuf::from(name)
    } else {
        parent.join(name)
    }
}

fn open_root(path: &Path) -> Result<OwnedFd, OverlayError> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| OverlayError::Layer {
        path: path.to_owned(),
        source: e.into(),
    })
}

impl Layers {
    pub(crate) fn new(cfg: &OverlayConfig) -> Result<Self, OverlayError> {
        if cfg.lowers.is_empty() {
            return Err(OverlayError::NoLower);
        }
        let mut roots = vec![open_root(&cfg.upper)?];
        for lower in &cfg.lowers {
            roots.push(open_root(lower)?);
        }
        let work_root = open_root(&cfg.work)?;
        let layer_err = |e: Errno| OverlayError::Layer {
            path: cfg.work.join("work"),
            source: e.into(),
        };
        match rustix::fs::mkdirat(&work_root, "work", Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(layer_err(e)),
        }
        let work = rustix::fs::openat(
            &work_root,
            "work",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(layer_err)?;
        let mut devs = Vec::with_capacity(roots.len());
        for (fd, path) in roots
            .iter()
            .zip(std::iter::once(&cfg.upper).chain(&cfg.lowers))
        {
            let st = rustix::fs::fstat(fd).map_err(|e| OverlayError::Layer {
                path: path.clone(),
                source: e.into(),
            })?;
            devs.push(st.st_dev);
        }
        let work_dev = rustix::fs::fstat(&work).map_err(layer_err)?.st_dev;
        if work_dev != devs[UPPER] {
            return Err(OverlayError::WorkOtherFs {
                work: cfg.work.clone(),
                upper: cfg.upper.clone(),
            });
        }
        Ok(Layers { roots, devs, work })
    }

    pub(crate) fn count(&self) -> usize {
        self.roots.len()
    }

    pub(crate) fn root(&self, layer: usize) -> &OwnedFd {
        &self.roots[layer]
    }

    pub(crate) fn work(&self) -> &OwnedFd {
        &self.work
    }

    /// Inode number reported for a real inode: the real number when the layer shares the
    /// upper filesystem (as kernel overlayfs does without xino), else tagged with the layer
    /// index in the high bits so two filesystems cannot collide.
    pub(crate) fn report_ino(&self, layer: usize, st: &Stat) -> u64 {
        self.report_ino_raw(layer, st.st_ino)
    }

    pub(crate) fn report_ino_raw(&self, layer: usize, ino: u64) -> u64 {
        if self.devs[layer] == self.devs[UPPER] {
            ino
        } else {
            ino ^ ((layer as u64) << 56)
        }
    }

    pub(crate) fn stat(&self, layer: usize, path: &Path) -> Result<Stat, Errno> {
        rustix::fs::statat(&self.roots[layer], at(path), AtFlags::SYMLINK_NOFOLLOW)
    }

    pub(crate) fn open(
        &self,
        layer: usize,
        path: &Path,
        flags: OFlags,
        mode: u32,
    ) -> Result<OwnedFd, Errno> {
        rustix::fs::openat(
            &self.roots[layer],
            at(path),
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
    }

    /// Whether the directory at `path` carries `user.overlay.opaque=y`.
    pub(crate) fn is_opaque(&self, layer: usize, path: &Path) -> bool {
        let Ok(fd) = self.open(layer, path, OFlags::RDONLY | OFlags::DIRECTORY, 0) else {
            return false;
        };
        let mut buf = [0u8; 4];
        matches!(rustix::fs::fgetxattr(&fd, OPAQUE_XATTR, &mut buf), Ok(1) if buf[0] == b'y')
    }

    pub(crate) fn set_opaque(&self, path: &Path) -> Result<(), Errno> {
        let fd = self.open(UPPER, path, OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
        rustix::fs::fsetxattr(&fd, OPAQUE_XATTR, b"y", rustix::fs::XattrFlags::empty())
    }

    /// Creates a whiteout (a 0/0 character device, which unprivileged users may create since
    /// Linux 5.8) in the upper layer.
    pub(crate) fn make_whiteout(&self, path: &Path) -> Result<(), Errno> {
        rustix::fs::mknodat(
            &self.roots[UPPER],
            path,
            FileType::CharacterDevice,
            Mode::empty(),
            0,
        )
    }

    /// Whether `name` is visible in any layer below `above` among `layers` (the directory's
    /// merged layers, top first): decides if a removal must leave a whiteout.
    pub(crate) fn lower_has(&self, dir_layers: &[usize], path: &Path) -> bool {
        dir_layers
            .iter()
            .filter(|&&l| l != UPPER)
            .find_map(|&l| self.stat(l, path).ok())
            .is_some_and(|st| !is_whiteout(&st))
    }
}

pub(crate) fn is_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

pub(crate) fn is_dir(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}
