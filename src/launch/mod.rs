//! The launch pipeline: P0 (the user's process, [`parent`]), P1 (the namespace holder, [`child`]), the
//! container's init ([`init`]) and the payload ([`exec`]). docs/design/launch-sequence.md draws the sequence.

pub mod attach;
pub mod channel;
pub mod child;
pub mod control;
pub mod exec;
pub mod init;
pub mod layers;
pub mod msg;
pub mod parent;
pub mod signals;
pub mod stdio;

use std::io;

/// A failed setup step inside a child process: reported to P0 as `Msg::Failed`.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}{hint}")]
pub struct StepError {
    pub stage: &'static str,
    pub what: String,
    #[source]
    pub source: io::Error,
    /// What the user can do, when there is something specific.
    pub hint: String,
}

/// Attaches a stage and a description to a failed call.
pub trait Step<T> {
    fn step(self, stage: &'static str, what: impl Into<String>) -> Result<T, StepError>;
}

impl<T> Step<T> for Result<T, nix::Error> {
    fn step(self, stage: &'static str, what: impl Into<String>) -> Result<T, StepError> {
        self.map_err(|e| StepError { stage, what: what.into(), source: e.into(), hint: String::new() })
    }
}

impl<T> Step<T> for Result<T, io::Error> {
    fn step(self, stage: &'static str, what: impl Into<String>) -> Result<T, StepError> {
        self.map_err(|source| StepError { stage, what: what.into(), source, hint: String::new() })
    }
}

/// Sends a child's failure to P0 (a child never prints) and returns the exit status to use.
pub fn report(chan: &channel::Channel, stage: &str, message: String, errno: i32) -> i32 {
    let _ = chan.send(&msg::Msg::Failed { stage: stage.into(), errno, message });
    125
}

/// Exits a forked child without running the parent's copies of exit handlers or flushing its buffers twice.
pub fn child_exit(code: i32) -> ! {
    crate::sys::exit_now(code)
}
