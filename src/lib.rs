//! burrow: a rootless container runner.

pub mod net;
pub mod sys;
