//! P0's side of what init hands over with `Msg::Attach`: the payload's pty master (relayed to the user's
//! terminal by [`crate::terminal::Relay`]) and the start watch (its end of file: the payload has exec'd).

use crate::terminal::{Relay, TerminalError};
use nix::poll::{PollFd, PollFlags};
use nix::unistd::Pid;
use std::os::fd::{AsFd, OwnedFd};

/// Called once the payload has exec'd, with P1's pid (`run -d` reports the start then).
pub type OnStart<'a> = &'a dyn Fn(Pid);

pub struct Attach<'a> {
    interactive: bool,
    relay: Option<Relay>,
    watch: Option<OwnedFd>,
    /// The watch hit end of file; the start is reported once no failure is queued on the channel.
    start_pending: bool,
    on_start: Option<OnStart<'a>>,
    /// The relay could not start (the container is stopped and this is reported).
    pub error: Option<TerminalError>,
}

impl<'a> Attach<'a> {
    pub fn new(interactive: bool, on_start: Option<OnStart<'a>>) -> Attach<'a> {
        Attach { interactive, relay: None, watch: None, start_pending: false, on_start, error: None }
    }

    /// Takes the descriptors of a `Msg::Attach`, in its order: the pty master, then the watch.
    pub fn take(&mut self, terminal: bool, watch: bool, fds: Vec<OwnedFd>) {
        let mut fds = fds.into_iter();
        if terminal {
            if let Some(master) = fds.next() {
                match Relay::new(master, self.interactive) {
                    Ok(r) => self.relay = Some(r),
                    Err(e) => self.error = Some(e),
                }
            }
        }
        if watch {
            self.watch = fds.next();
        }
    }

    /// With a pty, the payload is not in the user's terminal's process group: signals the terminal raises for
    /// burrow (without -i it is not raw) are the payload's and are forwarded too.
    pub fn forwards_terminal_signals(&self) -> bool {
        self.relay.is_some()
    }

    /// SIGWINCH: copy the user's window size to the pty. False when there is no pty.
    pub fn resize(&self) -> bool {
        self.relay.as_ref().inspect(|r| r.resize()).is_some()
    }

    /// The descriptors to poll (their events go back to [`Attach::service`] in the same order).
    pub fn poll_fds(&self) -> Vec<PollFd<'_>> {
        let mut fds = self.relay.as_ref().map(|r| r.poll_fds()).unwrap_or_default();
        if let Some(w) = &self.watch {
            fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
        }
        fds
    }

    pub fn service(&mut self, events: &[PollFlags]) {
        let n = match &mut self.relay {
            Some(r) => {
                r.service(events);
                3
            }
            None => 0,
        };
        if self.watch.is_some() && events.get(n).is_some_and(|e| !e.is_empty()) {
            self.read_watch();
        }
    }

    /// The watch is readable: its end of file (or an error) means the payload has exec'd (or init is gone).
    fn read_watch(&mut self) {
        let Some(w) = &self.watch else { return };
        let mut b = [0u8; 1];
        if matches!(nix::unistd::read(w, &mut b), Ok(0) | Err(_)) {
            self.watch = None;
            self.start_pending = true;
        }
    }

    /// After P1 exited: the watch's end of file may not have been seen yet (P0 was still busy, e.g. starting the
    /// user-namespace keeper, while a short payload ran and exited). Looks once more, then reports the start
    /// unless a failure was queued.
    pub fn settle(&mut self, failed: bool, p1: Pid) {
        let readable = self.watch.as_ref().is_some_and(|w| {
            let mut fds = [PollFd::new(w.as_fd(), PollFlags::POLLIN)];
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok_and(|n| n > 0)
        });
        if readable {
            self.read_watch();
        }
        self.check_started(false, failed, p1);
    }

    /// Reports the start once the watch ended and the channel holds no failure (`failed`) or unread message
    /// (`chan_busy`: an ExecFailed sent before the pipe closed may still be queued).
    pub fn check_started(&mut self, chan_busy: bool, failed: bool, p1: Pid) {
        if !self.start_pending || chan_busy {
            return;
        }
        self.start_pending = false;
        if let (false, Some(f)) = (failed, self.on_start.take()) {
            f(p1);
        }
    }

    /// After P1 exited: the pty's last output, then the user's terminal settings back.
    pub fn finish(&mut self) {
        if let Some(r) = self.relay.take() {
            r.finish();
        }
    }
}
