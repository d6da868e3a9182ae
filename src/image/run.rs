//! The image side of `burrow run IMAGE`: find the image (pulling it when the policy says so), pin its layers
//! for the life of the run, and hand its layers and config to the spec.

use super::config::{ConfigError, Defaults};
use super::gc::Pin;
use super::pull::{self, PullError, PullOptions};
use super::reference::{RefError, Reference};
use super::registry::Platform;
use super::search::{Search, SearchError};
use super::store::{Store, StoreError};

/// podman's `--pull` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull only when the image is not in the store.
    #[default]
    Missing,
    /// Pull every time (a registry that has nothing newer costs one manifest request).
    Always,
    /// Never pull: the image must be in the store.
    Never,
    /// Pull when the registry's manifest differs from the stored one.
    Newer,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageRunError {
    #[error(transparent)]
    Reference(#[from] RefError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "image {0} is not in the store and --pull=never forbids pulling it (burrow import or burrow pull it first)"
    )]
    NotPresentNeverPull(String),
    #[error(transparent)]
    Pull(#[from] PullError),
    #[error(transparent)]
    Search(#[from] SearchError),
}

/// An image ready to be the root of a run: its defaults (layers, config) and the pin that keeps its layers.
#[derive(Debug)]
pub struct ImageRoot {
    pub reference: Reference,
    pub defaults: Defaults,
    pub pin: Pin,
}

/// Resolves `name` in the store under `pull` (podman's semantics: `missing` pulls what the store lacks,
/// `always` asks the registry every time — one HEAD when nothing changed —, `newer` too but keeps the stored
/// image when the registry cannot be asked, `never` only looks in the store) and pins it. `candidates` are the
/// references `name` may mean (a short name in each search registry, in order): the first one in the store is
/// the image; when none is, the first registry that has one is pulled from. The store's own lock is released
/// afterwards: the pin alone keeps the layers while the container runs.
pub fn root_for(
    store: &mut Store,
    name: &str,
    search: &Search,
    candidates: &[Reference],
    pull: PullPolicy,
    opts: &PullOptions,
) -> Result<ImageRoot, ImageRunError> {
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let found = candidates.iter().find_map(|r| pull::find_local(store, r, &platform).map(|i| (r, i)));
    let image = match (found, pull) {
        (Some((_, image)), PullPolicy::Missing | PullPolicy::Never) => image,
        (None, PullPolicy::Never) => {
            let names: Vec<String> = candidates.iter().map(Reference::to_string).collect();
            return Err(ImageRunError::NotPresentNeverPull(names.join(" or ")));
        }
        (Some((reference, image)), PullPolicy::Newer) => match pull::pull(store, reference, opts) {
            Ok(p) => p.image,
            Err(e) => {
                eprintln!("burrow: warning: {e}; running the stored image");
                image
            }
        },
        (Some((reference, _)), PullPolicy::Always) => pull::pull(store, reference, opts)?.image,
        (None, _) => pull::pull_first(store, name, search, candidates, opts)?.image,
    };
    let pin = store.pin(&image)?;
    store.release();
    let defaults = Defaults::of(&image)?;
    Ok(ImageRoot { reference: image.reference.clone(), defaults, pin })
}
