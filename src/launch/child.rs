//! P1: creates the namespaces, waits for P0 to map its IDs, then starts the container's init as PID 1 of a new
//! PID namespace and waits for it. It stays outside the container's PID namespace so that it can clean up:
//! when P0 dies (even of SIGKILL) P1 gets SIGTERM through `PR_SET_PDEATHSIG` and kills the whole container.

use super::channel::Channel;
use super::fork::{fork_tied, Tied};
use super::msg::Msg;
use super::{child_exit, init, layers, report, signals, Step, StepError};
use crate::spec::RunSpec;
use nix::mount::MsFlags;
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::{getppid, Pid};
use std::os::fd::{AsFd, BorrowedFd};

/// What P0 tells P1 with `Go`.
#[derive(Clone, Copy, Debug)]
pub struct Mapped {
    /// setgroups(2) is allowed (maps written by the helpers) rather than denied (single-ID map).
    pub setgroups_allowed: bool,
}

/// `userns`: a user namespace from the keeper to join instead of unsharing one, and the network, UTS and IPC
/// namespaces it owns that came with it.
pub fn main(spec: &RunSpec, chan: Channel, p0: Pid, userns: Joining<'_>) -> ! {
    let reporter = match chan.try_clone() {
        Ok(c) => c,
        Err(e) => child_exit(StepError::sys("init", "dup the channel", e).report(&chan)),
    };
    super::fork::contained(reporter, || match run(spec, chan, p0, userns) {
        Ok(code) => code,
        Err((chan, e)) => e.report(&chan),
    })
}

type Failure = (Channel, StepError);

/// A user namespace to join, namespaces it owns to join after it, and, when P1 checks the joined namespace's
/// maps itself and goes on without waiting for `Go`, what the keeper was asked for.
pub type Joining<'a> = (Option<BorrowedFd<'a>>, &'a [BorrowedFd<'a>], Option<&'a crate::userns::Joined>);

fn run(spec: &RunSpec, chan: Channel, p0: Pid, (userns, others, self_check): Joining<'_>) -> Result<i32, Failure> {
    macro_rules! t {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => return Err((chan, e)),
            }
        };
    }
    t!(enter_namespaces(spec, userns, others));
    let mapped = match self_check {
        // The keeper's namespace is mapped already and P0 has nothing to do before P1 goes on (no cgroup to
        // move P1 into): P1 checks the maps against the plan itself rather than waiting for P0 to check them
        // and say Go (a round trip through P0 on the way to the payload). P0 still reads Unshared.
        Some(joined) => {
            let mapped = t!(check_joined(joined));
            t!(chan.send(&Msg::Unshared).map_err(chan_err));
            mapped
        }
        None => {
            t!(chan.send(&Msg::Unshared).map_err(chan_err));
            match chan.recv() {
                Ok(Some(Msg::Go)) => Mapped { setgroups_allowed: true },
                Ok(Some(Msg::GoSingle)) => Mapped { setgroups_allowed: false },
                Ok(_) | Err(_) => return Ok(125), // P0 gave up and reports why itself
            }
        }
    };
    // The cgroup namespace comes after P0 placed us in the container's cgroup, so that it becomes its root.
    t!(unshare(CloneFlags::CLONE_NEWCGROUP).step("namespaces", "unshare(cgroup)"));
    // The backend may still be configuring the tap device: a connection that arrives before the payload listens
    // is refused either way. Forked before anything else, so that neither the FUSE server nor init inherits the
    // host sockets; it dies with P1 (dropped below).
    let mut forwarder = t!(spec.net.start_forwarder().map_err(net_err));
    let mut layer = t!(root_layer(spec, mapped, &chan));
    layers::report(&layer, &chan, spec.verbose);
    // The FUSE server above stays outside the container's PID namespace, which starts with init.
    let init = match fork_init(Some(p0)) {
        Ok(Some(init)) => init,
        Ok(None) => init::main(spec, chan, mapped, layer.mountpoint.as_deref()),
        Err(e) => {
            layers::cleanup(spec, &layer, true);
            return Err((chan, StepError::sys("init", "fork the container's init", e)));
        }
    };
    let code = wait_for_init(&init, p0, &mut layer.server, forwarder.as_mut(), &chan);
    // init's mount namespace is torn down here, after init's exit has woken P0 (see fork_init).
    drop(init);
    // Before the FUSE server goes: the forwarder passes on the container's last bytes first.
    if let Some(f) = forwarder {
        f.stop();
    }
    // With burrow alive, the mounts go with this process's namespace and burrow removes the state directory.
    let orphaned = getppid() != p0;
    layers::cleanup(spec, &layer, orphaned);
    if orphaned {
        // burrow itself is gone: nobody else will remove the state directory.
        if let Some(dir) = &spec.state_dir {
            crate::state::remove_tree(dir);
        }
    }
    Ok(code)
}

/// Joins the keeper's user namespace (`userns`) and the namespaces it owns that came with it (`others`), or
/// unshares a new user namespace, then unshares the mount, UTS, IPC (and, with a network of its own, network)
/// namespaces not joined. The caller must be single-threaded (setns into a user namespace requires it).
pub(super) fn enter_namespaces(
    spec: &RunSpec,
    userns: Option<BorrowedFd<'_>>,
    others: &[BorrowedFd<'_>],
) -> Result<(), StepError> {
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    match userns {
        // Mapped already, nested in the keeper's and for this container alone.
        Some(fd) => setns(fd, CloneFlags::CLONE_NEWUSER).step("namespaces", "setns(user namespace from the keeper)")?,
        None => flags |= CloneFlags::CLONE_NEWUSER,
    }
    if spec.own_netns {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    // Namespaces the keeper made with the user namespace (fresh, unused: the client checked that they are owned
    // by it), joined rather than created on this run's critical path.
    // Only with a joined user namespace are there any (`Source::join_others`).
    for fd in others {
        let kind = CloneFlags::from_bits_truncate(crate::sys::ns::ns_type(*fd).step("namespaces", "NS_GET_NSTYPE")?);
        if flags.contains(kind) && kind != CloneFlags::CLONE_NEWUSER {
            setns(fd, kind).step("namespaces", "setns(a namespace from the keeper)")?;
            flags.remove(kind);
        }
    }
    unshare(flags).step("namespaces", "unshare(user, mount, uts, ipc, net)").map_err(userns_hint)
}

/// Checks the maps of the keeper's namespace just joined against what was asked for (`userns::check_self`).
pub(super) fn check_joined(joined: &crate::userns::Joined) -> Result<Mapped, StepError> {
    let setgroups = crate::userns::check_self(joined).map_err(|e| StepError::plain("namespaces", e.to_string()))?;
    Ok(Mapped { setgroups_allowed: setgroups })
}

/// Makes every mount private (nothing mounted from here on may propagate anywhere) and mounts the
/// copy-on-write layer, in the caller's mount namespace, which init's is cloned from.
pub(super) fn root_layer(spec: &RunSpec, mapped: Mapped, chan: &Channel) -> Result<layers::Layer, StepError> {
    nix::mount::mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .step("mounts", "make / private")?;
    layers::mount(spec, mapped, chan)
}

/// What the user (or the administrator) can do when the namespaces cannot be created.
fn userns_hint(mut e: StepError) -> StepError {
    e.hint = match e.errno() {
        libc::ENOSPC | libc::EUSERS => {
            " (the limit of user namespaces is reached: raise it as root with `sysctl user.max_user_namespaces=N`)"
        }
        libc::EPERM | libc::EACCES => {
            " (unprivileged user namespaces are disabled here: as root, `sysctl kernel.unprivileged_userns_clone=1`, \
             or on Ubuntu `kernel.apparmor_restrict_unprivileged_userns=0`; `burrow doctor` checks it)"
        }
        _ => "",
    }
    .into();
    e
}

fn net_err(e: crate::net::NetError) -> StepError {
    match e {
        crate::net::NetError::Forwarder { what, source } => {
            StepError::sys("network", format!("start burrow's port forwarder: {what}"), source)
        }
        e => StepError::plain("network", e.to_string()),
    }
}

fn chan_err(e: super::channel::ChannelError) -> StepError {
    StepError::plain("sync", format!("send to burrow: {e}"))
}

/// The container's init as its forker (P1, or P0 in a direct launch) sees it.
pub(super) struct Init {
    pub child: super::fork::Child,
    /// The forker's own child (a direct launch, or kernels without clone3), rather than P0's.
    pub ours: bool,
    /// init's mount namespace, held until init has exited (see [`fork_init`]).
    pub mounts: Option<std::os::fd::OwnedFd>,
}

/// Forks the container's init (None in init), PID 1 of a new PID namespace and in a mount namespace of its own
/// (a copy of the caller's). Forked by P1 (`sibling_of` is P0), it is P0's child, not P1's (`CLONE_PARENT`): at
/// the end P0 is woken by init's exit directly, not through P1's, and init dies with P0 (SIGKILL), which takes
/// the whole PID namespace with it. In a direct launch (no `sibling_of`) P0 forks it as its own child.
/// The forker holds init's mount namespace: init's exit then only drops a reference to it, and the namespace's
/// teardown (every mount of the container unmounted, an expedited RCU grace period) happens when the forker
/// lets it go, after P0 was woken, rather than on the way to P0. On kernels without clone3 init is the
/// forker's child, dies with it and unshares its mount namespace itself, as before.
pub(super) fn fork_init(sibling_of: Option<Pid>) -> std::io::Result<Option<Init>> {
    use super::fork::{fork_pidfd_tied, Pidfd};
    match fork_pidfd_tied(Signal::SIGKILL, libc::CLONE_NEWPID | libc::CLONE_NEWNS, sibling_of) {
        Ok(Pidfd::Parent(child)) => {
            // Before 6.11 (no such ioctl) the teardown stays in init's exit: nothing else changes.
            let mounts = child.pidfd().and_then(|fd| crate::sys::pidfd_mnt_namespace(fd.as_fd()).ok());
            return Ok(Some(Init { child, ours: sibling_of.is_none(), mounts }));
        }
        Ok(Pidfd::Child) => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
        Err(e) => return Err(e),
    }
    unshare(CloneFlags::CLONE_NEWPID)?;
    match fork_tied(Signal::SIGKILL)? {
        Tied::Child => {
            unshare(CloneFlags::CLONE_NEWNS)?;
            Ok(None)
        }
        Tied::Parent(pid) => Ok(Some(Init { child: super::fork::Child::of(pid), ours: true, mounts: None })),
    }
}

/// Waits for init to end; kills the container when P0 is gone or the FUSE server died (then `server` is
/// cleared). Returns init's status as an exit code when init is P1's child, else 0 (P0 reaps init).
fn wait_for_init(
    init: &Init,
    p0: Pid,
    server: &mut Option<Pid>,
    mut forwarder: Option<&mut crate::net::Forwarder>,
    chan: &Channel,
) -> i32 {
    use nix::poll::{PollFd, PollFlags};
    let sfd = match (signals::signalfd(), init.ours) {
        (Ok(sfd), _) => sfd,
        (Err(_), true) => return wait_blocking(init.child.pid),
        // P0 reaps init and gets its status: only its end matters here.
        (Err(_), false) => return wait_exit(&init.child),
    };
    let init_fd = init.child.pidfd().filter(|_| !init.ours);
    loop {
        let mut fds = vec![PollFd::new(std::os::fd::AsFd::as_fd(&sfd), PollFlags::POLLIN)];
        fds.extend(init_fd.map(|fd| PollFd::new(std::os::fd::AsFd::as_fd(fd), PollFlags::POLLIN)));
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE);
        let init_ended = fds.get(1).and_then(PollFd::revents).is_some_and(|r| !r.is_empty());
        drop(fds);
        let init = &init.child;
        while let Ok(Some(info)) = sfd.read_signal() {
            if info.ssi_signo == Signal::SIGTERM as u32 && getppid() != p0 {
                let _ = init.signal(Signal::SIGKILL);
            }
        }
        if let Some(pid) = *server {
            if !matches!(waitpid(pid, Some(WaitPidFlag::WNOHANG)), Ok(nix::sys::wait::WaitStatus::StillAlive)) {
                *server = None; // reaped: cleanup must not signal its pid, which may be reused
                let message = format!("the FUSE overlay server (pid {pid}) died; the container was stopped");
                report(chan, "overlay", message, libc::ENOTCONN);
                let _ = init.signal(Signal::SIGKILL);
            }
        }
        if let Some(f) = forwarder.as_deref_mut() {
            if let Some(how) = f.exited() {
                // The container goes on (its own work is unaffected); its published ports no longer reach it.
                let pid = f.pid();
                let text = format!(
                    "burrow: warning: the port forwarder (pid {pid}) {how}; published ports no longer reach the container"
                );
                let _ = chan.send(&Msg::Notice { text });
            }
        }
        if init_fd.is_some() {
            if init_ended {
                return 0;
            }
            continue;
        }
        match waitpid(init.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(nix::sys::wait::WaitStatus::StillAlive) => continue,
            Ok(status) => return signals::exit_code(status).unwrap_or(125),
            Err(nix::Error::EINTR) => continue,
            Err(_) => return 125,
        }
    }
}

/// Blocks until a process that is not P1's child has exited (its pidfd becomes readable).
fn wait_exit(init: &super::fork::Child) -> i32 {
    if let Some(fd) = init.pidfd() {
        let mut fds = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(fd), nix::poll::PollFlags::POLLIN)];
        // Only an interrupted wait is retried: any other error would repeat at once, forever.
        while let Err(nix::Error::EINTR) = nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {}
    }
    0
}

fn wait_blocking(pid: Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Ok(status) => {
                if let Some(code) = signals::exit_code(status) {
                    return code;
                }
            }
            Err(nix::Error::EINTR) => continue,
            Err(_) => return 125,
        }
    }
}
