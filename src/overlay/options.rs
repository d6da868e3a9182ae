//! fuse-overlayfs compatible `-o` options, as podman's `mount_program` passes them.

use std::path::PathBuf;

use rustix::mount::MountFlags;

use super::{OverlayConfig, OverlayError};

/// The result of parsing the `-o` lists of one command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub config: OverlayConfig,
    pub flags: MountFlags,
    /// No upperdir was given: a read-only overlay of the lower layers (podman mounts images this way). The
    /// caller supplies an empty scratch upper and work directory; the read-only mount keeps them empty.
    pub read_only_scratch: bool,
}

/// Options fuse-overlayfs accepts that change nothing here (burrow always keeps xattrs and
/// ACLs of the layers, syncs only on request, and picks its own threads and timeouts).
const IGNORED: &[&str] = &[
    "fsync",
    "noacl",
    "acl",
    "threaded",
    "fast_ino",
    "writeback",
    "timeout",
    "plugins",
    "xattr_permissions",
    "volatile",
    "noxattrs",
    "static_nlink",
    "allow_other",
    "allow_root",
    "default_permissions",
    "context",
    "fscontext",
    "rootcontext",
    "defcontext",
    "debug",
    "max_write",
    "rw",
    "exec",
    "suid",
    "dev",
    "async",
    "atime",
    "noatime",
    "relatime",
    "userxattr",
    "redirect_dir",
    "index",
    "metacopy",
    "xino",
];

fn bad(option: &str, reason: &str) -> OverlayError {
    OverlayError::Option { option: option.to_owned(), reason: reason.to_owned() }
}

/// Whether an id mapping `A:B:N[:A2:B2:N2...]` maps every id to itself.
fn identity_mapping(value: &str) -> bool {
    let nums: Vec<&str> = value.split([':', ',']).collect();
    nums.len() % 3 == 0 && nums.chunks(3).all(|c| c[0] == c[1] && c[2].parse::<u64>().is_ok())
}

/// Parses the comma-separated `-o` lists (in order; a later value wins).
pub fn parse(lists: &[String]) -> Result<MountOptions, OverlayError> {
    let (mut lowers, mut upper, mut work) = (None, None, None);
    let mut flags = MountFlags::NOSUID | MountFlags::NODEV;
    for opt in lists.iter().flat_map(|l| l.split(',')).filter(|o| !o.is_empty()) {
        let (key, value) = opt.split_once('=').unwrap_or((opt, ""));
        match key {
            "lowerdir" => lowers = Some(value.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect()),
            "upperdir" => upper = Some(PathBuf::from(value)),
            "workdir" => work = Some(PathBuf::from(value)),
            "uidmapping" | "gidmapping" if identity_mapping(value) => {}
            "uidmapping" | "gidmapping" => return Err(bad(
                opt,
                "id mapping is not supported; run burrow-overlayfs inside a user namespace with the mapping you need",
            )),
            "squash_to_root" | "squash_to_uid" | "squash_to_gid" => {
                return Err(bad(opt, "ownership squashing is not supported"))
            }
            "ro" => flags |= MountFlags::RDONLY,
            "nodev" => flags |= MountFlags::NODEV,
            "nosuid" => flags |= MountFlags::NOSUID,
            "noexec" => flags |= MountFlags::NOEXEC,
            k if IGNORED.contains(&k) => {}
            _ => return Err(bad(opt, "unknown option")),
        }
    }
    let lowers: Vec<PathBuf> = lowers.ok_or_else(|| bad("lowerdir", "missing"))?;
    if lowers.is_empty() {
        return Err(OverlayError::NoLower);
    }
    let Some(upper) = upper else {
        // Like fuse-overlayfs: lower layers only means a read-only overlay.
        let config = OverlayConfig { lowers, upper: PathBuf::new(), work: PathBuf::new() };
        return Ok(MountOptions { config, flags: flags | MountFlags::RDONLY, read_only_scratch: true });
    };
    let work = work.ok_or_else(|| bad("workdir", "missing"))?;
    Ok(MountOptions { config: OverlayConfig { lowers, upper, work }, flags, read_only_scratch: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_podman_style_options() {
        let o = parse(&["lowerdir=/a:/b,upperdir=/u,workdir=/w,fsync=0,nodev".into()]).unwrap();
        assert_eq!(o.config.lowers, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(o.config.upper, PathBuf::from("/u"));
        assert_eq!(o.config.work, PathBuf::from("/w"));
    }

    #[test]
    fn rejects_unknown_and_mappings() {
        assert!(parse(&["lowerdir=/a,upperdir=/u,workdir=/w,bogus".into()]).is_err());
        assert!(parse(&["lowerdir=/a,upperdir=/u,workdir=/w,uidmapping=0:1000:1".into()]).is_err());
        assert!(parse(&["lowerdir=/a,upperdir=/u,workdir=/w,uidmapping=0:0:65536".into()]).is_ok());
        assert!(parse(&["upperdir=/u,workdir=/w".into()]).is_err());
    }

    #[test]
    fn lowers_only_is_a_read_only_overlay() {
        let o = parse(&["lowerdir=/a:/b,ro".into()]).unwrap();
        assert!(o.read_only_scratch && o.flags.contains(MountFlags::RDONLY));
        let o = parse(&["lowerdir=/a,upperdir=/u,workdir=/w,ro".into()]).unwrap();
        assert!(!o.read_only_scratch && o.flags.contains(MountFlags::RDONLY));
    }
}
