//! burrow's own forwarder for published ports, with either backend (`--port-handler burrow`, the default).
//!
//! slirp4netns' `add_hostfwd` carries every byte of a published port through libslirp's user-space
//! TCP/IP stack, and Debian 12's pasta loses replies on its own path. This forwarder relays between two
//! kernel sockets instead: P0 binds the host sockets in the host's network namespace (the bind is also
//! the busy-port check), P1 forks the forwarder once it is in the container's network namespace (the
//! backend may still be configuring the tap device; a connection before the payload listens is refused
//! either way). A socket keeps the namespace it was made in, so the forwarder accepts on the host
//! sockets and makes its connections to the container inside the container's namespace: a published
//! port's bytes go through two kernel TCP connections and a splice(2) pipe, never through the backend.
//!
//! The forwarder connects to the container's address (10.0.2.100), not 127.0.0.1: a published
//! port then reaches exactly the servers that `add_hostfwd` and podman reach (those listening on
//! the container's interface or on 0.0.0.0), not a server that bound the container's loopback to
//! keep it private.
//!
//! Lifecycle, as for the FUSE server: P1's child, outside the container's PID namespace (the
//! container cannot see or signal it). When the container ends, P1 lets it pass on the last bytes
//! the container sent (at most [`DRAIN_TIMEOUT`]) and kills it; PR_SET_PDEATHSIG kills it when P1
//! dies, so nothing outlives a SIGKILL of burrow.

mod tcp;
mod udp;

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

use super::publish::{HostSocket, PortSpec};
use super::{dns, NetError};
use crate::launch::fork::{fork_tied, Tied};

/// The forwarder's process name (`comm`), for ps and the tests.
pub const PROCESS_NAME: &str = "burrow-portfwd";

/// How long a forwarder may take, once the container ended, to pass on what the container sent last.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The running forwarder; dropping it kills and reaps it at once.
#[derive(Debug)]
pub struct Forwarder {
    pid: Pid,
    /// A byte written here tells the forwarder that the container ended: drain, then exit.
    drain: OwnedFd,
    /// Already reaped by [`Forwarder::exited`]: its pid may belong to another process now.
    reaped: bool,
}

impl Forwarder {
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// After the container ended (P1, once init was reaped): lets the forwarder pass on what the
    /// container sent before it ended (a reply written just before exit), for at most
    /// [`DRAIN_TIMEOUT`], then kills and reaps it. A slirp4netns hostfwd or a forwarder killed at
    /// once would cut such a reply short.
    pub fn stop(self) {
        if self.reaped {
            return;
        }
        let pid = rustix::process::Pid::from_raw(self.pid.as_raw());
        if let (Ok(_), Some(pid)) = (nix::unistd::write(&self.drain, b"x"), pid) {
            if let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
                let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
                let ms = u16::try_from(DRAIN_TIMEOUT.as_millis() + 100).unwrap_or(u16::MAX);
                let _ = nix::poll::poll(&mut fds, PollTimeout::from(ms));
            }
        }
        // Drop: SIGKILL (a no-op when it exited) and reap.
    }

    /// P1, on SIGCHLD: if the forwarder has exited (it should live as long as the container), reaps it and
    /// describes how it ended, so that the user learns that the published ports stopped working.
    pub fn exited(&mut self) -> Option<String> {
        use nix::sys::wait::{WaitPidFlag, WaitStatus};
        if self.reaped {
            return None;
        }
        let how = match nix::sys::wait::waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::Error::EINTR) => return None,
            Ok(WaitStatus::Exited(_, code)) => format!("exited with status {code}"),
            Ok(WaitStatus::Signaled(_, sig, _)) => format!("was killed by {sig}"),
            Ok(other) => format!("ended ({other:?})"),
            Err(e) => format!("is gone ({e})"),
        };
        self.reaped = true;
        Some(how)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

/// Forks the forwarder (P1, single-threaded, in the container's network namespace, network
/// ready). The caller's copies of the host sockets are closed when this returns.
pub fn spawn(sockets: Vec<(PortSpec, HostSocket)>) -> Result<Forwarder, NetError> {
    let (drain_r, drain) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| NetError::Forwarder { what: "pipe", source: e.into() })?;
    // Dies with P1 (SIGKILL); exits at once if P1 is already gone.
    match fork_tied(Signal::SIGKILL).map_err(|source| NetError::Forwarder { what: "fork", source })? {
        Tied::Child => {
            drop(drain);
            serve(sockets, drain_r)
        }
        Tied::Parent(pid) => Ok(Forwarder { pid, drain, reaped: false }),
    }
}

/// The forwarder's main: one thread per host socket; the process ends only by SIGKILL.
fn serve(sockets: Vec<(PortSpec, HostSocket)>, drain: OwnedFd) -> ! {
    let _ = nix::sys::prctl::set_name(c"burrow-portfwd");
    // A write to a connection the peer reset must fail with EPIPE, not kill the forwarder. The
    // relay threads inherit the mask.
    let mut pipe = SigSet::empty();
    pipe.add(Signal::SIGPIPE);
    let _ = pipe.thread_block();
    // Traffic to the container's own address goes through `lo`, which init brings up only later.
    let _ = crate::sys::loopback_up();
    // Nothing below needs a capability (P1 has all of them in the container's user namespace): the
    // forwarder, which holds host sockets and talks to the container, keeps none. Threads inherit it.
    let none = rustix::thread::CapabilitySet::empty();
    let sets = rustix::thread::CapabilitySets { effective: none, permitted: none, inheritable: none };
    if rustix::thread::set_capabilities(None, sets).is_err() {
        crate::sys::exit_now(1);
    }
    for (spec, socket) in sockets {
        let target = SocketAddr::from((dns::CONTAINER_ADDR, spec.container_port));
        let started = match socket {
            HostSocket::Tcp(l) => std::thread::Builder::new().spawn(move || tcp::serve(l, target)),
            HostSocket::Udp(u) => std::thread::Builder::new().spawn(move || udp::serve(u, target)),
        };
        if started.is_err() {
            crate::sys::exit_now(1);
        }
    }
    // The main thread waits for the end of the container (a byte, or EOF if P1 is gone).
    let mut byte = [0u8; 1];
    while let Err(nix::Error::EINTR) = nix::unistd::read(&drain, &mut byte) {}
    tcp::drain(DRAIN_TIMEOUT);
    crate::sys::exit_now(0)
}
