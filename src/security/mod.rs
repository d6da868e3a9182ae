//! The payload's hardening: what a process gives up right before it becomes the payload (capabilities,
//! no_new_privs, inherited descriptors, the session and keyring, Landlock, the seccomp filter).
//!
//! One [`Profile`] describes it and one function applies it, [`crate::launch::exec::payload`]'s last steps,
//! shared by `burrow run` and `burrow exec`: one place to audit. docs/security.md explains each default.

use serde::{Deserialize, Serialize};

/// What the payload keeps. Serializable: a running container's profile is stored with its state so that
/// `burrow exec` applies exactly the same one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {}
