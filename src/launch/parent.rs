//! P0, the user's own process: starts P1, writes its ID maps, then supervises the container — forwarding
//! signals to its init and turning the outcome into burrow's exit status.

use super::channel::{self, Channel, ChannelError};
use super::fork::{fork_tied, Tied};
use super::msg::Msg;
use super::{child, signals};
use crate::idmap::{self, IdPlan};
use crate::spec::RunSpec;
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
    #[error("burrow's namespace process (pid {pid}) {how} {during} without reporting why, and the container with it (killed directly, or by the OOM killer? see dmesg)")]
    Died { pid: i32, how: String, during: &'static str },
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    #[error(transparent)]
    Userns(#[from] crate::userns::UsernsError),
    #[error(transparent)]
    Terminal(#[from] crate::terminal::TerminalError),
}

/// What P0 prepared before the fork for the stages it runs on P1's behalf.
pub struct HostStages<'a> {
    pub cgroup: &'a crate::cgroup::Plan,
    /// Unique among running containers: names the systemd scope or cgroup.
    pub name: String,
    /// Where the user namespace comes from: P1's own, or one from the user-namespace keeper.
    pub userns: &'a crate::userns::Source,
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
pub(super) struct P1Guard(pub(super) Option<Pid>);

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
    if super::direct::eligible(spec, stages) {
        return super::direct::run(spec, stages, notice);
    }
    signals::block().map_err(|e| LaunchError::Sys("block signals", e))?;
    let (ours, theirs) = channel::pair()?;
    let p0 = nix::unistd::getpid();
    // P1 gets SIGTERM when P0 dies, reads it from its signalfd and takes the container down with it.
    let forked = fork_tied(Signal::SIGTERM);
    let p1 = match forked.map_err(|e| LaunchError::Sys("fork", nix::Error::from_raw(e.raw_os_error().unwrap_or(0))))? {
        Tied::Child => {
            drop(ours);
            child::main(spec, theirs, p0, (stages.userns.join_fd(), &stages.userns.join_others(), self_checked(stages)))
        }
        Tied::Parent(pid) => pid,
    };
    drop(theirs);
    // P1 holds its own copies of the published ports' host sockets, for its forwarder.
    spec.net.close_host_sockets();
    let mut guard = P1Guard(Some(p1));
    drive(spec, stages, &ours, (p1, &mut guard), notice).map_err(|e| settle(&ours, &mut guard, e))
}

/// The keeper's namespace when P1 checks its maps itself and goes on without waiting for `Go`:
/// with a namespace from the keeper (mapped already) and no cgroup to move P1 into first, P0 has nothing to do
/// between `Unshared` and `Go`.
fn self_checked<'a>(stages: &'a HostStages<'_>) -> Option<&'a crate::userns::Joined> {
    match stages.userns {
        crate::userns::Source::Join(j) if stages.cgroup.is_disabled() => Some(j),
        _ => None,
    }
}

/// Everything P0 does after the fork; any error is passed through [`settle`].
/// The guard holds P1 until it is reaped.
fn drive(
    spec: &RunSpec,
    stages: &HostStages<'_>,
    ours: &Channel,
    (p1, guard): (Pid, &mut P1Guard),
    notice: &mut dyn FnMut(String),
) -> Result<Outcome, LaunchError> {
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
    let go = self_checked(stages).is_none();
    let (single, (cgroup, starting)) = match stages.userns {
        // P1 checked the maps itself and did not wait.
        crate::userns::Source::Join(_) if !go => (false, meanwhile()?),
        // Already mapped by the keeper: only check that P1 got what the plan says.
        crate::userns::Source::Join(j) => {
            let setgroups = crate::userns::check_joined(p1.as_raw(), j.keeper, &spec.ids)?;
            (!setgroups, meanwhile()?)
        }
        crate::userns::Source::Own { .. } => write_maps(&spec.ids, p1.as_raw(), notice, meanwhile)?,
    };
    if let Some(attached) = &cgroup {
        attached.warnings().iter().for_each(|w| notice(format!("burrow: warning: {w}")));
    }
    let starting = if early_net { starting } else { spawn_net()? };
    if go {
        ours.send(if single { &Msg::GoSingle } else { &Msg::Go })?;
    }
    // The backend configures the namespace while P1 and init build the root filesystem; init waits for
    // NetReady before it touches the tap device.
    let network = starting.map(crate::net::Starting::wait).transpose()?;
    if network.is_some() {
        ours.send(&Msg::NetReady)?;
    }
    // The first run that mapped with the helpers starts a keeper while its container runs.
    if let (crate::userns::Source::Own { start: Some(start) }, false) = (stages.userns, single) {
        start_keeper(start, spec.verbose, notice);
    }
    // From here P0 only wakes for a signal, a failure, a notice or P1's exit: every wakeup on the way to the
    // payload costs a scheduling round trip on a busy machine.
    // A payload in a session of its own (no -t) no longer gets the terminal's signals; without burrow's init
    // nobody else in the terminal's process group passes them on.
    let relay_terminal = !spec.init && !spec.hardening.controlling_tty;
    let mut attach = super::attach::Attach::new(spec.interactive, stages.on_start);
    // P1 has work after init's end, or holds what must be released before burrow returns: a published port's
    // forwarder, the cgroup, a lifecycle record's lock, the terminal's session.
    let linger = cgroup.is_some()
        || spec.net.needs_state_dir()
        || !spec.net.published().is_empty()
        || spec.control.is_some()
        || spec.watch_start
        || spec.terminal.is_some();
    let mut ends = super::ends::Ends::new(p1);
    let code = supervise(ours, (p1, guard, &mut ends), (cgroup.as_ref(), linger), relay_terminal, notice, &mut attach);
    attach.finish();
    let code = code?;
    let stats = cgroup.as_ref().map(|c| c.stats());
    drop(cgroup);
    drop(network);
    match drain_failure(ours) {
        Some(e) => Err(e),
        None => Ok(Outcome { code, stats }),
    }
}

/// Decides which error the user sees when P0 fails after the fork. P0's own error is often only the
/// consequence of a child's failure: the child reported and exited, so P0's next send is EPIPE, or the network
/// helper found P1's namespace gone. Every child sends its `Failed` before it exits, and P0 only sees those
/// consequences after the exit, so the child's account is already queued on the channel: it wins. A channel
/// closed with nothing queued means a child died without a word (a signal, a crash): say that, with its status.
/// A P1 reaped here is taken from `guard` (its pid may be reused at once: the guard must not signal it).
fn settle(chan: &Channel, guard: &mut P1Guard, err: LaunchError) -> LaunchError {
    if let Some(reported) = drain_failure(chan) {
        return reported;
    }
    let silent = matches!(
        &err,
        LaunchError::Channel(ChannelError::Closed { .. })
            | LaunchError::Channel(ChannelError::Io(nix::Error::EPIPE | nix::Error::ECONNRESET))
    );
    if !silent {
        return err;
    }
    let Some(p1) = guard.0 else { return err };
    // Every copy of the channel is closed, so P1 is exiting: its status comes within moments.
    for _ in 0..100 {
        match waitpid(p1, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Ok(status) => {
                guard.0 = None;
                return LaunchError::Died { pid: p1.as_raw(), how: describe(status), during: "during setup" };
            }
            Err(_) => break,
        }
    }
    err
}

/// "exited with status N" or "was killed by SIGNAL".
fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        WaitStatus::Signaled(_, sig, core) => {
            format!("was killed by {sig}{}", if core { " (core dumped)" } else { "" })
        }
        other => format!("ended ({other:?})"),
    }
}

/// Starts the user-namespace keeper; a failure only costs later runs the helpers (said with --verbose).
fn start_keeper(start: &crate::userns::Start, verbose: bool, notice: &mut dyn FnMut(String)) {
    let begun = std::time::Instant::now();
    let said = match start.run() {
        Ok(Some(pid)) => format!("started the user-namespace keeper (pid {pid}) in {} µs", begun.elapsed().as_micros()),
        Ok(None) => "another run is starting the user-namespace keeper".into(),
        Err(e) => format!("warning: {e}"),
    };
    if verbose {
        notice(format!("burrow: {said}"));
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

/// Forwards signals to init and collects messages until the container ends (see [`super::ends`]); returns the
/// exit code. `linger`: wait for P1 too, not only for init. `p1` is init in a direct launch (no P1).
pub(super) fn supervise(
    chan: &Channel,
    (p1, guard, ends): (Pid, &mut P1Guard, &mut super::ends::Ends),
    (cgroup, linger): (Option<&crate::cgroup::Attached>, bool),
    relay_terminal: bool,
    notice: &mut dyn FnMut(String),
    attach: &mut super::attach::Attach<'_>,
) -> Result<i32, LaunchError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let sfd = signals::signalfd().map_err(|e| LaunchError::Sys("signalfd", e))?;
    let mut heard = Heard::default();
    let mut chan_open = true;
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
            chan_open = on_message(chan, attach, notice, &mut heard);
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            if sig == Signal::SIGCHLD {
                ends.heard_from(info.ssi_pid as i32);
            }
            if sig == Signal::SIGWINCH && attach.resize() {
                continue;
            }
            let from_terminal = relay_terminal || attach.forwards_terminal_signals();
            if sig != Signal::SIGCHLD && (signals::sent_by_process(info.ssi_code) || from_terminal) {
                pending.push(sig);
            }
        }
        attach.check_started(chan_open && readable(chan), heard.failure.is_some(), p1);
        if let Some(e) = attach.error.take() {
            // No terminal for the payload: stop the container (the guard kills P1) and say why.
            return Err(e.into());
        }
        if !pending.is_empty() {
            if let Some(init) = ends.init() {
                for sig in pending.drain(..) {
                    let _ = init.signal(sig);
                }
            }
        }
        let (status, from_p1) = match ends.check(guard, linger || heard.linger)? {
            super::ends::End::Running => continue,
            // A signal that killed init (`burrow kill -s KILL`) is the container's 128+N, as before.
            super::ends::End::Init(status) => (status, false),
            super::ends::End::P1(status) => (status, true),
        };
        // What P1 and init sent before they ended (an Attach, a failure) is still to be read.
        while chan_open && readable(chan) {
            chan_open = on_message(chan, attach, notice, &mut heard);
        }
        attach.settle(heard.failure.is_some(), p1);
        if let Some(e) = heard.failure {
            return Err(e);
        }
        // P1 ends by exiting (with init's status on kernels without clone3); a signal reaches it only from outside
        // (it blocks the forwarded ones): that is not the payload's status.
        if let (WaitStatus::Signaled(..), true) = (status, from_p1) {
            let how = describe(status);
            return Err(LaunchError::Died { pid: p1.as_raw(), how, during: "while the container ran" });
        }
        return Ok(signals::exit_code(status).unwrap_or(125));
    }
}

/// What P0 heard on the channel while the container ran.
#[derive(Default)]
struct Heard {
    /// The first failure reported.
    failure: Option<LaunchError>,
    /// P1 has work after init's end (a FUSE server to stop): wait for it too.
    linger: bool,
}

/// Handles one message from the container's side; false once the channel is closed.
fn on_message(
    chan: &Channel,
    attach: &mut super::attach::Attach<'_>,
    notice: &mut dyn FnMut(String),
    heard: &mut Heard,
) -> bool {
    let failure_seen = &mut heard.failure;
    match chan.recv_with_fds() {
        Ok((Some(Msg::Attach { terminal, watch }), fds)) => attach.take(terminal, watch, fds),
        Ok((Some(Msg::RootReady { notice: n, driver, linger }), _)) => {
            heard.linger |= linger;
            super::layers::notices(n, &driver).for_each(notice)
        }
        Ok((Some(Msg::Notice { text }), _)) => notice(text),
        Ok((Some(m), _)) => {
            if failure_seen.is_none() {
                *failure_seen = failure(m);
            }
        }
        // A message that does not decode is a bug worth reporting, not a reason to stop listening.
        Err(e @ ChannelError::Decode(_)) => {
            if failure_seen.is_none() {
                *failure_seen = Some(e.into());
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
pub(super) fn drain_failure(chan: &Channel) -> Option<LaunchError> {
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
