//! The launch pipeline: P0 (the user's process, [`parent`]), P1 (the namespace holder, [`child`]), the
//! container's init ([`init`]) and the payload ([`exec`]); without P1 when nothing needs it ([`direct`]).
//! docs/design/launch-sequence.md draws the sequence.

pub mod attach;
pub mod channel;
pub mod child;
pub mod control;
pub mod direct;
pub mod ends;
pub mod exec;
pub mod fork;
pub mod init;
pub mod layers;
pub mod msg;
pub mod parent;
pub mod signals;
pub mod stdio;

use std::io;

/// A failed setup step inside a child process: reported to P0 as `Msg::Failed`, printed by P0 as one line
/// `STAGE: WHAT: ERRNO TEXT HINT`.
#[derive(Debug, thiserror::Error)]
pub struct StepError {
    pub stage: &'static str,
    pub what: String,
    /// The system call's error; None when the failure is not one (no errno is made up for it).
    #[source]
    pub source: Option<io::Error>,
    /// What the user can do, when there is something specific (starts with a separator, e.g. " (...)").
    pub hint: String,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)?;
        if let Some(e) = &self.source {
            write!(f, ": {e}")?;
        }
        f.write_str(&self.hint)
    }
}

impl StepError {
    /// A failure that is not a system call's (its message says everything).
    pub fn plain(stage: &'static str, what: impl Into<String>) -> StepError {
        StepError { stage, what: what.into(), source: None, hint: String::new() }
    }

    /// A failed system call.
    pub fn sys(stage: &'static str, what: impl Into<String>, source: impl Into<io::Error>) -> StepError {
        StepError { stage, what: what.into(), source: Some(source.into()), hint: String::new() }
    }

    /// The errno carried to P0 (0 when there is none).
    pub fn errno(&self) -> i32 {
        self.source.as_ref().and_then(io::Error::raw_os_error).unwrap_or(0)
    }

    /// Sends this failure to P0 and returns the exit status to use.
    pub fn report(&self, chan: &channel::Channel) -> i32 {
        report(chan, self.stage, self.to_string(), self.errno())
    }
}

/// Attaches a stage and a description to a failed call.
pub trait Step<T> {
    fn step(self, stage: &'static str, what: impl Into<String>) -> Result<T, StepError>;
}

impl<T> Step<T> for Result<T, nix::Error> {
    fn step(self, stage: &'static str, what: impl Into<String>) -> Result<T, StepError> {
        self.map_err(|e| StepError { stage, what: what.into(), source: Some(e.into()), hint: String::new() })
    }
}

impl<T> Step<T> for Result<T, io::Error> {
    fn step(self, stage: &'static str, what: impl Into<String>) -> Result<T, StepError> {
        self.map_err(|source| StepError { stage, what: what.into(), source: Some(source), hint: String::new() })
    }
}

/// Sends a child's failure to P0 (a child never prints) and returns the exit status to use. `errno` is 0 when
/// the failure is not a system call's.
pub fn report(chan: &channel::Channel, stage: &str, mut message: String, errno: i32) -> i32 {
    // One packet carries one message, and P0 reads at most 64 KiB of it: a longer one (a huge path) would
    // arrive truncated and undecodable.
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    let _ = chan.send(&msg::Msg::Failed { stage: stage.into(), errno, message });
    125
}

/// The longest failure text sent to P0.
const MAX_MESSAGE: usize = 8192;

/// Exits a forked child without running the parent's copies of exit handlers or flushing its buffers twice.
pub fn child_exit(code: i32) -> ! {
    crate::sys::exit_now(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_failure_arrives_whole_and_decodable() {
        let (a, b) = channel::pair().unwrap();
        let path = "é/".repeat(40_000);
        assert_eq!(report(&a, "mounts", format!("mount target {path}: File name too long"), libc::ENAMETOOLONG), 125);
        match b.recv().unwrap() {
            Some(msg::Msg::Failed { stage, errno, message }) => {
                assert_eq!((stage.as_str(), errno), ("mounts", libc::ENAMETOOLONG));
                assert!(message.starts_with("mount target é/") && message.ends_with("..."), "{}", &message[..40]);
                assert!(message.len() <= MAX_MESSAGE + 3);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_step_error_without_a_system_call_carries_no_errno() {
        let e = StepError::plain("network", "the backend did not configure tap0");
        assert_eq!((e.errno(), e.to_string().as_str()), (0, "the backend did not configure tap0"));
        let e = StepError::sys("workdir", "workdir /x", io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(e.errno(), libc::ENOENT);
        assert_eq!(e.to_string(), "workdir /x: No such file or directory (os error 2)");
    }
}
