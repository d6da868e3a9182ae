//! The container's init, PID 1 of its PID namespace. Its whole job, in order:
//!
//! 1. die with P1 (`PR_SET_PDEATHSIG`, armed by `fork::fork_tied`), which takes every process of the namespace
//!    with it;
//! 2. start in a mount namespace of its own (P1 clones it so), so that `pivot_root` cannot move anything P1
//!    still uses;
//! 3. build the root filesystem from the mount plan and pivot into it;
//! 4. set the hostname and bring `lo` up;
//! 5. change to the working directory;
//! 6. start the payload (or become it with `--no-init`), then reap zombies and forward signals until the
//!    payload exits, and exit with its status.

use super::channel::Channel;
use super::child::Mapped;
use super::{child_exit, control, exec, report, signals, stdio, Step, StepError};
use crate::rootfs::{apply, plan};
use crate::spec::RunSpec;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

pub fn main(spec: &RunSpec, chan: Channel, mapped: Mapped, layer: Option<&std::path::Path>) -> ! {
    let reporter = match chan.try_clone() {
        Ok(c) => c,
        Err(e) => child_exit(report(&chan, "init", format!("dup the channel: {e}"), e.raw_os_error().unwrap_or(0))),
    };
    super::fork::contained(reporter, move || {
        // `burrow exec`'s way in: bound while the host's tree is still visible (see launch::control).
        let listener = match spec.control.as_deref().filter(|_| spec.init).map(control::listen).transpose() {
            Ok(l) => l,
            Err(e) => return e.report(&chan),
        };
        if listener.is_some() {
            // A payload with fewer capabilities must not ptrace init, or take its control socket through /proc.
            let _ = nix::sys::prctl::set_dumpable(false);
        }
        if let Err(e) = setup(spec, &chan, mapped, layer) {
            return e.report(&chan);
        }
        if spec.terminal.is_some() {
            // With a pty of its own the payload needs nothing of the user's terminal, and init keeps nothing of
            // it (before the fork, so that no process inside ever sees it).
            if let Err(e) = stdio::null_onto(&[0, 1, 2]) {
                return report(&chan, "terminal", format!("redirect init's stdio to /dev/null: {e}"), e as i32);
            }
        }
        super::fork::release_reporter();
        let payload = exec::Payload::of(spec, mapped);
        if !spec.init {
            become_payload(spec, &payload, &chan)
        }
        // init is suspended until the payload's process execs (or fails and exits): it has nothing to do before.
        let payload = crate::sys::spawn_shared(|| become_payload(spec, &payload, &chan));
        let payload = match payload {
            Ok(pid) => pid,
            Err(e) => return report(&chan, "init", format!("start the payload: {e}"), e.raw_os_error().unwrap_or(0)),
        };
        drop(chan);
        let control = listener.map(|l| control::Control::new(l, owner_inside(spec), exec::Payload::of(spec, mapped)));
        // Without -t the payload has a session of its own, out of the terminal's process group: init (still in
        // it) passes the terminal's signals on as well.
        reap(payload, !spec.hardening.controlling_tty, control)
    })
}

/// The payload's stdio (pty or /dev/null), then the exec stage shared with `burrow exec`. The pty and the start
/// watch are made here, in the payload's own process, so that init never holds them.
/// It runs in a process that shares init's memory (`sys::spawn_shared`): it only borrows init's values and ends
/// in execve or `child_exit`.
fn become_payload(spec: &RunSpec, payload: &exec::Payload, chan: &Channel) -> ! {
    let stdio = match stdio::prepare(spec.terminal, spec.watch_start, spec.interactive, chan) {
        Ok(s) => s,
        Err(e) => child_exit(e.report(chan)),
    };
    if let Err(e) = stdio::attach_payload(&stdio, payload.user) {
        child_exit(report(chan, "terminal", format!("attach the payload's terminal: {e}"), e as i32));
    }
    exec::payload(payload, chan)
}

fn setup(spec: &RunSpec, chan: &Channel, mapped: Mapped, layer: Option<&std::path::Path>) -> Result<(), StepError> {
    let ops = plan::plan(&plan_input(spec, mapped, layer));
    let notices = apply::enter(&ops).map_err(|e| StepError {
        stage: "mounts",
        what: e.what,
        source: Some(e.source),
        hint: e.hint,
    })?;
    for text in notices {
        let _ = chan.send(&super::msg::Msg::Notice { text });
    }
    nix::unistd::sethostname(&spec.hostname).step("uts", format!("sethostname {}", spec.hostname))?;
    if spec.own_netns {
        loopback_up()?;
        if spec.net_backend_dir().is_some() && !matches!(chan.recv(), Ok(Some(super::msg::Msg::NetReady))) {
            child_exit(125); // burrow gave up on the backend and says why itself
        }
        spec.net.configure_inside().map_err(|e| StepError::plain("network", e.to_string()))?;
    }
    nix::unistd::chdir(&spec.workdir).step("workdir", format!("workdir {}", spec.workdir.display()))
}

pub(super) fn plan_input(spec: &RunSpec, mapped: Mapped, layer: Option<&std::path::Path>) -> plan::Input {
    // devpts may name the tty group only when that gid exists in the namespace.
    let tty_mapped = spec.ids.gid_map.iter().any(|l| l.inside <= 5 && 5 - l.inside < l.count);
    // With a copy-on-write layer the root is its (writable) mount; the host-root default is layered by init
    // itself, directory by directory.
    let root = match (layer, &spec.host_layout) {
        (Some(m), _) => {
            let readonly = spec.overlay.as_ref().is_some_and(|o| o.readonly);
            plan::Root::Dir { path: m.to_path_buf(), writable: !readonly }
        }
        (None, Some(layout)) => plan::Root::HostLayered(layout.clone()),
        (None, None) => spec.root.clone(),
    };
    plan::Input {
        root,
        volumes: spec.volumes.clone(),
        tmpfs: spec.tmpfs.clone(),
        own_netns: spec.own_netns,
        tty_gid: (tty_mapped && mapped.setgroups_allowed).then_some(5),
        hostname: spec.hostname.clone(),
        hosts: spec.net.hosts(&spec.hostname),
        host_binds: spec.host_binds.clone(),
        home: spec.home.clone(),
        etc_files: vec![("/etc/resolv.conf".into(), spec.net.resolv_conf())],
        allow_setuid: !spec.hardening.no_new_privs,
        unmask: spec.hardening.unmask.clone(),
        // From the planned maps: when the helpers fail and the single-ID map is used instead, it holds less,
        // so this errs on the side of more read-only mounts.
        host_root_mapped: [&spec.ids.uid_map, &spec.ids.gid_map]
            .iter()
            .any(|map| map.iter().any(|l| l.outside == 0 && l.count > 0)),
    }
}

fn loopback_up() -> Result<(), StepError> {
    crate::sys::loopback_up().step("network", "bring lo up")
}

/// The uid inside the container of the user who started it (the only one `exec` accepts).
fn owner_inside(spec: &RunSpec) -> u32 {
    let host = spec.caller.uid;
    spec.ids
        .uid_map
        .iter()
        .find(|l| host >= l.outside && host - l.outside < l.count)
        .map(|l| l.inside + (host - l.outside))
        .unwrap_or(u32::MAX)
}

/// Forwards signals to the payload (with `relay_terminal`, the terminal's too) and reaps every child until the
/// payload exits; returns its exit code. With a control socket, also serves `burrow exec` (its commands are
/// init's children too).
fn reap(payload: Pid, relay_terminal: bool, mut control: Option<control::Control>) -> i32 {
    let sfd = match signals::signalfd() {
        Ok(sfd) => sfd,
        Err(_) => return wait_payload_blocking(payload),
    };
    loop {
        let mut fds = vec![nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&sfd), nix::poll::PollFlags::POLLIN)];
        fds.extend(control.as_ref().map(|c| c.poll_fds()).unwrap_or_default());
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE);
        let events: Vec<_> = fds[1..].iter().map(|f| f.revents().unwrap_or(nix::poll::PollFlags::empty())).collect();
        drop(fds);
        if let Some(c) = control.as_mut() {
            c.service(&events);
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            if sig != Signal::SIGCHLD && (relay_terminal || signals::sent_by_process(info.ssi_code)) {
                let _ = kill(payload, sig);
            }
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => break,
                Ok(status) if status.pid() == Some(payload) => return signals::exit_code(status).unwrap_or(125),
                Ok(status) => {
                    if let (Some(c), Some(pid), Some(code)) =
                        (control.as_mut(), status.pid(), signals::exit_code(status))
                    {
                        c.reaped(pid, code);
                    }
                }
                Err(nix::Error::EINTR) => continue,
                Err(_) => break,
            }
        }
    }
}

fn wait_payload_blocking(payload: Pid) -> i32 {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(status) if status.pid() == Some(payload) => {
                if let Some(code) = signals::exit_code(status) {
                    return code;
                }
            }
            Err(nix::Error::ECHILD) => return 125,
            _ => continue,
        }
    }
}
