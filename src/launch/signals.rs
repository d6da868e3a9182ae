//! Signal plumbing shared by the launcher's processes.
//!
//! P0, P1 and init block the signals they handle and read them from a signalfd, so no async handler ever runs.
//! Signals sent by a process (`kill`) are forwarded. A signal raised by the terminal (Ctrl-C, window size
//! change, hangup) reaches a payload in the terminal's process group directly; a payload in a session of its
//! own (the default without `-t`, see `security`) gets it from init, or from P0 with `--no-init`.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::WaitStatus;

pub const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// The set every launcher process blocks: the forwarded signals and SIGCHLD.
pub fn handled() -> SigSet {
    let mut set = SigSet::empty();
    FORWARDED.iter().for_each(|s| set.add(*s));
    set.add(Signal::SIGCHLD);
    set
}

/// Blocks the handled set in the calling thread (inherited by children across fork).
pub fn block() -> nix::Result<()> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled()), None)
}

/// A signalfd for the handled set.
pub fn signalfd() -> nix::Result<SignalFd> {
    SignalFd::with_flags(&handled(), SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
}

/// Unblocks everything and gives SIGPIPE its default action back: the payload must start with the mask and
/// dispositions a shell would give it. Rust's runtime ignores SIGPIPE in burrow, and an ignored signal stays
/// ignored across execve (`yes | head -1` then printed "Broken pipe" instead of ending quietly). Dispositions
/// burrow's caller chose (nohup's ignored SIGHUP) are kept, as by any exec.
pub fn unblock_all() -> nix::Result<()> {
    crate::sys::default_disposition(Signal::SIGPIPE)?;
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
}

/// True when the signal was sent by a process (`SI_USER`, `SI_QUEUE`, `SI_TKILL`: codes <= 0) rather than
/// raised by the kernel (terminal, child status).
pub fn sent_by_process(code: i32) -> bool {
    code <= 0
}

/// The shell convention: the exit code, or 128 + the signal number.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}
