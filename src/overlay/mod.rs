//! Copy-on-write overlay of read-only lower layers and one writable upper layer.
//!
//! Two drivers share one on-disk format (kernel overlayfs, `userxattr` flavour, see
//! `docs/design/overlay.md`): [`fuse`] is burrow's own FUSE server, [`kernel`] mounts
//! kernel overlayfs. This module imports nothing else from burrow so it can become a crate.

mod closer;
mod copyup;
mod dirops;
mod filesystem;
pub mod fuse;
mod fuse_ops;
mod handles;
mod inode;
pub mod kernel;
mod layers;
mod lookup;
pub mod options;
mod readdir;
mod rename;
mod xattr;

use std::path::PathBuf;

/// Directories that make up one overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayConfig {
    /// Read-only layers, top-most first (the order of `lowerdir=`).
    pub lowers: Vec<PathBuf>,
    /// Writable layer that receives every change.
    pub upper: PathBuf,
    /// Scratch directory on the same filesystem as `upper` (copy-up staging).
    pub work: PathBuf,
}

/// Failures of setting up or serving an overlay.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("no lower layer given: pass at least one lowerdir")]
    NoLower,
    #[error("cannot open overlay layer {path}")]
    Layer { path: PathBuf, source: std::io::Error },
    #[error("work directory {work} must be on the same filesystem as upper directory {upper}")]
    WorkOtherFs { work: PathBuf, upper: PathBuf },
    #[error("cannot open /proc/self/fd (the FUSE overlay reaches its files through it: mount /proc)")]
    Proc(#[source] std::io::Error),
    #[error("cannot open /dev/fuse (is the fuse module loaded and /dev/fuse mode 0666?)")]
    DevFuse(#[source] std::io::Error),
    #[error("mount(2) of the FUSE overlay on {path} failed (the caller must be root of its user namespace, in its own mount namespace)")]
    FuseMount { path: PathBuf, source: std::io::Error },
    #[error("FUSE session on {path} failed")]
    Session { path: PathBuf, source: std::io::Error },
    #[error("kernel overlayfs mount on {path} failed (needs Linux >= 5.11 in a user namespace and an upper filesystem with user xattrs; try --overlay-driver fuse)")]
    KernelMount { path: PathBuf, source: std::io::Error },
    #[error("invalid overlay option {option}: {reason}")]
    Option { option: String, reason: String },
}
