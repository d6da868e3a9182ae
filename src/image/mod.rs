//! Container images: references, the local store, safe layer extraction, archive import, and the image side of
//! `burrow run IMAGE`. The registry client lives in [`registry`] and [`pull`] (issue 10's second half).
//!
//! docs/design/store.md describes the store's layout, locking and garbage collection.

pub mod commands;
pub mod config;
pub mod digest;
pub mod extract;
#[cfg(test)]
mod extract_tests;
pub mod gc;
pub mod helper;
pub mod import;
mod import_docker;
mod import_oci;
pub mod layer_fs;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod run;
pub mod search;
pub mod store;

pub use digest::Digest;
pub use reference::Reference;
pub use store::{Image, Store, StoreError};

/// Layer media types burrow unpacks (OCI and Docker schema 2 names).
pub mod media {
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    pub const OCI_NONDIST_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";

    /// How a layer of this media type is compressed.
    pub fn compression(media_type: &str) -> Option<Compression> {
        match media_type {
            OCI_LAYER | DOCKER_LAYER | "application/vnd.oci.image.layer.nondistributable.v1.tar" => {
                Some(Compression::None)
            }
            OCI_LAYER_GZIP | DOCKER_LAYER_GZIP | OCI_NONDIST_GZIP => Some(Compression::Gzip),
            OCI_LAYER_ZSTD | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Compression {
        None,
        Gzip,
        Zstd,
    }

    /// Guesses the compression from the first bytes (docker-archive layers carry no media type).
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}
