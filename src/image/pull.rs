//! `burrow pull`: registry → store. One manifest request when the image is already there (HEAD: the digest
//! the tag points to is compared with the stored one); otherwise the manifest (the index, then this
//! platform's manifest), the config, and the missing layers, a few at a time, each streamed from the HTTP
//! body through `Store::ingest_layer` (hashed, decompressed and unpacked as it arrives, nothing spooled),
//! then the image record. A layer whose transfer breaks is fetched again (`--retry`); the store keeps nothing
//! of a layer that did not complete and verify, and records the image only when every layer is in.

use super::digest::Digest;
use super::reference::Reference;
use super::registry::authfile::{AuthFiles, Env};
use super::registry::client::{Client, ClientOptions};
use super::registry::manifest::{self, Document};
use super::registry::progress::{Bar, Progress};
use super::registry::{Credentials, Platform, RegistryError};
use super::store::{Image, Record, Store, StoreError};
use oci_spec::image::ImageManifest;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Layers fetched at once (podman's default is 6 per image; 3 keeps a 2-core login node responsive and
/// still overlaps one layer's download with another's unpacking).
pub const PARALLEL_LAYERS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error("{reference}: downloading layer {digest} from {url}: {source}; nothing of it was stored")]
    Transfer { reference: String, digest: Digest, url: String, source: io::Error },
    #[error("{reference}: {reason}")]
    Image { reference: String, reason: String },
    #[error("{name}: not pulled from any search registry of {file}: {tried} (give a fully qualified name to pick a registry)")]
    NoSearchRegistryHasIt { name: String, file: String, tried: String },
    #[error(transparent)]
    Search(#[from] super::search::SearchError),
}

/// What `pull` needs besides the reference.
#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    pub client: ClientOptions,
    /// Default: this machine's platform.
    pub platform: Option<Platform>,
    /// `--authfile`; else podman's search order (see `registry::authfile`).
    pub authfile: Option<PathBuf>,
    /// `--creds USER:PASSWORD`, overriding the auth files.
    pub creds: Option<Credentials>,
    /// No progress bars even on a terminal.
    pub quiet: bool,
}

/// The pulled (or already present) image.
pub struct Pulled {
    pub image: Image,
    /// Whether anything was downloaded (false: the store had it, the registry had nothing newer).
    pub downloaded: bool,
    pub layers_fetched: usize,
    pub bytes_fetched: u64,
}

/// Pulls `reference` into `store` (see the module comment for what is requested when).
pub fn pull(store: &Store, reference: &Reference, opts: &PullOptions) -> Result<Pulled, PullError> {
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    // A digest names immutable content: if the store has it, there is nothing to ask.
    if reference.digest.is_some() {
        if let Some(image) = find_local(store, reference, &platform) {
            return Ok(Pulled { image, downloaded: false, layers_fetched: 0, bytes_fetched: 0 });
        }
    }
    let creds = match &opts.creds {
        Some(c) => Some(c.clone()),
        None => AuthFiles::locate(&Env::current(opts.authfile.clone()))
            .ok()
            .and_then(|f| f.lookup(&reference.registry, &reference.repository).ok().flatten())
            .map(|(c, _)| c),
    };
    let client = Client::new(&reference.registry, &reference.repository, creds, opts.client.clone());
    let target = reference.tag_or_digest();
    if reference.digest.is_none() {
        if let Some(image) = find_local(store, reference, &platform) {
            // The warm path: one HEAD. A registry that does not send the digest falls through to a GET.
            if let Some(remote) = client.head_manifest(&target)? {
                if stored_matches(store, &image.record, &remote, &platform) {
                    return Ok(Pulled { image, downloaded: false, layers_fetched: 0, bytes_fetched: 0 });
                }
            }
        }
    }
    let what = reference.to_string();
    let top = client.manifest(&target, &what)?;
    let (manifest_digest, manifest_bytes, image_manifest) =
        match manifest::parse(&what, top.content_type.as_deref(), &top.bytes)? {
            Document::Image(m) => (top.digest, top.bytes, *m),
            Document::Index(index) => {
                store.put_blob(&top.digest, &top.bytes)?;
                let chosen = manifest::choose(&what, &index, &platform)?;
                let child = manifest::digest_of(&what, "manifest", chosen)?;
                let fetched = client.manifest(&child.to_string(), &format!("{what} ({platform})"))?;
                match manifest::parse(&what, fetched.content_type.as_deref(), &fetched.bytes)? {
                    Document::Image(m) => (fetched.digest, fetched.bytes, *m),
                    Document::Index(_) => {
                        return Err(PullError::Image { reference: what, reason: "an index inside an index".into() })
                    }
                }
            }
        };
    manifest::check_layers(&what, &image_manifest)?;
    let config_digest = manifest::digest_of(&what, "config", image_manifest.config())?;
    let config = match store.blob(&config_digest) {
        Some(bytes) => bytes,
        None => client.blob_bytes(&config_digest, &format!("{what}: config"))?,
    };
    let (layers_fetched, bytes_fetched) = fetch_layers(store, &client, &what, &image_manifest, opts.quiet)?;
    store.put_image(&record_name(reference), &manifest_digest, &manifest_bytes, &config)?;
    let image = find_local(store, reference, &platform).ok_or_else(|| PullError::Image {
        reference: what.clone(),
        reason: "the image record just written cannot be read back".into(),
    })?;
    Ok(Pulled { image, downloaded: true, layers_fetched, bytes_fetched })
}

/// Pulls the first of `candidates` (a short name in each search registry, in order; or one reference) that a
/// registry has, as podman does without a terminal. A failure of the local store ends the search at once; the
/// other failures are reported together when no registry had the image. `name` is what the user typed.
pub fn pull_first(
    store: &Store,
    name: &str,
    search: &super::search::Search,
    candidates: &[Reference],
    opts: &PullOptions,
) -> Result<Pulled, PullError> {
    if let [only] = candidates {
        return pull(store, only, opts);
    }
    let mut tried = Vec::new();
    for reference in candidates {
        match pull(store, reference, opts) {
            Ok(p) => return Ok(p),
            Err(e @ PullError::Store(_)) => return Err(e),
            Err(e) => tried.push(e.to_string()),
        }
    }
    let file = search.file.as_ref().map(|f| f.display().to_string()).unwrap_or_else(|| "registries.conf".into());
    Err(PullError::NoSearchRegistryHasIt { name: name.into(), file, tried: tried.join("; ") })
}

/// The name an image is recorded under: with a tag, the tag (a digest given too only pins what is fetched,
/// as docker does); else the digest.
fn record_name(reference: &Reference) -> Reference {
    let mut r = reference.clone();
    if r.tag.is_some() {
        r.digest = None;
    }
    r
}

/// The stored image for `reference`: by tag; or by digest, which may name the image's manifest or an index
/// stored by an earlier pull whose entry for `platform` is an image's manifest.
pub fn find_local(store: &Store, reference: &Reference, platform: &Platform) -> Option<Image> {
    if reference.tag.is_some() {
        let mut by_tag = reference.clone();
        by_tag.digest = None;
        let record = store.find(&by_tag)?;
        if let Some(d) = &reference.digest {
            if !stored_matches(store, &record, d, platform) {
                return None;
            }
        }
        return store.image(record).ok();
    }
    let digest = reference.digest.as_ref()?;
    let manifest = match child_of_index(store, digest, platform) {
        Some(child) => child,
        None => digest.clone(),
    };
    let mut by_digest = reference.clone();
    by_digest.digest = Some(manifest);
    store.image(store.find(&by_digest)?).ok()
}

/// Whether the registry's digest for a tag is what the store has: the image's manifest itself, or an index
/// (kept by the pull that fetched it) whose choice for this platform is that manifest.
fn stored_matches(store: &Store, record: &Record, remote: &Digest, platform: &Platform) -> bool {
    *remote == record.manifest || child_of_index(store, remote, platform).is_some_and(|c| c == record.manifest)
}

fn child_of_index(store: &Store, digest: &Digest, platform: &Platform) -> Option<Digest> {
    let bytes = store.blob(digest)?;
    match manifest::parse("stored index", None, &bytes).ok()? {
        Document::Index(index) => manifest::digest_of("", "", manifest::choose("", &index, platform).ok()?).ok(),
        Document::Image(_) => None,
    }
}

/// Downloads and ingests the layers the store lacks, `PARALLEL_LAYERS` at a time. Returns how many layers
/// and compressed bytes were fetched. The first failure stops the others (their partial layers are dropped).
fn fetch_layers(
    store: &Store,
    client: &Client,
    what: &str,
    m: &ImageManifest,
    quiet: bool,
) -> Result<(usize, u64), PullError> {
    let mut todo = Vec::new();
    for l in m.layers() {
        let d = manifest::digest_of(what, "layer", l)?;
        if store.layer(&d).is_none() && !todo.iter().any(|(x, _, _)| *x == d) {
            todo.push((d, l.media_type().to_string(), l.size()));
        }
    }
    let progress = if quiet { Progress::inert() } else { Progress::new() };
    let bars: Vec<Bar> = todo.iter().map(|(d, _, size)| progress.bar(&d.short(), *size)).collect();
    let next = AtomicUsize::new(0);
    let cancel = AtomicBool::new(false);
    let first_error: Mutex<Option<PullError>> = Mutex::new(None);
    let bytes = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL_LAYERS.min(todo.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= todo.len() || cancel.load(Ordering::SeqCst) {
                    return;
                }
                let (d, media_type, size) = &todo[i];
                match fetch_one(store, client, what, d, media_type, *size, &bars[i], &cancel) {
                    Ok(()) => {
                        bytes.fetch_add(usize::try_from(*size).unwrap_or(usize::MAX), Ordering::SeqCst);
                        bars[i].done("done");
                    }
                    Err(e) => {
                        bars[i].done("failed");
                        // The first error is the cause; later ones are mostly "cancelled".
                        let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                        if slot.is_none() {
                            *slot = Some(e);
                        }
                        cancel.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok((todo.len(), bytes.into_inner() as u64))
}

/// One layer: GET, stream into the store; again from the start while the transfer (not the content) fails
/// and retries remain.
#[allow(clippy::too_many_arguments)]
fn fetch_one(
    store: &Store,
    client: &Client,
    what: &str,
    digest: &Digest,
    media_type: &str,
    size: u64,
    bar: &Bar,
    cancel: &AtomicBool,
) -> Result<(), PullError> {
    let mut attempt = 0;
    loop {
        let (body, url) = client.blob(digest, size)?;
        let mut watched = Watched { inner: bar.wrap(body), error: None, cancel };
        let result = store.ingest_layer(digest, media_type, &mut watched);
        match (result, watched.error.take()) {
            (Ok(_), _) => return Ok(()),
            // The stream broke (connection reset, stalled past the read timeout): not the content's fault.
            (Err(_), Some(source)) => {
                if cancel.load(Ordering::SeqCst) || attempt >= client.retries() {
                    return Err(PullError::Transfer { reference: what.into(), digest: digest.clone(), url, source });
                }
                std::thread::sleep(client.backoff(attempt));
                attempt += 1;
                bar.restart();
            }
            (Err(e), None) => return Err(e.into()),
        }
    }
}

/// A body reader that remembers its own (network) error, so that a failed ingest can tell a broken transfer
/// from bad content, and that stops when another layer has failed.
struct Watched<'a, R> {
    inner: R,
    error: Option<io::Error>,
    cancel: &'a AtomicBool,
}

impl<R: Read> Read for Watched<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(io::Error::other("cancelled: another layer failed"));
        }
        match self.inner.read(buf) {
            Ok(n) => Ok(n),
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.error = Some(e);
                Err(copy)
            }
        }
    }
}
