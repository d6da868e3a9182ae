//! The payload's hardening: what a process gives up right before it becomes the payload (its terminal session,
//! the caller's session keyring, its user, capabilities, no_new_privs, inherited descriptors, Landlock, the
//! seccomp filter).
//!
//! One [`Profile`] describes it and one function, [`apply`], applies it: the last step of
//! [`crate::launch::exec::payload`], shared by `burrow run` and `burrow exec`, so there is one place to audit.
//! docs/security.md explains each default and how to loosen it.

pub mod caps;
mod landlock;
pub mod seccomp;

use crate::sys::security as raw;
use serde::{Deserialize, Serialize};

/// What the payload keeps. Serializable: a running container's profile is stored with its state so that
/// `burrow exec` applies exactly the same one. `Profile::default()` is the hardened default for root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Capabilities kept in every set (bit mask of `1 << CAP_*`); see [`caps::effective_set`].
    pub caps: u64,
    /// `PR_SET_NO_NEW_PRIVS` (off with `--allow-setuid`).
    pub no_new_privs: bool,
    pub seccomp: seccomp::Seccomp,
    /// The default filter lets the payload create user namespaces (`--allow-nested`).
    pub allow_nested: bool,
    /// Descriptors 3..3+N stay open across execve (`--preserve-fds N`); everything else above 2 is closed.
    pub preserve_fds: u32,
    /// Restrict filesystem access to the container's own tree with Landlock (`--landlock`).
    pub landlock: bool,
    /// Masked and read-only kernel paths below these stay as they are (`--unmask PATH|all`; all is `/`).
    pub unmask: Vec<std::path::PathBuf>,
    /// A controlling terminal was set up for the payload (`-t`): it keeps its session. Without one the payload
    /// starts a new session, so it has no controlling terminal to push input into (TIOCSTI).
    pub controlling_tty: bool,
}

impl Default for Profile {
    fn default() -> Profile {
        Profile {
            caps: caps::effective_set(0, &[], &[]),
            no_new_privs: true,
            seccomp: seccomp::Seccomp::Default,
            allow_nested: false,
            preserve_fds: 0,
            landlock: false,
            unmask: vec![],
            controlling_tty: false,
        }
    }
}

/// Who the payload runs as inside the container.
#[derive(Clone, Copy, Debug)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// setgroups(2) is allowed in the user namespace (maps written by the helpers, not a single-ID map).
    pub setgroups_allowed: bool,
}

/// A failed hardening step: which one, what happened, and the errno for the launcher's report.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {detail}")]
pub struct SecurityError {
    pub step: &'static str,
    pub detail: String,
    pub errno: i32,
}

fn io_err(step: &'static str) -> impl FnOnce(std::io::Error) -> SecurityError {
    move |e| SecurityError { step, errno: e.raw_os_error().unwrap_or(0), detail: e.to_string() }
}

fn nix_err(step: &'static str) -> impl FnOnce(nix::Error) -> SecurityError {
    move |e| SecurityError { step, errno: e as i32, detail: e.desc().to_lowercase() }
}

fn caps_err(e: caps::CapsError) -> SecurityError {
    SecurityError { step: "capabilities", detail: e.to_string(), errno: libc::EPERM }
}

/// Applies `p` to the calling process, which execs the payload right after. In order:
/// 1. a new session unless a controlling terminal was set up (no terminal to inject input into);
/// 2. a new session keyring (the caller's keys out of reach, keyrings still usable; see [`join_keyring`]);
/// 3. the payload's groups and user, keeping the capabilities the next steps need;
/// 4. the bounding set;
/// 5. no_new_privs;
/// 6. every descriptor above 2 (and the preserved ones) marked close-on-exec;
/// 7. Landlock;
/// 8. the remaining capability sets and the seccomp filter, last. Without no_new_privs the kernel wants
///    CAP_SYS_ADMIN to install a filter (or a Landlock ruleset), so then the filter goes in before the
///    capabilities are reduced; the filter allows the capset(2) that follows.
pub fn apply(p: &Profile, id: Identity) -> Result<(), SecurityError> {
    if !p.controlling_tty {
        nix::unistd::setsid().map_err(nix_err("setsid"))?;
    }
    join_keyring()?;
    set_user(id)?;
    caps::bound(p.caps).map_err(caps_err)?;
    if p.no_new_privs {
        nix::sys::prctl::set_no_new_privs().map_err(nix_err("prctl(PR_SET_NO_NEW_PRIVS)"))?;
    }
    close_inherited(p.preserve_fds)?;
    if p.landlock {
        landlock::restrict().map_err(|detail| SecurityError { step: "landlock", detail, errno: libc::EPERM })?;
    }
    let programs = seccomp::programs(&p.seccomp, p.allow_nested);
    let install = || seccomp::install(&programs).map_err(io_err("install the seccomp filter"));
    if !p.no_new_privs {
        install()?;
    }
    caps::restrict(p.caps, id.uid).map_err(caps_err)?;
    if p.no_new_privs {
        install()?;
    }
    Ok(())
}

/// Joins a fresh anonymous session keyring. The caller's key quota (200 keys by default) counts every running
/// container's keyring: when it is exhausted, all of this user's containers share one keyring named
/// `burrow` instead, still apart from the caller's own session.
fn join_keyring() -> Result<(), SecurityError> {
    let shared = c"burrow";
    match raw::join_session_keyring(None) {
        // No keyrings in this kernel, or keyctl already denied by an outer sandbox: nothing to hide.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM | libc::EACCES)) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EDQUOT) => {
            raw::join_session_keyring(Some(shared)).map(drop).map_err(io_err("join the shared session keyring"))
        }
        r => r.map(drop).map_err(io_err("join a new session keyring")),
    }
}

/// Switches to the payload's groups and user. A non-root user keeps its permitted capabilities across the
/// switch (PR_SET_KEEPCAPS) and raises them again, because the bounding set, Landlock and (without
/// no_new_privs) seccomp still need them; [`caps::restrict`] then leaves it only what the profile says.
fn set_user(id: Identity) -> Result<(), SecurityError> {
    use nix::unistd::{Gid, Uid};
    let gid = Gid::from_raw(id.gid);
    if id.setgroups_allowed {
        // Drop the host's supplementary groups (they show as the overflow gid inside).
        nix::unistd::setgroups(&[gid]).map_err(nix_err("setgroups"))?;
    }
    nix::unistd::setresgid(gid, gid, gid).map_err(nix_err("setresgid"))?;
    if id.uid != 0 {
        nix::sys::prctl::set_keepcaps(true).map_err(nix_err("prctl(PR_SET_KEEPCAPS)"))?;
    }
    let uid = Uid::from_raw(id.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(nix_err("setresuid"))?;
    if id.uid != 0 {
        caps::raise_permitted().map_err(caps_err)?;
    }
    Ok(())
}

/// Marks every descriptor from 3 + `preserve` up close-on-exec, and the preserved ones inheritable.
fn close_inherited(preserve: u32) -> Result<(), SecurityError> {
    for fd in 3..3 + preserve {
        raw::clear_cloexec(fd).map_err(io_err("keep a descriptor of --preserve-fds"))?;
    }
    raw::cloexec_from(3 + preserve).map_err(io_err("close inherited descriptors (close_range)"))
}

/// Why the hardening flags cannot be honoured (reported before anything starts, exit 125).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Caps(#[from] caps::CapsError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::ProfileError),
    #[error("--preserve-fds {n}: descriptor {fd} is not open (pass exactly the descriptors 3..3+N-1)")]
    PreserveFds { n: u32, fd: u32 },
}

/// Builds the profile of a payload running as `uid` inside from the command line's flags.
pub fn profile(args: &crate::cli::SecurityArgs, uid: u32) -> Result<Profile, RequestError> {
    let parse = |names: &[String]| names.iter().map(|n| caps::parse(n)).collect::<Result<Vec<_>, _>>();
    let kept = caps::effective_set(uid, &parse(&args.cap_add)?, &parse(&args.cap_drop)?);
    let seccomp = match args.seccomp.as_deref() {
        None | Some("default") => seccomp::Seccomp::Default,
        Some("unconfined") => seccomp::Seccomp::Unconfined,
        Some(path) => seccomp::Seccomp::Custom(seccomp::compile_file(std::path::Path::new(path), kept)?),
    };
    if let Some(fd) = (3..3 + args.preserve_fds).find(|fd| !raw::fd_is_open(*fd)) {
        return Err(RequestError::PreserveFds { n: args.preserve_fds, fd });
    }
    Ok(Profile {
        caps: kept,
        no_new_privs: !args.allow_setuid,
        seccomp,
        allow_nested: args.allow_nested,
        preserve_fds: args.preserve_fds,
        landlock: args.landlock,
        unmask: args.unmask.iter().map(|u| if u == "all" { "/".into() } else { std::path::PathBuf::from(u) }).collect(),
        controlling_tty: false,
    })
}

impl Profile {
    /// Turns off what this machine cannot do, and says so: Landlock on a kernel without it, the default
    /// filter on an architecture seccompiler cannot target.
    pub fn settle(&mut self) -> Vec<String> {
        let mut notices = Vec::new();
        if self.landlock && raw::landlock_abi().is_none() {
            self.landlock = false;
            notices.push(
                "burrow: notice: --landlock: this kernel has no Landlock (Linux 5.13 or newer, with landlock in \
                 its lsm= list): running without it"
                    .to_string(),
            );
        }
        if self.seccomp == seccomp::Seccomp::Default && !seccomp::has_default() {
            self.seccomp = seccomp::Seccomp::Unconfined;
            notices.push(format!(
                "burrow: notice: no default seccomp filter for {} in this build: running without one",
                std::env::consts::ARCH
            ));
        }
        notices
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::SecurityArgs;

    #[test]
    fn the_flags_loosen_one_default_each() {
        let p = profile(&SecurityArgs::default(), 0).unwrap();
        assert_eq!(p, Profile::default());
        assert!(p.no_new_privs && p.seccomp == seccomp::Seccomp::Default && !p.allow_nested);
        assert_eq!(profile(&SecurityArgs::default(), 1000).unwrap().caps, 0, "a non-root user gets none");
        let args = SecurityArgs {
            cap_add: vec!["net_raw".into()],
            allow_setuid: true,
            allow_nested: true,
            seccomp: Some("unconfined".into()),
            unmask: vec!["all".into(), "/proc/sys".into()],
            ..Default::default()
        };
        let p = profile(&args, 0).unwrap();
        assert_eq!(p.caps, Profile::default().caps | ::caps::Capability::CAP_NET_RAW.bitmask());
        assert!(!p.no_new_privs && p.allow_nested && p.seccomp == seccomp::Seccomp::Unconfined);
        assert_eq!(p.unmask, vec![std::path::PathBuf::from("/"), "/proc/sys".into()]);
    }

    #[test]
    fn bad_flags_are_input_errors() {
        let bad_cap = SecurityArgs { cap_drop: vec!["CAP_NOPE".into()], ..Default::default() };
        assert!(matches!(profile(&bad_cap, 0), Err(RequestError::Caps(_))));
        let missing = SecurityArgs { seccomp: Some("/does/not/exist.json".into()), ..Default::default() };
        let e = profile(&missing, 0).unwrap_err().to_string();
        assert!(e.starts_with("seccomp profile /does/not/exist.json: "), "{e}");
        let fds = SecurityArgs { preserve_fds: 1000, ..Default::default() };
        assert!(matches!(profile(&fds, 0), Err(RequestError::PreserveFds { n: 1000, .. })));
    }

    #[test]
    fn a_profile_survives_serialization_for_exec() {
        let p = Profile { seccomp: seccomp::Seccomp::Custom(vec![vec![1, 2, 3]]), ..Profile::default() };
        let back: Profile = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
