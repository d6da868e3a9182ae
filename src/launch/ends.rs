//! How P0 learns that the container ended. P1 clones the container's init with `CLONE_PARENT`, so init is P0's
//! own child: its exit wakes P0 directly, instead of waking P1, which would then exit and wake P0 (one
//! scheduling round trip less on the critical path, docs/design/launch-sequence.md). P1 watches init through a
//! pidfd and exits once init has; P0 waits for it only when P1 still has work after init's end (a FUSE server to
//! stop, a forwarder to drain, a cgroup to empty, a lifecycle record whose lock P1 holds too). In a direct launch
//! (`super::direct`) there is no P1: init is P0's own child from the start, and so is the FUSE server, if any.

use super::parent::{LaunchError, P1Guard};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::OwnedFd;

/// The container's init, once found.
struct Found {
    /// Signalled through its pidfd (through its pid only when a direct launch's init has none: kernels before
    /// 5.3, where it is P0's unreaped child, so its pid cannot be reused).
    child: super::fork::Child,
    /// P0's child (cloned with CLONE_PARENT), rather than P1's (kernels without clone3).
    ours: bool,
}

/// The container's two processes, as P0 sees them (init alone in a direct launch, with its FUSE server if any).
pub(super) struct Ends {
    p1: Option<Pid>,
    /// A direct launch's FUSE overlay server, P0's child (cleared once reaped).
    server: Option<Pid>,
    p1_status: Option<WaitStatus>,
    init: Option<Found>,
    init_status: Option<WaitStatus>,
    /// The child a SIGCHLD named (`ssi_pid`): when it is not P1 it is most likely init, checked alone instead of
    /// scanning P0's children in /proc (the end of every run: ~10 /proc reads less on its critical path).
    hint: Option<Pid>,
}

/// What [`Ends::check`] found.
pub(super) enum End {
    Running,
    /// init (P0's child) ended: the container's outcome.
    Init(WaitStatus),
    /// P1 ended and no init of P0's is left: its status is the outcome (a failure before init, or init was P1's
    /// child and P1 exited with its status), or P1 was killed from outside and init with it.
    P1(WaitStatus),
}

impl Ends {
    pub fn new(p1: Pid) -> Ends {
        Ends { p1: Some(p1), server: None, p1_status: None, init: None, init_status: None, hint: None }
    }

    /// A direct launch (`super::direct`): init is P0's child, known from the start; `server`, the FUSE overlay
    /// server P0 started, if any.
    pub fn direct(init: super::fork::Child, server: Option<Pid>) -> Ends {
        let init = Some(Found { child: init, ours: true });
        Ends { p1: None, server, p1_status: None, init, init_status: None, hint: None }
    }

    /// init, to forward signals to (None until it exists).
    pub fn init(&mut self) -> Option<&super::fork::Child> {
        self.find();
        self.init.as_ref().map(|f| &f.child)
    }

    /// A SIGCHLD from this child (its `ssi_pid`, in P0's PID namespace). Signals of one kind coalesce while
    /// pending, so another child may have changed state too: the hint only decides where to look first.
    pub fn heard_from(&mut self, pid: i32) {
        if pid > 0 && Some(pid) != self.p1.map(Pid::as_raw) {
            self.hint = Some(Pid::from_raw(pid));
        }
    }

    /// Looks for init: the child a SIGCHLD named, else among P0's children, then P1's: a few /proc reads, done
    /// only when P0 is awake anyway.
    fn find(&mut self) {
        if let (None, Some(pid)) = (&self.init, self.hint.take()) {
            let me = nix::unistd::getpid();
            self.init = is_init(pid, me).map(|fd| Found::new(pid, fd, true));
        }
        if self.init.is_none() {
            let ours = find_init(nix::unistd::getpid()).map(|(pid, fd)| Found::new(pid, fd, true));
            let theirs = || find_init(self.p1?).map(|(pid, fd)| Found::new(pid, fd, false));
            self.init = ours.or_else(theirs);
        }
    }

    /// Reaps whatever has exited and says whether the container has ended. `linger`: wait for P1 as well.
    /// P1 reaped is taken from its guard (its pid may be reused at once); P1 left running when the container
    /// ended without `linger` is taken from it too: it is exiting by itself and must not be waited for.
    /// A direct launch's FUSE server that died before init is an error: the container is killed (its programs
    /// would only see ENOTCONN) and reaped.
    pub fn check(&mut self, guard: &mut P1Guard, linger: bool) -> Result<End, LaunchError> {
        self.check_server()?;
        if let (None, Some(p1)) = (self.p1_status, self.p1) {
            match waitpid(p1, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(nix::Error::EINTR) => {}
                Ok(status) => {
                    guard.0 = None;
                    self.p1_status = Some(status);
                }
                Err(e) => return Err(LaunchError::Sys("waitpid", e)),
            }
        }
        self.find();
        if let (Some(f), None) = (self.init.as_ref().filter(|f| f.ours), self.init_status) {
            match waitpid(f.child.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(nix::Error::EINTR) => {}
                Ok(status) => self.init_status = Some(status),
                Err(e) => return Err(LaunchError::Sys("waitpid", e)),
            }
        }
        let init = self.init.as_ref().filter(|f| f.ours);
        Ok(match (self.init_status, self.p1_status, init) {
            (Some(_), None, _) if linger => End::Running,
            (Some(status), _, Some(_)) => {
                guard.0 = None;
                End::Init(status)
            }
            (None, Some(p1 @ WaitStatus::Signaled(..)), Some(f)) => {
                // P1 killed from outside: init (tied to P0, not to P1) is stopped here.
                let _ = f.child.signal(Signal::SIGKILL);
                let _ = waitpid(f.child.pid, None);
                End::P1(p1)
            }
            // P1 exits after init only; init's exit is about to be seen.
            (None, Some(_), Some(_)) => End::Running,
            (_, Some(p1), _) => End::P1(p1),
            _ => End::Running,
        })
    }

    /// A direct launch that fails after init was forked: init is killed and reaped (once: a reaped pid may be
    /// reused), and the FUSE server with it.
    pub fn abandon(&mut self) {
        if let (Some(f), None) = (self.init.as_ref().filter(|f| f.ours), self.init_status) {
            let _ = f.child.signal(Signal::SIGKILL);
            if let Ok(status) = waitpid(f.child.pid, None) {
                self.init_status = Some(status);
            }
        }
        self.stop_server();
    }

    /// Kills and reaps a direct launch's FUSE server, if it still runs.
    pub fn stop_server(&mut self) {
        if let Some(pid) = self.server.take() {
            super::layers::stop_server(pid);
        }
    }

    fn check_server(&mut self) -> Result<(), LaunchError> {
        let Some(pid) = self.server else { return Ok(()) };
        if matches!(waitpid(pid, Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::StillAlive) | Err(nix::Error::EINTR)) {
            return Ok(());
        }
        self.server = None; // reaped: its pid may be reused
        if self.init_status.is_some() {
            return Ok(()); // the container had ended already
        }
        self.abandon();
        Err(LaunchError::Child {
            stage: "overlay".into(),
            message: format!("the FUSE overlay server (pid {pid}) died; the container was stopped"),
        })
    }
}

impl Found {
    fn new(pid: Pid, fd: OwnedFd, ours: bool) -> Found {
        Found { child: super::fork::Child::with_pidfd(pid, fd), ours }
    }
}

/// The container's init: a child of `parent` in another PID namespace (P0's, cloned by P1 with `CLONE_PARENT`;
/// P1's on kernels without clone3, where P1's other children, the FUSE server and the port forwarder, are in
/// ours). Looked up only when needed (a signal to forward, a child's exit), so that nobody wakes P0 to say it.
/// Returned with a pidfd, opened first and checked after: a pid number read from /proc may be reused by the
/// time it is signalled, a pidfd that still names a child of `parent` in another PID namespace cannot.
pub fn find_init(parent: Pid) -> Option<(Pid, OwnedFd)> {
    let candidates: Vec<i32> = match std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")) {
        Ok(children) => children.split_whitespace().filter_map(|p| p.parse().ok()).collect(),
        // Kernels without CONFIG_PROC_CHILDREN: look for the children by their parent pid.
        Err(_) => std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|p| parent_of(*p) == Some(parent.as_raw()))
            .collect(),
    };
    candidates.into_iter().map(Pid::from_raw).find_map(|pid| is_init(pid, parent).map(|fd| (pid, fd)))
}

/// A pidfd of `pid` if it is init: a child of `parent` that is PID 1 of its own PID namespace (the last NSpid
/// of /proc/PID/status is 1, and no child of `parent` can be PID 1 of its parent's namespace; the status file
/// stays readable when init made itself non-dumpable, which hides its /proc/PID/ns). One /proc read; the pidfd
/// is opened first, so the pid checked is the one the pidfd names.
fn is_init(pid: Pid, parent: Pid) -> Option<OwnedFd> {
    let fd = super::fork::pidfd(pid).ok()?;
    let status = crate::sys::read_proc(&format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::split_whitespace);
    let ppid = field("PPid:")?.next()?.parse::<i32>().ok()?;
    let nspid: Vec<&str> = field("NSpid:")?.collect();
    (ppid == parent.as_raw() && nspid.len() > 1 && nspid.last() == Some(&"1")).then_some(fd)
}

/// The parent pid in /proc/PID/stat (the field after the command name, which may contain spaces).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = crate::sys::read_proc(&format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}
