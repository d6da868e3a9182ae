//! P1's root-filesystem stage: the copy-on-write layer over the container's root, mounted in P1's mount
//! namespace (so init's namespace, copied from it, sees it) before the container's PID namespace exists.
//!
//! The kernel driver is a single mount(2). The FUSE driver is a server process, P1's child, outside the
//! container's PID namespace (the container cannot see or signal it); it dies with P1 and P1 watches it: if it
//! dies first, the container is killed and the failure reported (programs would only see ENOTCONN).

use super::channel::Channel;
use super::child::Mapped;
use super::fork::{fork_tied, Tied};
use super::msg::Msg;
use super::{Step, StepError};
use crate::cli::OverlayDriver;
use crate::overlay::{self, OverlayConfig};
use crate::rootfs::plan::Root;
use crate::rootfs::upper;
use crate::spec::{OverlayPaths, RunSpec};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::fd::OwnedFd;

/// What P1 mounted.
#[derive(Debug, Default)]
pub struct Layer {
    /// Where the writable root is, when a copy-on-write layer was mounted.
    pub mountpoint: Option<std::path::PathBuf>,
    /// The FUSE server, when that driver serves it.
    pub server: Option<Pid>,
    /// "kernel", "fuse" or "none", and a notice for the user, reported to P0.
    pub driver: &'static str,
    pub notice: Option<String>,
}

fn config(spec: &RunSpec, paths: &OverlayPaths) -> OverlayConfig {
    let lowers = match &spec.root {
        Root::Dir { path, .. } => vec![path.clone()],
        Root::Image { lowers } => lowers.clone(),
        Root::Host | Root::HostLayered(_) => vec!["/".into()],
    };
    OverlayConfig { lowers, upper: paths.upper.clone(), work: paths.work.clone() }
}

/// The overlay's error with the system call's error behind it (its own text does not include it).
fn overlay_err(e: overlay::OverlayError) -> StepError {
    let (what, source) = crate::rootfs::overlay_error_parts(e);
    StepError { stage: "overlay", what, source, hint: String::new() }
}

/// Mounts the copy-on-write layer the spec asks for (nothing when it asks for none).
pub fn mount(spec: &RunSpec, mapped: Mapped, chan: &Channel) -> Result<Layer, StepError> {
    if spec.host_layout.is_some() {
        // The host-root default: init layers it directory by directory (rootfs::host).
        return Ok(Layer { driver: "kernel", ..Layer::default() });
    }
    let Some((ov, Some(paths))) = spec.overlay.as_ref().map(|o| (o, o.paths.as_ref())) else {
        return Ok(Layer { driver: "none", ..Layer::default() });
    };
    if let Some(tmpfs) = &paths.tmpfs {
        let flags = nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV;
        nix::mount::mount(Some("tmpfs"), tmpfs, Some("tmpfs"), flags, Some("mode=0700"))
            .step("overlay", format!("mount the layer's tmpfs on {}", tmpfs.display()))?;
        // The mount point too when it is in the tmpfs (no state directory: `run::private_layer_paths`).
        for dir in [&paths.upper, &paths.work, &paths.mountpoint].into_iter().filter(|d| d.starts_with(tmpfs)) {
            std::fs::create_dir(dir).step("overlay", format!("mkdir {}", dir.display()))?;
        }
    }
    let cfg = config(spec, paths);
    prepare_mount_points(spec, mapped, &cfg, paths)?;
    let kernel = || overlay::kernel::mount(&cfg, &paths.mountpoint).map_err(overlay_err);
    let mounted = |driver, server| Layer { mountpoint: Some(paths.mountpoint.clone()), server, driver, notice: None };
    match ov.driver {
        OverlayDriver::Kernel => kernel().map(|()| mounted("kernel", None)),
        OverlayDriver::Fuse => serve_fuse(&cfg, paths, chan).map(|pid| mounted("fuse", Some(pid))),
        OverlayDriver::Auto => match kernel() {
            Ok(()) => Ok(mounted("kernel", None)),
            Err(_) => serve_fuse(&cfg, paths, chan).map(|pid| mounted("fuse", Some(pid))),
        },
    }
}

/// Creates the mount points the lower layers lack in the upper directory, where the container's root may write
/// even when it may not write the lower tree (see `rootfs::upper`).
fn prepare_mount_points(
    spec: &RunSpec,
    mapped: Mapped,
    cfg: &OverlayConfig,
    paths: &OverlayPaths,
) -> Result<(), StepError> {
    let ops = crate::rootfs::plan::plan(&super::init::plan_input(spec, mapped, Some(&paths.mountpoint)));
    let points = upper::mount_points(&ops, |p| p.is_dir());
    let what = || format!("create the mount points in the copy-on-write layer {}", paths.upper.display());
    upper::prepare(&cfg.lowers, &cfg.upper, &points).map(drop).map_err(|e| StepError::sys("overlay", what(), e))
}

/// Starts the FUSE server and returns once its mount is live.
fn serve_fuse(cfg: &OverlayConfig, paths: &OverlayPaths, chan: &Channel) -> Result<Pid, StepError> {
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).step("overlay", "pipe")?;
    match fork_tied(Signal::SIGKILL).step("overlay", "fork the FUSE overlay server")? {
        Tied::Child => {
            drop(ready_r);
            // An error here must end this process, never return into P1's code.
            let reporter = match chan.try_clone() {
                Ok(c) => c,
                Err(e) => super::child_exit(StepError::sys("overlay", "dup the channel", e).report(chan)),
            };
            super::fork::contained(reporter, || {
                let mut ready_w = Some(ready_w);
                let served = overlay::fuse::mount_and_serve(cfg, &paths.mountpoint, || {
                    if let Some(w) = ready_w.take() {
                        let _ = nix::unistd::write(&w, b"1");
                    }
                });
                match served {
                    Ok(()) => 0,
                    Err(e) => overlay_err(e).report(chan),
                }
            })
        }
        Tied::Parent(pid) => {
            drop(ready_w);
            if wait_ready(&ready_r) {
                Ok(pid)
            } else {
                // Dead, or stuck past the deadline: either way it must not outlive this failure.
                let _ = kill(pid, Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
                // The server reported its own error to P0; this one only stops P1.
                Err(StepError::plain(
                    "overlay",
                    "the FUSE overlay server did not mount (it died, or took more than 10 s)",
                ))
            }
        }
    }
}

/// How long the FUSE server may take to mount: milliseconds normally; a stuck mount must not hang burrow.
const READY_TIMEOUT_MS: u16 = 10_000;

fn wait_ready(r: &OwnedFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(r), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(READY_TIMEOUT_MS)) {
        Ok(0) | Err(_) => return false,
        Ok(_) => {}
    }
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(r, &mut byte) {
            Ok(1) => return true,
            Err(nix::Error::EINTR) => continue,
            _ => return false,
        }
    }
}

/// Kills and reaps the FUSE server (the caller's child).
pub fn stop_server(pid: Pid) {
    let _ = kill(pid, Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
}

/// What P0 tells the user about the root: the layer's notice, and the driver when it is named (`--verbose`;
/// an empty name says nothing).
pub fn notices(notice: Option<String>, driver: &str) -> impl Iterator<Item = String> {
    notice.into_iter().chain((!driver.is_empty()).then(|| format!("burrow: copy-on-write driver: {driver}")))
}

/// Tells P0 which driver serves the root, when the user is to hear it (a notice, or --verbose), and that P1 has
/// a FUSE server to stop after the container's end (P0 then waits for P1).
pub fn report(layer: &Layer, chan: &Channel, verbose: bool) {
    let linger = layer.server.is_some();
    if layer.notice.is_some() || verbose || linger {
        let driver = if verbose { layer.driver.into() } else { String::new() };
        let _ = chan.send(&Msg::RootReady { driver, notice: layer.notice.clone(), linger });
    }
}

/// After the container ended: stop the server and, with `unmount`, drop the mounts (without, they go with P1's
/// mount namespace when it exits: one teardown instead of an unmount and an RCU grace period each).
pub fn cleanup(spec: &RunSpec, layer: &Layer, unmount: bool) {
    if let Some(pid) = layer.server {
        stop_server(pid);
    }
    let Some(paths) = spec.overlay.as_ref().and_then(|o| o.paths.as_ref()).filter(|_| unmount) else { return };
    if layer.mountpoint.is_some() {
        let _ = nix::mount::umount2(&paths.mountpoint, nix::mount::MntFlags::MNT_DETACH);
    }
    // An ephemeral layer's tmpfs would go with this mount namespace anyway; unmounting it now lets P1 remove the
    // state directory when burrow is gone.
    if let Some(tmpfs) = &paths.tmpfs {
        let _ = nix::mount::umount2(tmpfs, nix::mount::MntFlags::MNT_DETACH);
    }
}
