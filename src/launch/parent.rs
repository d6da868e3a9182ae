//! P0, the user's own process: starts P1, writes its ID maps, then supervises the container — forwarding
//! signals to its init and turning the outcome into burrow's exit status.

use super::channel::{self, Channel, ChannelError};
use super::msg::Msg;
use super::{child, signals};
use crate::idmap::{self, IdPlan};
use crate::spec::RunSpec;
use crate::sys::{fork, Forked};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::AsFd;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{stage}: {message}")]
    Child { stage: String, message: String },
    #[error("{0}")]
    Exec(String, i32),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Idmap(#[from] idmap::IdmapError),
    #[error("{0}: {1}")]
    Sys(&'static str, nix::Error),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    #[error(transparent)]
    Terminal(#[from] crate::terminal::TerminalError),
}

/// What P0 prepared before the fork for the stages it runs on P1's behalf.
pub struct HostStages<'a> {
    pub cgroup: &'a crate::cgroup::Plan,
    /// Unique among running containers: names the systemd scope or cgroup.
    pub name: String,
    /// Called once the payload has exec'd (needs `spec.watch_start`).
    pub on_start: Option<super::attach::OnStart<'a>>,
}

/// How the container ended.
pub struct Outcome {
    pub code: i32,
    /// Accounting figures, when a cgroup was attached.
    pub stats: Option<crate::cgroup::Stats>,
}

impl LaunchError {
    /// burrow's exit status for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            LaunchError::Exec(_, code) => *code,
            _ => 125,
        }
    }
}

/// Kills and reaps P1 if P0 leaves early with an error.
struct P1Guard(Option<Pid>);

impl Drop for P1Guard {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// Runs the container; returns the payload's exit code.
pub fn run(spec: &RunSpec, stages: &HostStages<'_>, notice: &mut dyn FnMut(String)) -> Result<Outcome, LaunchError> {
    signals::block().map_err(|e| LaunchError::Sys("block signals", e))?;
    let (ours, theirs) = channel::pair()?;
    let p0 = nix::unistd::getpid();
    let p1 = match fork().map_err(|e| LaunchError::Sys("fork", nix::Error::from_raw(e.raw_os_error().unwrap_or(0))))? {
        Forked::Child => {
            drop(ours);
            child::main(spec, theirs, p0)
        }
        Forked::Parent(pid) => pid,
    };
    drop(theirs);
    // P1 holds its own copies of the published ports' host sockets, for its forwarder.
    spec.net.close_host_sockets();
    let mut guard = P1Guard(Some(p1));
    failure_or(ours.wait_for_unshared())?;
    // Before Go: P1 unshares its cgroup namespace only after it is in its cgroup.
    let net_dir = spec.net_backend_dir();
    let spawn_net = || -> Result<_, LaunchError> {
        net_dir.map(|dir| crate::net::spawn(&spec.net, p1.as_raw(), dir)).transpose().map_err(LaunchError::from)
    };
    let early_net = spec.net.starts_before_maps();
    let meanwhile = || -> Result<_, LaunchError> {
        let cgroup = match stages.cgroup.is_disabled() {
            true => None,
            false => Some(crate::cgroup::attach(stages.cgroup, p1.as_raw(), &stages.name)?),
        };
        Ok((cgroup, if early_net { spawn_net()? } else { None }))
    };
    let (single, (cgroup, starting)) = write_maps(&spec.ids, p1.as_raw(), notice, meanwhile)?;
    if let Some(attached) = &cgroup {
        attached.warnings().iter().for_each(|w| notice(format!("burrow: warning: {w}")));
    }
    let starting = if early_net { starting } else { spawn_net()? };
    ours.send(if single { &Msg::GoSingle } else { &Msg::Go })?;
    // The backend configures the namespace while P1 and init build the root filesystem; init waits for
    // NetReady before it touches the tap device.
    let network = starting.map(crate::net::Starting::wait).transpose()?;
    if network.is_some() {
        ours.send(&Msg::NetReady)?;
    }
    // From here P0 only wakes for a signal, a failure, a notice or P1's exit: every wakeup on the way to the
    // payload costs a scheduling round trip on a busy machine.
    let mut attach = super::attach::Attach::new(spec.interactive, stages.on_start);
    let code = supervise(&ours, p1, cgroup.as_ref(), notice, &mut attach);
    attach.finish();
    let code = code?;
    guard.0 = None;
    let stats = cgroup.as_ref().map(|c| c.stats());
    drop(cgroup);
    drop(network);
    match drain_failure(&ours) {
        Some(e) => Err(e),
        None => Ok(Outcome { code, stats }),
    }
}

/// Turns a `Failed`/`ExecFailed` message that arrived instead of the expected one into the child's error.
fn failure_or<T>(r: Result<T, ChannelError>) -> Result<T, LaunchError> {
    match r {
        Err(ChannelError::Unexpected { got, .. }) => Err(failure(got)
            .unwrap_or_else(|| LaunchError::Child { stage: "sync".into(), message: "unexpected message".into() })),
        other => Ok(other?),
    }
}

/// The error a `Failed` or `ExecFailed` message stands for (None for other messages).
pub fn failure(msg: Msg) -> Option<LaunchError> {
    match msg {
        Msg::Failed { stage, message, .. } => Some(LaunchError::Child { stage, message }),
        Msg::ExecFailed { errno, command, path_searched } => {
            let (what, code) = if errno == libc::ENOENT { ("not found", 127) } else { ("not executable", 126) };
            let err = std::io::Error::from_raw_os_error(errno);
            let message = match path_searched {
                Some(p) if code == 127 => format!("cannot run {command:?}: {what} in PATH {p}"),
                Some(_) => format!("cannot run {command:?}: {what} ({err})"),
                None => format!("cannot run {command:?}: {err}"),
            };
            Some(LaunchError::Exec(message, code))
        }
        _ => None,
    }
}

/// Writes P1's maps; falls back to a single-ID map when the helpers fail before writing anything.
/// Returns true when the map is single-ID.
///
/// While the setuid helpers run (a few milliseconds of exec), `meanwhile` does work that needs no map (the
/// cgroup's D-Bus round trip).
fn write_maps<T>(
    ids: &IdPlan,
    pid: i32,
    notice: &mut dyn FnMut(String),
    meanwhile: impl FnOnce() -> Result<T, LaunchError>,
) -> Result<(bool, T), LaunchError> {
    if !ids.via_helpers {
        idmap::write_single(ids, pid)?;
        return Ok((true, meanwhile()?));
    }
    let helpers = idmap::start_helpers(ids, pid);
    let done = meanwhile();
    let written = helpers.finish();
    let done = done?;
    let Err(e) = written else {
        return Ok((false, done));
    };
    let untouched = ["uid_map", "gid_map"]
        .iter()
        .all(|f| std::fs::read_to_string(format!("/proc/{pid}/{f}")).is_ok_and(|s| s.trim().is_empty()));
    if !untouched {
        return Err(e.into());
    }
    let (uid, gid) = ids.caller_inside();
    let single = IdPlan::single(uid, gid, ids.host.0, ids.host.1, Some(e.to_string()));
    if let Some(n) = single.notice() {
        notice(n);
    }
    idmap::write_single(&single, pid)?;
    Ok((true, done))
}

/// The container's init: P1's child in another PID namespace (the FUSE server, P1's other child, is in ours).
/// Looked up only when a signal must be forwarded, so that P1 need not wake P0 to say it.
pub fn find_init(p1: Pid) -> Option<Pid> {
    // By the depth of its PID namespace (NSpid in /proc/PID/status, readable even when init made itself
    // non-dumpable, which hides its /proc/PID/ns).
    let depth = |p: &str| {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
        status.lines().find_map(|l| l.strip_prefix("NSpid:")).map(|v| v.split_whitespace().count())
    };
    let ours = depth("self")?;
    let in_other_ns = |p: &i32| depth(&p.to_string()).is_some_and(|d| d > ours);
    match std::fs::read_to_string(format!("/proc/{p1}/task/{p1}/children")) {
        Ok(children) => children.split_whitespace().filter_map(|p| p.parse().ok()).find(in_other_ns),
        // Kernels without CONFIG_PROC_CHILDREN: look for P1's children by their parent pid.
        Err(_) => std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|p| parent_of(*p) == Some(p1.as_raw()))
            .find(in_other_ns),
    }
    .map(Pid::from_raw)
}

/// The parent pid in /proc/PID/stat (the field after the command name, which may contain spaces).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Forwards signals to init and collects messages until P1 exits; returns the exit code.
fn supervise(
    chan: &Channel,
    p1: Pid,
    cgroup: Option<&crate::cgroup::Attached>,
    notice: &mut dyn FnMut(String),
    attach: &mut super::attach::Attach<'_>,
) -> Result<i32, LaunchError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let sfd = signals::signalfd().map_err(|e| LaunchError::Sys("signalfd", e))?;
    let mut failure_seen: Option<LaunchError> = None;
    let mut chan_open = true;
    let mut init: Option<Pid> = None;
    // Signals that arrived before init existed, delivered as soon as it does.
    let mut pending: Vec<Signal> = Vec::new();
    loop {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if chan_open {
            fds.push(PollFd::new(chan.as_fd(), PollFlags::POLLIN));
        }
        let ours = fds.len();
        fds.extend(attach.poll_fds());
        // Kernels without memory.peak: sample memory.current twice a second for --stats.
        let timeout = match (pending.is_empty(), cgroup.is_some()) {
            (false, _) => PollTimeout::from(10u16),
            (true, true) => PollTimeout::from(500u16),
            (true, false) => PollTimeout::NONE,
        };
        if let Some(c) = cgroup {
            c.sample();
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(LaunchError::Sys("poll", e)),
        }
        let chan_ready = chan_open && fds[1].revents().is_some_and(|r| !r.is_empty());
        let events: Vec<PollFlags> = fds[ours..].iter().map(|f| f.revents().unwrap_or(PollFlags::empty())).collect();
        drop(fds);
        attach.service(&events);
        if chan_ready {
            chan_open = on_message(chan, attach, notice, &mut failure_seen);
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            if sig == Signal::SIGWINCH && attach.resize() {
                continue;
            }
            if sig != Signal::SIGCHLD && (signals::sent_by_process(info.ssi_code) || attach.forwards_terminal_signals())
            {
                pending.push(sig);
            }
        }
        attach.check_started(chan_open && readable(chan), failure_seen.is_some(), p1);
        if let Some(e) = attach.error.take() {
            // No terminal for the payload: stop the container (the guard kills P1) and say why.
            return Err(e.into());
        }
        if !pending.is_empty() {
            init = init.or_else(|| find_init(p1));
            if let Some(pid) = init {
                for sig in pending.drain(..) {
                    let _ = kill(pid, sig);
                }
            }
        }
        match waitpid(p1, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::Error::EINTR) => continue,
            Ok(status) => {
                if let Some(e) = failure_seen {
                    return Err(e);
                }
                return Ok(signals::exit_code(status).unwrap_or(125));
            }
            Err(e) => return Err(LaunchError::Sys("waitpid", e)),
        }
    }
}

/// Handles one message from the container's side; false once the channel is closed.
fn on_message(
    chan: &Channel,
    attach: &mut super::attach::Attach<'_>,
    notice: &mut dyn FnMut(String),
    failure_seen: &mut Option<LaunchError>,
) -> bool {
    match chan.recv_with_fds() {
        Ok((Some(Msg::Attach { terminal, watch }), fds)) => attach.take(terminal, watch, fds),
        Ok((Some(Msg::RootReady { notice: n, driver }), _)) => n
            .into_iter()
            .chain((!driver.is_empty()).then(|| format!("burrow: copy-on-write driver: {driver}")))
            .for_each(notice),
        Ok((Some(Msg::Notice { text }), _)) => notice(text),
        Ok((Some(m), _)) => {
            if failure_seen.is_none() {
                *failure_seen = failure(m);
            }
        }
        Ok((None, _)) | Err(_) => return false,
    }
    true
}

/// True when a message is waiting on the channel.
fn readable(chan: &Channel) -> bool {
    let mut fds = [nix::poll::PollFd::new(chan.as_fd(), nix::poll::PollFlags::POLLIN)];
    nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok_and(|n| n > 0)
}

/// After P1 exited: a failure message still queued on the channel wins over the exit code.
fn drain_failure(chan: &Channel) -> Option<LaunchError> {
    let mut fds = [nix::poll::PollFd::new(chan.as_fd(), nix::poll::PollFlags::POLLIN)];
    while nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok_and(|n| n > 0) {
        match chan.recv() {
            Ok(Some(m)) => {
                if let Some(e) = failure(m) {
                    return Some(e);
                }
            }
            _ => return None,
        }
    }
    None
}
