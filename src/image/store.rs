//! The local image store: verified blobs, one unpacked directory per layer shared by every image and
//! container, and one record per image name. docs/design/store.md gives the layout, locking and GC rules.
//!
//! ```text
//! STORE/lock                     flock: shared while a process ingests or reads; exclusive for rmi/prune
//! STORE/blobs/sha256/HEX         manifests and configs, verified
//! STORE/layers/HEX/root/         an unpacked layer (HEX = its compressed digest), complete once renamed here
//! STORE/layers/HEX/info.json     its diff_id, media type and size
//! STORE/layers/.tmp-HEX-PID/     an extraction in progress (or interrupted: removed by the next attempt)
//! STORE/images/KEY.json          one image name: reference, manifest and config digests, layers
//! STORE/locks/ingest-HEX         flock: held exclusively while a layer is extracted
//! STORE/locks/use-HEX            flock: shared by every run of the image or layer HEX, for its lifetime
//! ```

use super::digest::{Digest, HashingReader};
use super::helper::{Helper, HelperError};
use super::media::{self, Compression};
use super::reference::Reference;
use rustix::fs::FlockOperation;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot locate the image store: neither --store, BURROW_STORE, XDG_DATA_HOME nor HOME is set")]
    NoLocation,
    #[error("image store {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{what} {expected}: the content's digest is {actual}; nothing was stored (a corrupt or tampered download)"
    )]
    DigestMismatch { what: &'static str, expected: Digest, actual: Digest },
    #[error(
        "layer {digest}: unsupported media type {media_type:?} (burrow unpacks tar, tar+gzip and tar+zstd layers)"
    )]
    MediaType { digest: Digest, media_type: String },
    #[error("layer {digest}: {source}; nothing was stored")]
    Layer { digest: Digest, source: HelperError },
    #[error("layer {digest}: reading it: {source}; nothing was stored")]
    Read { digest: Digest, source: io::Error },
    #[error("image {reference}: its layer {digest} is not in the store")]
    MissingLayer { reference: String, digest: Digest },
    #[error("image {reference}: {reason}")]
    Manifest { reference: String, reason: String },
    #[error("image {0} is not in the store (see `burrow images`; `burrow pull` or `burrow import` it)")]
    NotFound(String),
    #[error("image {reference} is in use by a running container; stop it first")]
    InUse { reference: String },
    #[error("removing from the image store: {0}")]
    Remove(HelperError),
    #[error(transparent)]
    Helper(#[from] HelperError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// One stored image name.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub reference: String,
    pub manifest: Digest,
    pub config: Digest,
    /// Compressed digests, lowest layer first.
    pub layers: Vec<Digest>,
    /// Unix time it was stored.
    pub stored: u64,
}

/// What is known of one unpacked layer.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LayerInfo {
    pub digest: Digest,
    pub diff_id: Digest,
    pub media_type: String,
    /// Uncompressed (tar) size.
    pub size: u64,
}

/// An image ready to run.
#[derive(Clone, Debug)]
pub struct Image {
    pub reference: Reference,
    pub record: Record,
    /// The unpacked layers' root directories, lowest first.
    pub layers: Vec<PathBuf>,
    pub config: oci_spec::image::ImageConfiguration,
}

impl Image {
    /// The image ID: its config's digest (as docker and podman show it).
    pub fn id(&self) -> &Digest {
        &self.record.config
    }
}

pub type Warn = Arc<dyn Fn(&str) + Send + Sync>;

/// An open store. It holds a shared lock on `STORE/lock` until dropped or [`Store::release`]d, so that `rmi`
/// and `prune` never remove a layer between its ingest and the record that references it.
pub struct Store {
    root: PathBuf,
    helper: Helper,
    lock: Option<File>,
    warn: Warn,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.root.display())
    }
}

/// Network filesystems burrow recognises by their statfs magic.
pub fn network_fs(magic: i64) -> Option<&'static str> {
    match magic {
        0x6969 => Some("NFS"),
        0x0bd0_0bd0 => Some("Lustre"),
        0x4750_4653 => Some("GPFS"),
        0xff53_4d42 | 0xfe53_4d42 => Some("SMB/CIFS"),
        0x1983_0326 => Some("BeeGFS"),
        0x0042_4553 | 0x6573_5546 => Some("FUSE network"),
        _ => None,
    }
}

impl Store {
    /// The store's directory: `--store`, else `$BURROW_STORE`, `$XDG_DATA_HOME/burrow`, `~/.local/share/burrow`.
    pub fn default_path(path: Option<PathBuf>) -> Result<PathBuf, StoreError> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        path.or_else(|| env("BURROW_STORE"))
            .or_else(|| env("XDG_DATA_HOME").map(|d| d.join("burrow")))
            .or_else(|| env("HOME").map(|h| h.join(".local/share/burrow")))
            .ok_or(StoreError::NoLocation)
    }

    /// Opens (creating it if needed) the store; layers are extracted in a user namespace by burrow's helper.
    pub fn open(path: Option<PathBuf>) -> Result<Store, StoreError> {
        let warn: Warn = Arc::new(|w: &str| eprintln!("burrow: warning: {w}"));
        let mut warnings = Vec::new();
        let helper = Helper::for_caller(&mut |w| warnings.push(w))?;
        warnings.iter().for_each(|w| warn(w));
        Store::open_with(path, helper, warn)
    }

    pub fn open_with(path: Option<PathBuf>, helper: Helper, warn: Warn) -> Result<Store, StoreError> {
        let root = Store::default_path(path)?;
        for d in ["blobs/sha256", "layers", "images", "locks"] {
            std::fs::create_dir_all(root.join(d)).map_err(io_err(&root))?;
        }
        let root = root.canonicalize().map_err(io_err(&root))?;
        let lock = open_lock(&root.join("lock"))?;
        flock(&lock, FlockOperation::LockShared, &root.join("lock"))?;
        let store = Store { root, helper, lock: Some(lock), warn };
        store.notice_network_fs();
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn helper(&self) -> &Helper {
        &self.helper
    }

    /// Replaces the warning printer (the default writes `burrow: warning: ...` to stderr).
    pub fn set_warn(&mut self, warn: Warn) {
        self.warn = warn;
    }

    /// Says once per store that it is on a network filesystem, and what that means.
    fn notice_network_fs(&self) {
        let Ok(st) = rustix::fs::statfs(&self.root) else { return };
        #[allow(clippy::unnecessary_cast)]
        let Some(kind) = network_fs(st.f_type as i64) else {
            return;
        };
        let marker = self.root.join(".network-fs-noticed");
        if marker.exists() {
            return;
        }
        let _ = std::fs::write(&marker, kind);
        (self.warn)(&format!(
            "the image store {} is on {kind}: layers work from there, but locking needs a lock daemon and \
             reads are slower; copy-on-write layers stay in the runtime directory. A --store (or BURROW_STORE) \
             on a local disk is faster (docs/design/store.md)",
            self.root.display()
        ));
    }

    /// Gives up the shared store lock (a run does, once its layers are pinned: see [`Store::pin`]).
    pub fn release(&mut self) {
        self.lock = None;
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    fn layer_dir(&self, d: &Digest) -> PathBuf {
        self.root.join("layers").join(d.hex())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    pub fn blob(&self, d: &Digest) -> Option<Vec<u8>> {
        std::fs::read(self.blob_path(d)).ok()
    }

    /// Stores a small blob (manifest, config, index) after checking its digest.
    pub fn put_blob(&self, d: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let actual = Digest::of(bytes);
        if &actual != d {
            return Err(StoreError::DigestMismatch { what: "blob", expected: d.clone(), actual });
        }
        if self.has_blob(d) {
            return Ok(());
        }
        write_atomic(&self.blob_path(d), bytes)
    }

    /// The root directory of an unpacked, complete layer.
    pub fn layer(&self, d: &Digest) -> Option<PathBuf> {
        let dir = self.layer_dir(d);
        dir.join("info.json").is_file().then(|| dir.join("root"))
    }

    pub fn layer_info(&self, d: &Digest) -> Option<LayerInfo> {
        self.layer_info_hex(&d.hex())
    }

    pub(crate) fn layer_info_hex(&self, hex: &str) -> Option<LayerInfo> {
        serde_json::from_slice(&std::fs::read(self.root.join("layers").join(hex).join("info.json")).ok()?).ok()
    }

    /// Streams one layer in: hashes the compressed bytes while reading, decompresses by media type, extracts
    /// into a temporary directory and renames it into place once complete and verified. Idempotent; a
    /// concurrent ingest of the same layer waits for this one and then finds it done.
    pub fn ingest_layer(&self, digest: &Digest, media_type: &str, body: impl Read) -> Result<PathBuf, StoreError> {
        if let Some(p) = self.layer(digest) {
            return Ok(p);
        }
        let compression = media::compression(media_type)
            .ok_or_else(|| StoreError::MediaType { digest: digest.clone(), media_type: media_type.into() })?;
        self.ingest(digest, media_type, Some(compression), body)
    }

    /// Like [`Store::ingest_layer`], guessing the compression from the first bytes (docker-archive layers).
    pub fn ingest_layer_sniffed(&self, digest: &Digest, body: impl Read) -> Result<PathBuf, StoreError> {
        if let Some(p) = self.layer(digest) {
            return Ok(p);
        }
        self.ingest(digest, "", None, body)
    }

    fn ingest(
        &self,
        digest: &Digest,
        media_type: &str,
        compression: Option<Compression>,
        body: impl Read,
    ) -> Result<PathBuf, StoreError> {
        let lock_path = self.root.join("locks").join(format!("ingest-{}", digest.hex()));
        let lock = open_lock(&lock_path)?;
        flock(&lock, FlockOperation::LockExclusive, &lock_path)?;
        if let Some(p) = self.layer(digest) {
            return Ok(p);
        }
        // Holding the ingest lock, any temporary directory of this layer is an interrupted attempt.
        let stale = self.temp_dirs(&format!(".tmp-{}-", digest.hex()));
        self.helper.remove(&stale.iter().map(|p| p.as_path()).collect::<Vec<_>>()).map_err(StoreError::Remove)?;
        let tmp = self.root.join("layers").join(format!(".tmp-{}-{}", digest.hex(), std::process::id()));
        std::fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        std::fs::create_dir(tmp.join("root")).map_err(io_err(&tmp))?;
        let result = self.unpack(digest, compression, body, &tmp.join("root"));
        let (diff_id, size) = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = self.helper.remove(&[&tmp]);
                return Err(e);
            }
        };
        let media_type = match (media_type, compression) {
            ("", Some(Compression::Gzip)) => media::DOCKER_LAYER_GZIP.into(),
            ("", _) => media::DOCKER_LAYER.into(),
            (m, _) => m.to_string(),
        };
        let info = LayerInfo { digest: digest.clone(), diff_id, media_type, size };
        let done = write_atomic(&tmp.join("info.json"), &serde_json::to_vec(&info).unwrap_or_default())
            .and_then(|()| std::fs::rename(&tmp, self.layer_dir(digest)).map_err(io_err(&tmp)));
        if let Err(e) = done {
            let _ = self.helper.remove(&[&tmp]);
            return Err(e);
        }
        Ok(self.layer_dir(digest).join("root"))
    }

    /// Decompresses and extracts; returns the diff_id (digest of the uncompressed tar) and its size. Fails
    /// when the compressed bytes do not have `digest`.
    fn unpack(
        &self,
        digest: &Digest,
        compression: Option<Compression>,
        body: impl Read,
        root: &Path,
    ) -> Result<(Digest, u64), StoreError> {
        let read_err = |source| StoreError::Read { digest: digest.clone(), source };
        let mut compressed = HashingReader::new(io::BufReader::with_capacity(256 * 1024, body));
        let extracted = {
            let compression = match compression {
                Some(c) => c,
                None => {
                    let mut head = [0u8; 4];
                    let n = peek(&mut compressed, &mut head).map_err(read_err)?;
                    media::sniff(&head[..n])
                }
            };
            let decoder: Box<dyn Read + '_> = match compression {
                Compression::None => Box::new(&mut compressed),
                Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut compressed)),
                Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(&mut compressed).map_err(read_err)?),
            };
            let mut tar = HashingReader::new(decoder);
            let report = self.helper.extract(root, &mut tar);
            report.map(|r| (r, tar.finish()))
        };
        let report = match extracted {
            Ok((r, tar)) => {
                let tar = tar.map_err(read_err)?;
                Some((r, tar))
            }
            // A digest mismatch explains a broken stream better than the extraction error does.
            Err(e) => {
                if let Ok((actual, _)) = compressed.finish() {
                    if &actual != digest {
                        return Err(StoreError::DigestMismatch { what: "layer", expected: digest.clone(), actual });
                    }
                }
                return Err(StoreError::Layer { digest: digest.clone(), source: e });
            }
        };
        let (actual, _) = compressed.finish().map_err(read_err)?;
        if &actual != digest {
            return Err(StoreError::DigestMismatch { what: "layer", expected: digest.clone(), actual });
        }
        let (report, (diff_id, size)) = report.expect("set above");
        for w in &report.warnings {
            (self.warn)(&format!("layer {}: {w}", digest.short()));
        }
        Ok((diff_id, size))
    }

    fn temp_dirs(&self, prefix: &str) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.root.join("layers")) else { return vec![] };
        entries.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(prefix)).map(|e| e.path()).collect()
    }

    /// Records `reference` as the image of this manifest and config (every layer must be in the store).
    pub fn put_image(
        &self,
        reference: &Reference,
        manifest_digest: &Digest,
        manifest: &[u8],
        config: &[u8],
    ) -> Result<(), StoreError> {
        let bad = |reason: String| StoreError::Manifest { reference: reference.to_string(), reason };
        let actual = Digest::of(manifest);
        if &actual != manifest_digest {
            return Err(StoreError::DigestMismatch { what: "manifest", expected: manifest_digest.clone(), actual });
        }
        let parsed: oci_spec::image::ImageManifest =
            serde_json::from_slice(manifest).map_err(|e| bad(format!("malformed manifest: {e}")))?;
        let config_digest =
            Digest::parse(parsed.config().digest().as_ref()).map_err(|e| bad(format!("config: {e}")))?;
        let actual = Digest::of(config);
        if actual != config_digest {
            return Err(StoreError::DigestMismatch { what: "config", expected: config_digest, actual });
        }
        let image_config: oci_spec::image::ImageConfiguration =
            serde_json::from_slice(config).map_err(|e| bad(format!("malformed config: {e}")))?;
        let mut layers = Vec::new();
        for l in parsed.layers() {
            let d = Digest::parse(l.digest().as_ref()).map_err(|e| bad(format!("layer: {e}")))?;
            if self.layer(&d).is_none() {
                return Err(StoreError::MissingLayer { reference: reference.to_string(), digest: d });
            }
            layers.push(d);
        }
        let diff_ids = image_config.rootfs().diff_ids();
        if diff_ids.len() != layers.len() {
            return Err(bad(format!("the config lists {} layers, the manifest {}", diff_ids.len(), layers.len())));
        }
        for (d, want) in layers.iter().zip(diff_ids) {
            let have = self.layer_info(d).map(|i| i.diff_id.to_string()).unwrap_or_default();
            if &have != want {
                return Err(bad(format!("layer {d} unpacks to {have}, but the config says {want}")));
            }
        }
        self.put_blob(manifest_digest, manifest)?;
        self.put_blob(&config_digest, config)?;
        let record = Record {
            reference: reference.to_string(),
            manifest: manifest_digest.clone(),
            config: config_digest,
            layers,
            stored: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        let path = self.record_file(&reference.to_string());
        write_atomic(&path, &serde_json::to_vec_pretty(&record).unwrap_or_default())
    }

    pub(crate) fn record_file(&self, reference: &str) -> PathBuf {
        self.root.join("images").join(format!("{}.json", Digest::of(reference.as_bytes()).hex()))
    }

    /// Every image record.
    pub fn records(&self) -> Vec<Record> {
        let Ok(entries) = std::fs::read_dir(self.root.join("images")) else { return vec![] };
        let mut v: Vec<Record> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .collect();
        v.sort_by(|a, b| a.reference.cmp(&b.reference));
        v
    }

    /// The record a reference names: by name and tag, or by digest (`name@sha256:...`).
    pub fn find(&self, reference: &Reference) -> Option<Record> {
        if reference.tag.is_some() {
            let mut plain = reference.clone();
            plain.digest = None;
            let r: Record = serde_json::from_slice(&std::fs::read(self.record_file(&plain.to_string())).ok()?).ok()?;
            return match &reference.digest {
                Some(d) if d != &r.manifest => None,
                _ => Some(r),
            };
        }
        let d = reference.digest.as_ref()?;
        let name = reference.name();
        let all = self.records();
        all.iter()
            .find(|r| &r.manifest == d && r.reference.starts_with(&name))
            .or_else(|| all.iter().find(|r| &r.manifest == d))
            .cloned()
    }

    /// The image a reference names, with its layers and parsed config.
    pub fn resolve(&self, reference: &Reference) -> Option<Image> {
        let record = self.find(reference)?;
        self.image(record).ok()
    }

    pub fn image(&self, record: Record) -> Result<Image, StoreError> {
        let reference = Reference::parse(&record.reference)
            .map_err(|e| StoreError::Manifest { reference: record.reference.clone(), reason: e.to_string() })?;
        let config_bytes = self.blob(&record.config).ok_or_else(|| StoreError::NotFound(record.reference.clone()))?;
        let config = serde_json::from_slice(&config_bytes).map_err(|e| StoreError::Manifest {
            reference: record.reference.clone(),
            reason: format!("config: {e}"),
        })?;
        let mut layers = Vec::new();
        for d in &record.layers {
            let p = self
                .layer(d)
                .ok_or_else(|| StoreError::MissingLayer { reference: record.reference.clone(), digest: d.clone() })?;
            layers.push(p);
        }
        Ok(Image { reference, record, layers, config })
    }

    pub(crate) fn lock_path(&self, name: &str) -> PathBuf {
        self.root.join("locks").join(name)
    }

    pub(crate) fn exclusive(&mut self) -> Result<(), StoreError> {
        let path = self.root.join("lock");
        let lock = match self.lock.take() {
            Some(l) => l,
            None => open_lock(&path)?,
        };
        if rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            (self.warn)("waiting for other burrow processes that are adding images to the store");
            flock(&lock, FlockOperation::LockExclusive, &path)?;
        }
        self.lock = Some(lock);
        Ok(())
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }
}

pub(crate) fn open_lock(path: &Path) -> Result<File, StoreError> {
    std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path).map_err(io_err(path))
}

pub(crate) fn flock(f: &File, op: FlockOperation, path: &Path) -> Result<(), StoreError> {
    loop {
        match rustix::fs::flock(f, op) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            // A filesystem without locks (NFS without lockd): go on unlocked, as the state directory does.
            Err(rustix::io::Errno::NOLCK) | Err(rustix::io::Errno::NOSYS) => return Ok(()),
            Err(e) => return Err(StoreError::Io { path: path.to_path_buf(), source: e.into() }),
        }
    }
}

/// Reads up to `buf.len()` bytes without losing them: they are hashed and handed on through `r` afterwards.
fn peek<R: Read>(r: &mut HashingReader<io::BufReader<R>>, buf: &mut [u8]) -> io::Result<usize> {
    use io::BufRead;
    let inner = r.inner_mut();
    let avail = inner.fill_buf()?;
    let n = avail.len().min(buf.len());
    buf[..n].copy_from_slice(&avail[..n]);
    Ok(n)
}

/// Writes a file through a temporary name and a rename, so that readers see it whole or not at all.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        StoreError::Io { path: path.to_path_buf(), source: e }
    })
}

/// A pull ingests layers from several threads through one `&Store`.
#[allow(dead_code)]
fn store_is_shared_across_threads() {
    fn check<T: Send + Sync>() {}
    check::<Store>();
}
