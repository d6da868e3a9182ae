//! Containers that outlive one command: detached runs under a monitor, their records, and the commands that
//! look at and act on them (`ps`, `logs`, `exec`, `stop`, `kill`, `wait`, `rm`). docs/design/lifecycle.md
//! draws the processes, the state files and the locks.

pub mod cli;
pub mod detach;

/// Runs one lifecycle command; returns burrow's exit status.
pub fn main(cmd: crate::cli::Command) -> i32 {
    eprintln!("burrow: {cmd:?}: not built yet on this branch");
    125
}
