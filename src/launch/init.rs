//! The container's init, PID 1 of its PID namespace. Its whole job, in order:
//!
//! 1. die with P1 (`PR_SET_PDEATHSIG`), which takes every process of the namespace with it;
//! 2. enter a mount namespace of its own, so that `pivot_root` cannot move anything P1 still uses;
//! 3. build the root filesystem from the mount plan and pivot into it;
//! 4. set the hostname and bring `lo` up;
//! 5. change to the working directory;
//! 6. start the payload (or become it with `--no-init`), then reap zombies and forward signals until the
//!    payload exits, and exit with its status.

use super::channel::Channel;
use super::child::Mapped;
use super::{child_exit, exec, report, signals, Step, StepError};
use crate::rootfs::{apply, plan};
use crate::spec::RunSpec;
use crate::sys::{fork, Forked};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

pub fn main(spec: &RunSpec, chan: Channel, mapped: Mapped, layer: Option<&std::path::Path>) -> ! {
    if let Err(e) = setup(spec, &chan, mapped, layer) {
        child_exit(report(&chan, e.stage, e.to_string(), e.source.raw_os_error().unwrap_or(0)));
    }
    let payload = exec::Payload::of(spec, mapped);
    if !spec.init {
        exec::payload(&payload, &chan)
    }
    let payload = match fork() {
        Ok(Forked::Child) => exec::payload(&payload, &chan),
        Ok(Forked::Parent(pid)) => pid,
        Err(e) => child_exit(report(&chan, "init", format!("fork the payload: {e}"), e.raw_os_error().unwrap_or(0))),
    };
    drop(chan);
    child_exit(reap(payload))
}

fn setup(spec: &RunSpec, chan: &Channel, mapped: Mapped, layer: Option<&std::path::Path>) -> Result<(), StepError> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).step("init", "prctl(PR_SET_PDEATHSIG)")?;
    unshare(CloneFlags::CLONE_NEWNS).step("mounts", "unshare(mount)")?;
    let ops = plan::plan(&plan_input(spec, mapped, layer));
    apply::enter(&ops).map_err(|e| StepError { stage: "mounts", what: e.what, source: e.source, hint: e.hint })?;
    nix::unistd::sethostname(&spec.hostname).step("uts", format!("sethostname {}", spec.hostname))?;
    if spec.own_netns {
        loopback_up()?;
        if spec.net_backend_dir().is_some() && !matches!(chan.recv(), Ok(Some(super::msg::Msg::NetReady))) {
            child_exit(125); // burrow gave up on the backend and says why itself
        }
        spec.net.configure_inside().map_err(|e| StepError {
            stage: "network",
            what: e.to_string(),
            source: std::io::Error::from_raw_os_error(libc::EIO),
            hint: String::new(),
        })?;
    }
    nix::unistd::chdir(&spec.workdir).step("workdir", format!("workdir {}", spec.workdir.display()))
}

fn plan_input(spec: &RunSpec, mapped: Mapped, layer: Option<&std::path::Path>) -> plan::Input {
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
        etc_files: vec![("/etc/resolv.conf".into(), spec.net.resolv_conf())],
    }
}

fn loopback_up() -> Result<(), StepError> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .step("network", "socket for lo")?;
    crate::sys::interface_up(std::os::fd::AsFd::as_fd(&sock), "lo").step("network", "bring lo up")
}

/// Forwards signals to the payload and reaps every child until the payload exits; returns its exit code.
fn reap(payload: Pid) -> i32 {
    let sfd = match signals::signalfd() {
        Ok(sfd) => sfd,
        Err(_) => return wait_payload_blocking(payload),
    };
    let mut fds = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&sfd), nix::poll::PollFlags::POLLIN)];
    loop {
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE);
        while let Ok(Some(info)) = sfd.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            if sig != Signal::SIGCHLD && signals::sent_by_process(info.ssi_code) {
                let _ = kill(payload, sig);
            }
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => break,
                Ok(status) if status.pid() == Some(payload) => return signals::exit_code(status).unwrap_or(125),
                Ok(_) | Err(nix::Error::EINTR) => continue,
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
