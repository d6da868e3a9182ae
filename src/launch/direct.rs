//! The direct launch: P0 does P1's work itself when the run needs no process of burrow's outside the container
//! but burrow (docs/design/launch-sequence.md, "Direct launch"). That is the common case once the
//! user-namespace keeper runs, and every run of a user without subordinate IDs: a namespace mapped by the
//! keeper, or one with a single-ID map, which P0 writes for itself (no setuid helper needs a process outside),
//! no cgroup to move a process into, no network helper or port forwarder, no control socket (`-d`, `--name`),
//! no terminal, no state directory. P0 joins (or unshares and maps) the namespaces, checks the maps, mounts the
//! copy-on-write layer in a mount namespace of its own and forks init; P1's fork, its page faults and the
//! handoff between them are gone.
//!
//! P0 then lives in the container's user namespace, as P1 did, and outside its PID namespace: the container
//! cannot see it, signal it or trace it (docs/security.md). A FUSE server (the `auto` driver's fallback when
//! the kernel refuses the overlay) is P0's child, watched by [`super::ends::Ends`] like init.

use super::channel;
use super::child::{self, Mapped};
use super::parent::{drain_failure, supervise, HostStages, LaunchError, Outcome, P1Guard};
use super::{ends::Ends, init, layers, signals, StepError};
use crate::spec::RunSpec;
use crate::userns::Source;

/// True when nothing of the run needs P1: the namespace is the keeper's, or one P0 maps itself (a single-ID
/// map needs no helper: a process may map its own IDs in a namespace it created).
pub fn eligible(spec: &RunSpec, stages: &HostStages<'_>) -> bool {
    let userns = match stages.userns {
        Source::Join(_) => true,
        Source::Own { start } => start.is_none() && !spec.ids.via_helpers,
    };
    userns
        && stages.cgroup.is_disabled()
        && stages.on_start.is_none()
        && spec.state_dir.is_none()
        && !spec.net.needs_state_dir()
        && spec.net.published().is_empty()
        && spec.control.is_none()
        && spec.terminal.is_none()
        && !spec.watch_start
}

/// Runs the container without P1 (only when [`eligible`]); returns the payload's exit code.
pub fn run(spec: &RunSpec, stages: &HostStages<'_>, notice: &mut dyn FnMut(String)) -> Result<Outcome, LaunchError> {
    signals::block().map_err(|e| LaunchError::Sys("block signals", e))?;
    let (ours, theirs) = channel::pair()?;
    let failed = |e: StepError| {
        // A FUSE server that failed to mount said why on the channel: its account wins.
        drain_failure(&ours).unwrap_or(LaunchError::Child { stage: e.stage.into(), message: e.to_string() })
    };
    child::enter_namespaces(spec, stages.userns.join_fd(), &stages.userns.join_others()).map_err(failed)?;
    let mapped = match stages.userns {
        Source::Join(joined) => child::check_joined(joined).map_err(failed)?,
        Source::Own { .. } => {
            crate::idmap::write_single(&spec.ids, std::process::id() as i32)?;
            Mapped { setgroups_allowed: false }
        }
    };
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).map_err(|e| LaunchError::Sys("unshare(cgroup)", e))?;
    let mut layer = child::root_layer(spec, mapped, &theirs).map_err(failed)?;
    layers::notices(layer.notice.take(), if spec.verbose { layer.driver } else { "" }).for_each(&mut *notice);
    let init = match child::fork_init(None) {
        Ok(Some(init)) => init,
        Ok(None) => {
            drop(ours);
            init::main(spec, theirs, mapped, layer.mountpoint.as_deref())
        }
        Err(e) => {
            layers::cleanup(spec, &layer, false);
            return Err(LaunchError::Child {
                stage: "init".into(),
                message: format!("fork the container's init: {e}"),
            });
        }
    };
    // init holds the other end now: the channel closes when init and the payload are done with it.
    drop(theirs);
    // The container's mounts are torn down when burrow's lazy exit lets init's mount namespace go (see
    // child::fork_init); P0's own namespace, with the layer, goes the same way.
    if let Some(mounts) = init.mounts {
        crate::sys::keep_past_exit(mounts);
    }
    let pid = init.child.pid;
    let mut ends = Ends::direct(init.child, layer.server.take());
    let mut attach = super::attach::Attach::new(spec.interactive, None);
    // Without -t the payload has a session of its own: with --no-init nobody else passes the terminal's
    // signals on.
    let relay_terminal = !spec.init && !spec.hardening.controlling_tty;
    let code =
        supervise(&ours, (pid, &mut P1Guard(None), &mut ends), (None, false), relay_terminal, notice, &mut attach);
    attach.finish();
    ends.abandon();
    let code = code.map_err(|e| drain_failure(&ours).unwrap_or(e))?;
    match drain_failure(&ours) {
        Some(e) => Err(e),
        None => Ok(Outcome { code, stats: None }),
    }
}
