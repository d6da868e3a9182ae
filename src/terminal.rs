//! The user's side of `-t`: relays between the user's terminal and the master of a pty that lives in the
//! container's own devpts (for `run -t` and `exec -t`).
//!
//! The user's terminal is put in raw mode (with `-i`), so that Ctrl-C, Ctrl-Z and every other key reach the
//! pty's line discipline inside, which turns them into signals for the foreground job there: Ctrl-Z stops the
//! job inside, never burrow. The saved settings are restored on every way out: the relay's end, a drop on an
//! error path, and a catchable signal that would otherwise kill burrow with the terminal still raw (those are
//! blocked while a relay lives and read from a signalfd; burrow restores the terminal, then dies of the signal).
//! Window size changes (SIGWINCH, read by the caller's signalfd) are copied to the pty.

use crate::sys::tty::{self, WinSize};
use nix::poll::{PollFd, PollFlags};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};
use std::io;
use std::os::fd::{AsFd, OwnedFd};

#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    #[error("the input device is not a terminal: -t needs one on stdin (use -i without -t to pipe input, or -d)")]
    NotATerminal,
    #[error("terminal: {what}: {source}")]
    Io { what: &'static str, source: io::Error },
}

/// The size of the terminal on stdin, if stdin is one.
pub fn size_of_stdin() -> Option<WinSize> {
    let stdin = io::stdin();
    let fd = stdin.as_fd();
    nix::unistd::isatty(fd).unwrap_or(false).then(|| tty::window_size(fd).ok()).flatten()
}

/// What `-t` needs from the user's side: a terminal on stdin (`podman run -t` without one is an error too),
/// and its size, so that the payload's pty has it before the payload starts.
pub fn require_stdin_terminal() -> Result<WinSize, TerminalError> {
    match size_of_stdin() {
        Some(s) if s.rows > 0 && s.cols > 0 => Ok(s),
        Some(_) => Ok(WinSize { rows: 24, cols: 80 }),
        None => Err(TerminalError::NotATerminal),
    }
}

/// Signals whose default action kills the process and which a user may send: blocked while a relay lives, so
/// that burrow restores the terminal first. SIGPIPE only means stdout is gone.
const FATAL: [Signal; 8] = [
    Signal::SIGALRM,
    Signal::SIGVTALRM,
    Signal::SIGPROF,
    Signal::SIGXCPU,
    Signal::SIGXFSZ,
    Signal::SIGIO,
    Signal::SIGPWR,
    Signal::SIGPIPE,
];

fn fatal_set() -> SigSet {
    let mut set = SigSet::empty();
    FATAL.iter().for_each(|s| set.add(*s));
    set
}

/// The user's terminal in raw mode; the saved settings come back when dropped.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> io::Result<RawMode> {
        let stdin = io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSADRAIN, &raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// Bytes from stdin not yet taken by the pty; above this, stdin is not read until the pty drains.
const BACKLOG: usize = 64 * 1024;

/// One relay between the user's stdin/stdout and a pty master.
pub struct Relay {
    master: OwnedFd,
    /// A copy of stdin (same open file: its flags are left alone).
    stdin: OwnedFd,
    /// Reading the user's stdin (`-i`, until its end of file).
    input: bool,
    master_open: bool,
    to_master: Vec<u8>,
    signals: SignalFd,
    raw: Option<RawMode>,
    /// The user's terminal (stdin is one): window sizes are copied from it.
    sized: bool,
}

impl Relay {
    /// Starts relaying `master`; with `interactive`, stdin is read and (when it is a terminal) made raw.
    pub fn new(master: OwnedFd, interactive: bool) -> Result<Relay, TerminalError> {
        let err = |what| move |source: nix::Error| TerminalError::Io { what, source: source.into() };
        nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))
            .map_err(err("make the pty master non-blocking"))?;
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&fatal_set()), None).map_err(err("block signals"))?;
        let signals = SignalFd::with_flags(&fatal_set(), SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(err("signalfd"))?;
        let sized = size_of_stdin().is_some();
        let raw = match interactive && sized {
            true => Some(RawMode::enter().map_err(|source| TerminalError::Io { what: "raw mode", source })?),
            false => None,
        };
        let stdin = nix::unistd::dup(io::stdin()).map_err(err("dup stdin"))?;
        let relay =
            Relay { master, stdin, input: interactive, master_open: true, to_master: Vec::new(), signals, raw, sized };
        // The size set before the payload started may be stale by now.
        relay.resize();
        Ok(relay)
    }

    /// Copies the user's window size to the pty (on SIGWINCH).
    pub fn resize(&self) {
        if self.sized {
            if let Ok(size) = tty::window_size(io::stdin().as_fd()) {
                let _ = tty::set_window_size(self.master.as_fd(), size);
            }
        }
    }

    /// The descriptors to poll, in the order [`Relay::service`] expects their events.
    pub fn poll_fds(&self) -> Vec<PollFd<'_>> {
        let mut master = PollFlags::empty();
        if self.master_open {
            master |= PollFlags::POLLIN;
            if !self.to_master.is_empty() {
                master |= PollFlags::POLLOUT;
            }
        }
        let input = match self.input && self.master_open && self.to_master.len() < BACKLOG {
            true => PollFlags::POLLIN,
            false => PollFlags::empty(),
        };
        vec![
            PollFd::new(self.master.as_fd(), master),
            PollFd::new(self.stdin.as_fd(), input),
            PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
        ]
    }

    /// Moves whatever is ready; `events` are the revents of [`Relay::poll_fds`]' descriptors.
    pub fn service(&mut self, events: &[PollFlags]) {
        let ready = |i: usize| events.get(i).copied().unwrap_or(PollFlags::empty());
        if !ready(2).is_empty() {
            self.on_signals();
        }
        if !ready(0).is_empty() {
            self.pump_output();
            self.flush_input();
        }
        if ready(1).intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            let mut buf = [0u8; 8192];
            match nix::unistd::read(&self.stdin, &mut buf) {
                Ok(0) | Err(nix::Error::EIO) => self.input = false,
                Ok(n) => self.to_master.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
            self.flush_input();
        }
    }

    /// Reads the master until it would block; end of file (EIO once every slave is closed) ends the relay.
    fn pump_output(&mut self) {
        let mut buf = [0u8; 16384];
        while self.master_open {
            match nix::unistd::read(&self.master, &mut buf) {
                Ok(0) | Err(nix::Error::EIO) => self.master_open = false,
                Ok(n) => write_all_stdout(&buf[..n]),
                Err(nix::Error::EAGAIN) => break,
                Err(nix::Error::EINTR) => continue,
                Err(_) => self.master_open = false,
            }
        }
    }

    fn flush_input(&mut self) {
        while !self.to_master.is_empty() && self.master_open {
            match nix::unistd::write(&self.master, &self.to_master) {
                Ok(n) => drop(self.to_master.drain(..n)),
                Err(nix::Error::EINTR) => continue,
                Err(_) => break,
            }
        }
    }

    /// A signal that would kill burrow: restore the terminal, then die of it (the container follows through
    /// the parent-death signals).
    fn on_signals(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else { continue };
            if sig == Signal::SIGPIPE {
                continue;
            }
            self.raw = None;
            let mut one = SigSet::empty();
            one.add(sig);
            let _ = nix::sys::signal::raise(sig);
            let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&one), None);
            // Still alive: the signal was ignored when burrow started; exit as if it had killed us.
            crate::sys::exit_now(128 + sig as i32);
        }
    }

    /// After the payload ended: copies what is still buffered in the pty, then gives the terminal back.
    pub fn finish(mut self) {
        self.pump_output();
        self.raw = None;
    }
}

fn write_all_stdout(mut bytes: &[u8]) {
    let stdout = io::stdout();
    while !bytes.is_empty() {
        match nix::unistd::write(stdout.as_fd(), bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(nix::Error::EINTR) => continue,
            Err(nix::Error::EAGAIN) => {
                let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1000u16));
            }
            Err(_) => return,
        }
    }
}
