//! The payload's last steps: a clean signal mask, then its hardening (user and groups included, see
//! [`security::apply`]), then execve.
//! An exec failure travels to P0 as `Msg::ExecFailed` (exit 127 when not found, 126 when not executable).
//!
//! Every process that becomes a payload ends here: the run's payload (forked by init) and, for the lifecycle
//! commands, a process that joined a running container. [`Payload`] is all they need, and is serializable so
//! that a container's state can keep it.

use super::channel::Channel;
use super::child::Mapped;
use super::msg::Msg;
use super::{child_exit, report, signals};
use crate::security;
use crate::spec::RunSpec;
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Everything the last stage needs to become the payload.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Payload {
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    /// uid and gid inside the container.
    pub user: (u32, u32),
    /// setgroups(2) is allowed in the user namespace (maps written by the helpers, not a single-ID map).
    pub setgroups_allowed: bool,
    pub hardening: security::Profile,
}

impl Payload {
    pub fn of(spec: &RunSpec, mapped: Mapped) -> Payload {
        Payload {
            command: spec.command.clone(),
            env: spec.env.clone(),
            user: spec.user,
            setgroups_allowed: mapped.setgroups_allowed,
            hardening: spec.hardening.clone(),
        }
    }
}

/// Becomes the payload: drops to its user, applies its hardening, then execs it. Never returns.
pub fn payload(p: &Payload, chan: &Channel) -> ! {
    if let Err(e) = signals::unblock_all() {
        child_exit(report(chan, "signals", format!("unblock signals: {e}"), e as i32));
    }
    let id = security::Identity { uid: p.user.0, gid: p.user.1, setgroups_allowed: p.setgroups_allowed };
    if let Err(e) = security::apply(&p.hardening, id) {
        child_exit(report(chan, "hardening", e.to_string(), e.errno));
    }
    let command = &p.command[0];
    let search_path = p.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str()).unwrap_or("");
    let candidates = candidates(command, search_path);
    let argv: Vec<CString> = p.command.iter().filter_map(|a| CString::new(a.as_bytes()).ok()).collect();
    let envp: Vec<CString> = p.env.iter().filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok()).collect();
    // Like a shell: a permission error on one candidate is remembered, but later candidates are still tried.
    let mut errno = nix::Error::ENOENT;
    for path in &candidates {
        let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
            continue;
        };
        let e = nix::unistd::execve(&c_path, &argv, &envp).unwrap_err();
        if e != nix::Error::ENOENT && e != nix::Error::ENOTDIR {
            errno = e;
        }
    }
    let code = if errno == nix::Error::ENOENT { 127 } else { 126 };
    let path_searched = (!command.contains('/')).then(|| search_path.to_string());
    let _ = chan.send(&Msg::ExecFailed { errno: errno as i32, command: command.clone(), path_searched });
    child_exit(code)
}

/// The paths to try for `command`: itself when it names a path, else each `PATH` entry joined with it.
pub fn candidates(command: &str, search_path: &str) -> Vec<PathBuf> {
    if command.contains('/') {
        return vec![PathBuf::from(command)];
    }
    search_path
        .split(':')
        .map(|dir| if dir.is_empty() { Path::new(".") } else { Path::new(dir) })
        .map(|dir| dir.join(command))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_with_a_slash_are_not_searched() {
        assert_eq!(candidates("./x", "/bin"), vec![PathBuf::from("./x")]);
        assert_eq!(candidates("/bin/sh", "/usr/bin"), vec![PathBuf::from("/bin/sh")]);
    }

    #[test]
    fn path_entries_are_tried_in_order_and_empty_means_cwd() {
        assert_eq!(
            candidates("ls", "/usr/bin::/bin"),
            vec![PathBuf::from("/usr/bin/ls"), PathBuf::from("./ls"), PathBuf::from("/bin/ls")]
        );
    }
}
