//! `burrow run -d`: check and plan in the user's process (input errors are printed as for a foreground run),
//! register the container, then fork its monitor and wait only until the payload has exec'd: print the ID,
//! or the start-up error with its exit status.

use super::monitor;
use super::record::{self, Config};
use crate::cli::RunArgs;
use crate::sys::{fork, Forked};
use std::io::BufRead;

/// What the runner tells `run -d` over the status pipe, once.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct StartStatus {
    pub ok: bool,
    pub message: String,
    pub code: i32,
}

pub fn run(args: &RunArgs) -> i32 {
    match start(args) {
        Ok(id) => {
            println!("{id}");
            0
        }
        Err((message, code)) => {
            eprintln!("burrow: {message}");
            code
        }
    }
}

fn start(args: &RunArgs) -> Result<String, (String, i32)> {
    let fail = |e: &dyn std::fmt::Display| (e.to_string(), 125);
    let id = crate::state::new_id();
    let mut prepared = crate::run::prepare(args, id.clone()).map_err(|e| (e.to_string(), e.exit_code()))?;
    let config = Config::of_run(&prepared, args, false);
    let new = record::create(config).map_err(|e| fail(&e))?;
    let new_record = new.record.clone();
    prepared.spec.control = (!args.no_init).then(|| new.record.file("ctl"));
    prepared.spec.watch_start = true;
    prepared.spec.interactive = false;
    prepared.spec.terminal =
        args.tty.then(|| crate::terminal::size_of_stdin().unwrap_or(crate::sys::tty::WinSize { rows: 24, cols: 80 }));
    prepared.spec.hardening.controlling_tty = args.tty;
    let (status_r, status_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail(&e))?;
    match fork().map_err(|e| fail(&e))? {
        Forked::Child => {
            drop(status_r);
            monitor::main(prepared, args, new, status_w)
        }
        Forked::Parent(_) => {
            drop(status_w);
            // The monitor owns the state directory and the lock now: this copy must neither remove nor unlock
            // them (closing our descriptor of the lock leaves the monitor's lock in place).
            std::mem::forget(prepared);
            drop(new.lock);
        }
    }
    // One line: the write end also lives on in the container's P1 (forked by the runner before the start),
    // so end of file would only come with the container's end.
    let mut text = String::new();
    let _ = std::io::BufReader::new(std::fs::File::from(status_r)).read_line(&mut text);
    let failed = match serde_json::from_str::<StartStatus>(&text) {
        Ok(s) if s.ok => return Ok(id),
        Ok(s) => (s.message, s.code),
        Err(_) => ("the container's monitor ended before the container started".into(), 125),
    };
    // The monitor removes the record of a container that never started; once its lock is free that is done,
    // and `run -d` leaves nothing behind.
    new_record.wait_ended();
    Err(failed)
}
