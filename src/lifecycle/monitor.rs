//! The monitor of a detached container (what conmon is to podman): burrow itself, forked by `run -d`, in a
//! session of its own with no descriptor of the user's. It forks the runner, which launches the container as
//! a foreground `burrow run` would (P0 of docs/design/launch-sequence.md, so cgroup, network backend and
//! overlay are cleaned up the same way) with its stdout and its stderr on a pipe each; the monitor copies
//! both into the size-capped log (records tagged with their stream, see [`super::logfile`]), and when the
//! runner ends records the exit code.
//!
//! Killing the monitor (even with SIGKILL) kills the runner (PR_SET_PDEATHSIG), which kills P1, which kills
//! the container: nothing stays mounted or running, and `ps` then finds the record's lock free.

use super::detach::StartStatus;
use super::record::{self, Exit, NewRecord, Record, Started};
use crate::cli::RunArgs;
use crate::run::Prepared;
use crate::sys::{fork, Forked};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use std::cell::RefCell;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};

pub use super::logfile::LOG_CAP;
use super::logfile::{Log, Stream};

pub fn main(prepared: Prepared, args: &RunArgs, new: NewRecord, status: OwnedFd) -> ! {
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_name(c"burrow-monitor");
    let _ = crate::launch::stdio::null_onto(&[0, 1, 2]);
    let record = new.record.clone();
    let pipes = (nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC), nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC));
    let (Ok((out_r, out_w)), Ok((err_r, err_w))) = pipes else {
        report(Some(status), false, "pipe for the container's log".into(), 125);
        crate::sys::exit_now(125)
    };
    let monitor = nix::unistd::getpid();
    let runner = match fork() {
        Ok(Forked::Child) => {
            drop((out_r, err_r));
            runner(prepared, args, &record, status, (out_w, err_w), monitor)
        }
        Ok(Forked::Parent(pid)) => pid,
        Err(e) => {
            report(Some(status), false, format!("fork the container's runner: {e}"), 125);
            finish(&record, None);
            crate::sys::exit_now(125)
        }
    };
    drop((out_w, err_w));
    drop(status);
    std::mem::forget(prepared);
    let code = copy_log(&record, [(out_r, Stream::Stdout), (err_r, Stream::Stderr)], runner);
    finish(&record, Some(code));
    drop(new.lock);
    crate::sys::exit_now(0)
}

/// The runner: P0 of the container, its stdout and stderr on the log pipes.
fn runner(
    prepared: Prepared,
    args: &RunArgs,
    record: &Record,
    status: OwnedFd,
    (out, err): (OwnedFd, OwnedFd),
    monitor: nix::unistd::Pid,
) -> ! {
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::prctl::set_name(c"burrow");
    if nix::unistd::getppid() != monitor {
        crate::sys::exit_now(125);
    }
    let _ = crate::launch::stdio::onto_stdio(out.as_fd(), &[1]);
    let _ = crate::launch::stdio::onto_stdio(err.as_fd(), &[2]);
    drop((out, err));
    let status = RefCell::new(Some(status));
    let on_start = |_p1: nix::unistd::Pid| {
        write_started(record, monitor);
        report(status.borrow_mut().take(), true, String::new(), 0);
    };
    let code = match crate::run::launch(prepared, args, Some(&on_start)) {
        Ok(code) => code,
        Err(e) => {
            let taken = status.borrow_mut().take();
            match taken {
                Some(w) => report(Some(w), false, e.to_string(), e.exit_code()),
                None => eprintln!("burrow: {e}"),
            }
            e.exit_code()
        }
    };
    crate::sys::exit_now(code)
}

/// Records the host pids (and start times) of the process that supervises the container and of its init (a child
/// of the caller, P0: see `launch::ends`).
pub fn write_started(record: &Record, monitor: nix::unistd::Pid) {
    let init = crate::launch::ends::find_init(nix::unistd::getpid()).map(|(p, _)| p.as_raw()).unwrap_or(0);
    let started = Started {
        monitor: monitor.as_raw(),
        monitor_start: super::proc::start_time(monitor.as_raw()).unwrap_or(0),
        init,
        init_start: super::proc::start_time(init).unwrap_or(0),
        at: record::now(),
    };
    let _ = record::write_json(&record.file("state.json"), &started);
}

fn report(status: Option<OwnedFd>, ok: bool, message: String, code: i32) {
    if let Some(w) = status {
        let mut text = serde_json::to_vec(&StartStatus { ok, message, code }).unwrap_or_default();
        text.push(b'\n');
        let _ = std::fs::File::from(w).write_all(&text);
    }
}

/// Copies the runner's stdout and stderr into the log until the runner has ended and both pipes are
/// drained; returns the runner's exit status as an exit code.
fn copy_log(record: &Record, pipes: [(OwnedFd, Stream); 2], runner: nix::unistd::Pid) -> i32 {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut log = Log::open(record.file("log"));
    let mut code = None;
    let mut buf = vec![0u8; 65536];
    let mut open = [true, true];
    while open.iter().any(|o| *o) || code.is_none() {
        if open.iter().any(|o| *o) {
            let live: Vec<usize> = (0..2).filter(|i| open[*i]).collect();
            let mut fds: Vec<PollFd> =
                live.iter().map(|i| PollFd::new(pipes[*i].0.as_fd(), PollFlags::POLLIN)).collect();
            // Bounded, so that the runner's end is noticed even if a stray process keeps a pipe open.
            let _ = poll(&mut fds, PollTimeout::from(if code.is_some() { 200u16 } else { 1000u16 }));
            let ready: Vec<usize> = live
                .iter()
                .zip(&fds)
                .filter(|(_, f)| f.revents().is_some_and(|r| !r.is_empty()))
                .map(|(i, _)| *i)
                .collect();
            drop(fds);
            if ready.is_empty() && code.is_some() {
                open = [false, false];
            }
            for i in ready {
                match nix::unistd::read(&pipes[i].0, &mut buf) {
                    Ok(0) => open[i] = false,
                    Ok(n) => log.write(pipes[i].1, &buf[..n]),
                    Err(nix::Error::EINTR) => {}
                    Err(_) => open[i] = false,
                }
            }
        }
        if code.is_none() {
            let flags = if open.iter().any(|o| *o) { Some(WaitPidFlag::WNOHANG) } else { None };
            code = match waitpid(runner, flags) {
                Ok(WaitStatus::Exited(_, c)) => Some(c),
                Ok(WaitStatus::Signaled(_, s, _)) => Some(128 + s as i32),
                Ok(_) => None,
                Err(nix::Error::EINTR) => None,
                Err(_) => Some(125),
            };
        }
    }
    code.unwrap_or(125)
}

/// Records the end: the exit code (unless the container never started, whose record goes, the error having
/// been reported to `run -d`), the control socket removed, the whole record with `--rm`.
fn finish(record: &Record, code: Option<i32>) {
    let _ = std::fs::remove_file(record.file("ctl"));
    let started = record.started().is_some();
    if let (Some(code), true) = (code, started) {
        let _ = record::write_json(&record.file("exit.json"), &Exit { code, finished: record::now() });
    }
    if !started || record.config.remove {
        let _ = record::remove(record);
    }
}
