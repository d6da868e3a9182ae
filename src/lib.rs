//! burrow: a rootless container runner.
//!
//! The launch pipeline, one module per stage: [`cli`] (syntax) → [`spec`] (validated run description) →
//! [`idmap`] (user namespace maps; [`userns`]: the keeper that saves mapping them) → [`launch`] (processes and their handshake) → [`rootfs`] (mount plan and
//! pivot). [`sys`] holds the only `unsafe` code.

pub mod cgroup;
pub mod cli;
pub mod doctor;
pub mod idmap;
pub mod image;
pub mod launch;
pub mod lifecycle;
pub mod net;
pub mod overlay;
pub mod rootfs;
pub mod run;
pub mod security;
pub mod spec;
pub mod state;
pub mod sys;
pub mod terminal;
pub mod userns;
