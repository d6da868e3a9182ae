//! A running network helper process (slirp4netns or pasta): start-up wait and teardown shared by
//! both backends.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::NetError;

/// How long a helper may take to configure the namespace. It takes a few ms; the margin covers a
/// loaded login node, and the wait ends at once if the helper dies.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A helper process owned by burrow; dropping it kills and reaps the process and removes its files.
#[derive(Debug)]
pub struct Helper {
    pub name: &'static str,
    pub child: Child,
    /// Fds whose lifetime ties the helper to us (slirp4netns' exit fd write end).
    pub keep: Vec<OwnedFd>,
    /// Sockets, fifos and logs in the state directory.
    pub files: Vec<PathBuf>,
}

impl Helper {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the helper (reaping it if it is already gone); idempotent. It does not wait for the
    /// process to finish dying: slirp4netns takes 15-35 ms to be reaped after SIGKILL (its sandbox's
    /// namespaces are torn down), which burrow's exit would otherwise wait for on every run. The dying
    /// process is reaped by whoever inherits it once burrow exits a moment later.
    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SIGKILL: neither helper holds state worth flushing, and it cannot be ignored.
            let _ = self.child.kill();
            let _ = self.child.try_wait();
        }
        self.keep.clear();
        for f in self.files.drain(..) {
            let _ = std::fs::remove_file(f);
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A helper that was started but is not yet known to be ready. P0 lets the container's own setup run while
/// the helper configures the namespace, and waits for it only before the payload needs the network.
#[derive(Debug)]
pub struct Pending {
    pub helper: Helper,
    pub ready: OwnedFd,
    pub log: PathBuf,
}

impl Pending {
    /// Waits for the helper's ready signal; see [`wait_ready`].
    pub fn wait(mut self) -> Result<Helper, NetError> {
        wait_ready(&mut self.helper, &self.ready, &self.log)?;
        Ok(self.helper)
    }
}

/// Opens (truncating) the helper's log file, used for its stdout and stderr.
pub fn log_file(name: &'static str, path: &Path) -> Result<(Stdio, Stdio), NetError> {
    let io = |source| NetError::StateFile { helper: name, path: path.to_path_buf(), source };
    let f = File::create(path).map_err(io)?;
    let f2 = f.try_clone().map_err(io)?;
    Ok((Stdio::from(f), Stdio::from(f2)))
}

/// The last lines of a helper's log, without pasta's syslog noise, for error messages.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("Failed to send")).collect();
    let tail = lines[lines.len().saturating_sub(5)..].join("; ");
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    }
}

/// Waits until `ready` has data (the helper's ready signal), the helper exits, or the timeout.
/// Both are watched at once (a pidfd next to the ready fd), so a dying helper is reported at once.
fn wait_ready(helper: &mut Helper, ready: &OwnedFd, log: &Path) -> Result<(), NetError> {
    let pid = rustix::process::Pid::from_raw(helper.pid() as i32).ok_or(NetError::Internal("helper pid is 0"))?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(|e| NetError::Spawn { helper: helper.name, source: e.into() })?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            helper.stop();
            return Err(NetError::Timeout { helper: helper.name, secs: READY_TIMEOUT.as_secs(), log: log_tail(log) });
        }
        let ms = u16::try_from(left.as_millis().min(10_000)).unwrap_or(10_000);
        let mut fds = [PollFd::new(ready.as_fd(), PollFlags::POLLIN), PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::from(ms)) {
            Err(nix::errno::Errno::EINTR) | Ok(0) => continue,
            Err(e) => return Err(NetError::Internal(e.desc())),
            Ok(_) => {}
        }
        let ready_ev = fds[0].revents().unwrap_or(PollFlags::empty());
        if ready_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) {
            let mut buf = [0u8; 32];
            // EAGAIN (a FIFO whose writer left without writing) counts as nothing read.
            if nix::unistd::read(ready.as_fd(), &mut buf).unwrap_or(0) > 0 {
                return Ok(());
            }
        }
        if ready_ev.intersects(PollFlags::POLLHUP) || fds[1].revents().is_some_and(|r| !r.is_empty()) {
            return Err(died(helper, log));
        }
    }
}

/// Reaps a helper that exited (or closed its ready fd without signalling) and builds the error.
fn died(helper: &mut Helper, log: &Path) -> NetError {
    // It closed the ready fd without writing: give it a moment to exit, then kill it.
    let mut status = None;
    for _ in 0..50 {
        if let Ok(Some(s)) = helper.child.try_wait() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let log = log_tail(log);
    helper.stop();
    NetError::Died {
        helper: helper.name,
        pid: helper.pid(),
        status: status.map_or_else(|| "closed its ready fd".to_string(), |s| s.to_string()),
        log,
    }
}
