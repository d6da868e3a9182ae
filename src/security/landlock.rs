//! `--landlock`: a second wall behind the namespaces. The payload may reach files only beneath its own root
//! (which holds its binds): a file of another mount tree — a host path leaked through a descriptor, the
//! `/proc/PID/root` of a process outside — is refused even if another wall fails. On kernels with Landlock ABI
//! 6 it is also scoped: no abstract unix socket and no signal outside the container's Landlock domain (this
//! matters with `--network host`, where the host's abstract sockets are otherwise reachable).

use landlock::{
    Access, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

/// The newest Landlock ABI this code asks for; older kernels enforce what they support (best effort). A kernel
/// without Landlock at all is reported by P0 before the run (see [`crate::sys::security::landlock_abi`]).
const ABI_WANTED: ABI = ABI::V6;

pub fn restrict() -> Result<(), String> {
    let all = AccessFs::from_all(ABI_WANTED);
    let root = PathFd::new("/").map_err(|e| format!("open /: {e}"))?;
    let status = Ruleset::default()
        .handle_access(all)
        .and_then(|r| r.scope(Scope::from_all(ABI_WANTED)))
        .and_then(|r| r.create())
        // no_new_privs is the profile's decision (--allow-setuid), made before this step.
        .map(|r| r.no_new_privs(false))
        .and_then(|r| r.add_rule(PathBeneath::new(root, all)))
        .and_then(|r| r.restrict_self())
        .map_err(|e| e.to_string())?;
    match status.ruleset {
        RulesetStatus::NotEnforced => Err("the kernel does not enforce Landlock".into()),
        RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced => Ok(()),
    }
}
