//! The registry client (OCI distribution API, the protocol of Docker Hub, quay.io, ghcr.io, Harbor and the
//! CNCF distribution registry): anonymous, token and basic authentication, manifests and indexes, blobs.
//!
//! [`client::Client`] does the HTTP (ureq with rustls: retries with backoff, redirects that drop the
//! credentials when they leave the registry's host, `--tls-verify=false` for plain-HTTP and self-signed
//! registries); [`challenge`] and [`authfile`] the authentication; [`manifest`] and [`platform`] what is
//! fetched; [`login`] the `login`/`logout` commands. The pull itself is `image::pull`.

pub mod authfile;
pub mod challenge;
pub mod client;
pub mod commands;
pub mod login;
pub mod manifest;
pub mod platform;
pub mod progress;
pub mod trust;

pub use authfile::Credentials;
pub use client::{Client, ClientOptions};
pub use platform::Platform;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach registry {registry} ({url}): {detail}{hint}")]
    Unreachable { registry: String, url: String, detail: String, hint: &'static str },
    #[error("{method} {url}: {status}{detail}")]
    Status { method: &'static str, url: String, status: u16, detail: String },
    #[error(
        "{registry}: access to {repository} denied{detail} (log in with `burrow login {registry}`, or check the \
         image name)"
    )]
    Unauthorized { registry: String, repository: String, detail: String },
    #[error("{registry}: login failed for user {user:?}{detail}")]
    LoginFailed { registry: String, user: String, detail: String },
    #[error("{reference}: manifest unknown (no such image or tag in {registry})")]
    ManifestUnknown { reference: String, registry: String },
    #[error("{what} from {url}: the content's digest is {actual}, not {expected} (corrupted or tampered with)")]
    DigestMismatch { what: String, url: String, expected: String, actual: String },
    #[error("{what} from {url} is larger than {limit} bytes")]
    TooLarge { what: String, url: String, limit: u64 },
    #[error("reading {what} from {url}: {source}")]
    Body { what: String, url: String, source: std::io::Error },
    #[error("{url}: redirect without a usable Location header")]
    BadRedirect { url: String },
    #[error("{url}: more than {0} redirects", client::MAX_REDIRECTS)]
    TooManyRedirects { url: String },
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error(transparent)]
    AuthFile(#[from] authfile::AuthFileError),
}

impl RegistryError {
    /// Whether trying again later may succeed (the registry was unreachable or overloaded).
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } | RegistryError::Body { .. } => true,
            RegistryError::Status { status, .. } => client::retryable_status(*status),
            _ => false,
        }
    }
}
