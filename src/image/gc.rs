//! Which images and layers are in use, and removing what is not: `rmi`, `prune`, and the pins of running
//! containers. A run holds a shared flock on `locks/use-MANIFEST` and on `locks/use-LAYER` of each of its
//! layers for its whole life (the kernel drops them when the process dies, however it dies): `rmi` refuses an
//! image whose manifest lock it cannot take exclusively, and garbage collection skips a layer whose lock it
//! cannot take. Both run with the store's lock held exclusively, so no ingest is between its layers and its
//! record (ingests hold the store lock shared).

use super::digest::Digest;
use super::reference::Reference;
use super::store::{flock, open_lock, Image, Record, Store, StoreError};
use rustix::fs::FlockOperation;
use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;

/// Locks that keep an image's layers in the store while a container runs on them.
#[derive(Debug)]
pub struct Pin {
    _locks: Vec<File>,
}

/// What a removal freed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub names: Vec<String>,
    pub layers: usize,
    pub blobs: usize,
    /// Uncompressed size of the removed layers.
    pub bytes: u64,
}

impl Store {
    /// Marks the image in use until the returned [`Pin`] is dropped.
    pub fn pin(&self, image: &Image) -> Result<Pin, StoreError> {
        let mut locks = Vec::new();
        let names =
            std::iter::once(&image.record.manifest).chain(&image.record.layers).map(|d| format!("use-{}", d.hex()));
        for name in names {
            let path = self.lock_path(&name);
            let f = open_lock(&path)?;
            flock(&f, FlockOperation::LockShared, &path)?;
            locks.push(f);
        }
        Ok(Pin { _locks: locks })
    }

    /// The records an `rmi` argument names: a reference, or an image ID (a prefix of the config digest, 4 to 64
    /// hex digits, with or without `sha256:`), which names every tag of that image.
    pub fn records_named(&self, arg: &str) -> Result<Vec<Record>, StoreError> {
        let hex = arg.strip_prefix("sha256:").unwrap_or(arg);
        if hex.len() >= 4 && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hex = hex.to_ascii_lowercase();
            let by_id: Vec<Record> = self.records().into_iter().filter(|r| r.config.hex().starts_with(&hex)).collect();
            if !by_id.is_empty() {
                return Ok(by_id);
            }
        }
        // A short name: the first search registry's image that the store has (as `run` picks it).
        let candidates = super::search::Search::load()
            .and_then(|s| s.candidates(arg))
            .map_err(|e| StoreError::NotFound(format!("{arg} ({e})")))?;
        let names = || candidates.iter().map(Reference::to_string).collect::<Vec<_>>().join(" or ");
        candidates.iter().find_map(|r| self.find(r)).map(|r| vec![r]).ok_or_else(|| StoreError::NotFound(names()))
    }

    /// `burrow rmi`: removes the named images, then the layers and blobs nothing references any more.
    pub fn remove_images(&mut self, args: &[String]) -> Result<Removed, StoreError> {
        self.exclusive()?;
        let mut records = Vec::new();
        for a in args {
            records.extend(self.records_named(a)?);
        }
        // Refuse before removing anything: all or nothing.
        let mut held = Vec::new();
        for r in &records {
            let path = self.lock_path(&format!("use-{}", r.manifest.hex()));
            let f = open_lock(&path)?;
            if rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive).is_err() {
                return Err(StoreError::InUse { reference: r.reference.clone() });
            }
            held.push(f);
        }
        let mut removed = Removed::default();
        for r in &records {
            let path = self.record_file(&r.reference);
            match std::fs::remove_file(&path) {
                Ok(()) => removed.names.push(r.reference.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Io { path, source }),
            }
        }
        drop(held);
        let freed = self.collect()?;
        Ok(Removed { names: removed.names, ..freed })
    }

    /// `burrow prune`: removes layers and blobs no image references, and interrupted extractions.
    pub fn prune(&mut self) -> Result<Removed, StoreError> {
        self.exclusive()?;
        self.collect()
    }

    /// Garbage collection; the caller holds the store lock exclusively.
    fn collect(&self) -> Result<Removed, StoreError> {
        let records = self.records();
        let mut live: BTreeSet<String> = BTreeSet::new();
        for r in &records {
            live.insert(r.manifest.hex());
            live.insert(r.config.hex());
            live.extend(r.layers.iter().map(Digest::hex));
        }
        let mut removed = Removed::default();
        let mut doomed: Vec<PathBuf> = Vec::new();
        let mut keep_locks = Vec::new();
        let layers = self.root().join("layers");
        for e in std::fs::read_dir(&layers).map_err(|source| StoreError::Io { path: layers.clone(), source })?.flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(".tmp-") {
                // An extraction in progress holds its ingest lock; only an interrupted one is removed.
                let hex = rest.split('-').next().unwrap_or_default();
                let f = open_lock(&self.lock_path(&format!("ingest-{hex}")))?;
                if rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive).is_ok() {
                    doomed.push(e.path());
                    keep_locks.push(f);
                }
                continue;
            }
            if name.starts_with('.') || live.contains(&name) {
                continue;
            }
            let f = open_lock(&self.lock_path(&format!("use-{name}")))?;
            if rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive).is_err() {
                continue; // a container still runs on it (its image was replaced or removed meanwhile)
            }
            removed.bytes += self.layer_info_hex(&name).map(|i| i.size).unwrap_or(0);
            removed.layers += 1;
            // Renamed first, so that the layer is gone at once even if the removal is interrupted.
            let trash = layers.join(format!(".tmp-{name}-gc{}", std::process::id()));
            std::fs::rename(e.path(), &trash).map_err(|source| StoreError::Io { path: e.path(), source })?;
            doomed.push(trash);
            keep_locks.push(f);
        }
        self.helper().remove(&doomed.iter().map(|p| p.as_path()).collect::<Vec<_>>()).map_err(StoreError::Remove)?;
        let blobs = self.root().join("blobs/sha256");
        for e in std::fs::read_dir(&blobs).map_err(|source| StoreError::Io { path: blobs.clone(), source })?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !live.contains(&name) && std::fs::remove_file(e.path()).is_ok() {
                removed.blobs += 1;
            }
        }
        Ok(removed)
    }
}
