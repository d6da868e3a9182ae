//! Containers that outlive one command: detached runs under a monitor, their records, and the commands that
//! look at and act on them (`ps`, `logs`, `exec`, `stop`, `kill`, `wait`, `rm`). docs/design/lifecycle.md
//! draws the processes, the state files and the locks.

pub mod cli;
pub mod commands;
pub mod detach;
pub mod exec;
pub mod foreground;
pub mod logfile;
pub mod monitor;
pub mod proc;
pub mod record;

/// Runs one lifecycle command; returns burrow's exit status.
pub fn main(cmd: crate::cli::Command) -> i32 {
    use crate::cli::Command;
    let result = match cmd {
        Command::Ps(a) => commands::ps(&a),
        Command::Logs(a) => commands::logs(&a),
        Command::Stop(a) => Ok(commands::stop(&a)),
        Command::Kill(a) => Ok(commands::kill(&a)),
        Command::Wait(a) => Ok(commands::wait(&a)),
        Command::Rm(a) => Ok(commands::rm(&a)),
        Command::Exec(a) => return exec::main(&a),
        _ => unreachable!("dispatched by main"),
    };
    result.unwrap_or_else(|e| {
        eprintln!("burrow: {e}");
        125
    })
}
