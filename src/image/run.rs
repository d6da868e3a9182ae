//! The image side of `burrow run IMAGE`: find the image (pulling it when the policy says so), pin its layers
//! for the life of the run, and hand its layers and config to the spec.

use super::config::{ConfigError, Defaults};
use super::gc::Pin;
use super::reference::{RefError, Reference};
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
    #[error("image {reference} is not in the store and pulling is not available in this build: burrow import it, or use --pull=never with a stored image")]
    PullUnavailable { reference: String },
}

/// An image ready to be the root of a run: its defaults (layers, config) and the pin that keeps its layers.
#[derive(Debug)]
pub struct ImageRoot {
    pub reference: Reference,
    pub defaults: Defaults,
    pub pin: Pin,
}

/// Resolves `reference` in the store under `pull` and pins it. The store's own lock is released afterwards:
/// the pin alone keeps the layers while the container runs.
pub fn root_for(store: &mut Store, reference: &Reference, pull: PullPolicy) -> Result<ImageRoot, ImageRunError> {
    let found = store.resolve(reference);
    let image = match (found, pull) {
        (Some(image), PullPolicy::Missing | PullPolicy::Never) => image,
        (None, PullPolicy::Never) => return Err(ImageRunError::NotPresentNeverPull(reference.to_string())),
        (Some(image), PullPolicy::Always | PullPolicy::Newer) => {
            // The registry client replaces this with a pull (issue 10, img-registry); until then the stored
            // image is what there is, which `always` cannot promise.
            let _ = image;
            return Err(ImageRunError::PullUnavailable { reference: reference.to_string() });
        }
        (None, _) => return Err(ImageRunError::PullUnavailable { reference: reference.to_string() }),
    };
    let pin = store.pin(&image)?;
    store.release();
    let defaults = Defaults::of(&image)?;
    Ok(ImageRoot { reference: image.reference.clone(), defaults, pin })
}
