//! burrow: a rootless container runner.
pub mod overlay;
