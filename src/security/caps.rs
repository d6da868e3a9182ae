//! The payload's capabilities: podman's and Docker's default set for root, none for any other user, changed by
//! `--cap-add` and `--cap-drop` (a capability name with or without `CAP_`, any case, or `all`).
//!
//! Capabilities of a rootless container only ever apply inside its user namespace, but even there they open
//! kernel surface (raw sockets, mounts in new namespaces, ...) that a sandboxed program has no need for.

use caps::{CapSet, Capability, CapsHashSet};

/// podman's and Docker's default set.
pub const DEFAULT: [Capability; 11] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_KILL,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETGID,
    Capability::CAP_SETPCAP,
    Capability::CAP_SETUID,
    Capability::CAP_SYS_CHROOT,
];

#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("unknown capability {0:?} (see capabilities(7); e.g. NET_RAW or CAP_NET_RAW, or all)")]
    Unknown(String),
    #[error("drop {cap} from the bounding set: {source}")]
    Bound { cap: String, source: std::io::Error },
    #[error("{what}: {source}")]
    Apply { what: &'static str, source: caps::errors::CapsError },
}

/// One `--cap-add`/`--cap-drop` argument as a bit mask.
pub fn parse(name: &str) -> Result<u64, CapsError> {
    if name.eq_ignore_ascii_case("all") {
        return Ok(caps::all().iter().fold(0, |m, c| m | c.bitmask()));
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    full.parse::<Capability>().map(|c| c.bitmask()).map_err(|_| CapsError::Unknown(name.into()))
}

/// The set the payload keeps: the default set for root (uid 0 inside) and nothing for other users, plus what
/// was added, minus what was dropped. A named drop wins over an add of the same capability; `--cap-drop all`
/// keeps exactly what `--cap-add` names (the least-privilege idiom).
pub fn effective_set(uid: u32, add: &[u64], drop: &[u64]) -> u64 {
    let all = caps::all().iter().fold(0, |m, c| m | c.bitmask());
    let base = if uid == 0 { DEFAULT.iter().fold(0, |m, c| m | c.bitmask()) } else { 0 };
    let added = add.iter().fold(0, |m, a| m | a);
    let dropped = drop.iter().fold(0, |m, d| m | d);
    // Dropping everything then adding some back is the common "least privilege" idiom: keep the added ones.
    let dropped = if dropped == all { all & !added } else { dropped };
    (base | added) & !dropped
}

fn set_of(mask: u64) -> CapsHashSet {
    caps::all().into_iter().filter(|c| mask & c.bitmask() != 0).collect()
}

fn apply_err(what: &'static str) -> impl FnOnce(caps::errors::CapsError) -> CapsError {
    move |source| CapsError::Apply { what, source }
}

/// Drops from the bounding set everything not in `keep` (needs CAP_SETPCAP: call it before [`restrict`]).
/// Every capability number is dropped in turn until the kernel answers EINVAL: its capabilities are numbered
/// without gaps, so that is the first one past the last it knows (no 41 probes asking which ones it knows, and
/// one added by a kernel newer than this build is dropped too).
pub fn bound(keep: u64) -> Result<(), CapsError> {
    for index in (0..64u8).filter(|i| keep & (1 << i) == 0) {
        match crate::sys::security::capbset_drop(index) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(source) => {
                let known = caps::all().into_iter().find(|c| c.index() == index);
                let cap = known.map_or_else(|| format!("capability {index}"), |c| c.to_string());
                return Err(CapsError::Bound { cap, source });
            }
            Ok(()) => {}
        }
    }
    Ok(())
}

/// Sets the effective and permitted sets to `keep`, the inheritable set to `keep` for a non-root user (whose
/// capabilities survive execve only as ambient ones) and to nothing for root (which gets its permitted set
/// back from the bounding set at execve; an inheritable set would let a non-root program exec'd later gain
/// file-inheritable capabilities: CVE-2022-27649), and the ambient set to match.
pub fn restrict(keep: u64, uid: u32) -> Result<(), CapsError> {
    let set = set_of(keep);
    let inheritable = if uid == 0 { CapsHashSet::new() } else { set.clone() };
    caps::clear(None, CapSet::Ambient).map_err(apply_err("clear the ambient set"))?;
    caps::set(None, CapSet::Effective, &set).map_err(apply_err("set the effective capabilities"))?;
    caps::set(None, CapSet::Inheritable, &inheritable).map_err(apply_err("set the inheritable capabilities"))?;
    caps::set(None, CapSet::Permitted, &set).map_err(apply_err("set the permitted capabilities"))?;
    for cap in inheritable {
        caps::raise(None, CapSet::Ambient, cap).map_err(apply_err("raise an ambient capability"))?;
    }
    Ok(())
}

/// Raises every permitted capability into the effective set (after a switch to a non-root uid cleared it, the
/// remaining steps still need CAP_SETPCAP and, without no_new_privs, CAP_SYS_ADMIN).
pub fn raise_permitted() -> Result<(), CapsError> {
    let permitted = caps::read(None, CapSet::Permitted).map_err(apply_err("read the permitted capabilities"))?;
    caps::set(None, CapSet::Effective, &permitted).map_err(apply_err("raise the effective capabilities"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(list: &[Capability]) -> u64 {
        list.iter().fold(0, |m, c| m | c.bitmask())
    }

    #[test]
    fn names_parse_with_or_without_prefix_in_any_case() {
        assert_eq!(parse("net_raw").unwrap(), Capability::CAP_NET_RAW.bitmask());
        assert_eq!(parse("CAP_SYS_ADMIN").unwrap(), Capability::CAP_SYS_ADMIN.bitmask());
        assert_eq!(parse("ALL").unwrap().count_ones() as usize, caps::all().len());
        assert!(matches!(parse("CAP_FLY"), Err(CapsError::Unknown(_))));
    }

    #[test]
    fn root_gets_the_default_set_and_other_users_none() {
        assert_eq!(effective_set(0, &[], &[]), mask(&DEFAULT));
        assert_eq!(effective_set(1000, &[], &[]), 0);
        let raw = Capability::CAP_NET_RAW.bitmask();
        assert_eq!(effective_set(1000, &[raw], &[]), raw);
        assert_eq!(effective_set(0, &[raw], &[Capability::CAP_CHOWN.bitmask()]) & raw, raw);
        assert_eq!(effective_set(0, &[], &[Capability::CAP_CHOWN.bitmask()]) & Capability::CAP_CHOWN.bitmask(), 0);
    }

    #[test]
    fn drop_all_keeps_only_what_is_added() {
        let all = parse("all").unwrap();
        assert_eq!(effective_set(0, &[], &[all]), 0);
        let kill = Capability::CAP_KILL.bitmask();
        assert_eq!(effective_set(0, &[kill], &[all]), kill);
        assert_eq!(effective_set(0, &[all], &[]), all);
    }
}
