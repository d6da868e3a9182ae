//! The container's `/dev`, as bubblewrap's `--dev` makes it: a few device nodes bound from the host's /dev, a
//! private devpts instance with its own ptmx, the usual symlinks and a `/dev/shm` directory.
//!
//! The tree is made first in init's scratch tmpfs (the root init pivoted into: no other process can reach it, so
//! plain paths are safe there and no lookup has to be resolved inside the container root), then bound once over
//! the container's `/dev`, and the device nodes and devpts are mounted on that bind. A new tmpfs per `/dev`
//! and per `/dev/shm`, and a resolution in the container root per node and symlink, cost ~95 system calls and
//! two superblocks per run; this is ~30 and none.

use super::apply::{err, nix_err, target, MountError};
use super::plan::DEVICES;
use super::resolve::Kind;
use nix::mount::{mount, MsFlags};
use std::path::Path;

/// Where the tree is made, in the scratch root.
const STAGE: &str = "/dev";

const LINKS: [(&str, &str); 6] = [
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("core", "/proc/kcore"),
];

/// A directory of the scratch root with exactly `mode` (whatever the umask init inherited).
pub(super) fn scratch_dir(path: &str, mode: u32) -> Result<(), MountError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir(path).map_err(err(format!("mkdir {path}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err(format!("chmod {path}")))
}

/// Builds `/dev` below the container root `root`; `host_dev` is the host's /dev (below the old root).
pub(super) fn mount_dev(root: &std::os::fd::OwnedFd, host_dev: &Path, tty_gid: Option<u32>) -> Result<(), MountError> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    scratch_dir(STAGE, 0o755)?;
    for name in DEVICES {
        let node = format!("{STAGE}/{name}");
        // An empty file to bind the device over (mknod of a regular file needs no privilege).
        mknod(node.as_str(), SFlag::S_IFREG, Mode::from_bits_truncate(0o644), 0)
            .map_err(nix_err(format!("create {node}")))?;
    }
    for (link, to) in LINKS {
        std::os::unix::fs::symlink(to, format!("{STAGE}/{link}")).map_err(err(format!("symlink /dev/{link}")))?;
    }
    std::fs::create_dir(format!("{STAGE}/pts")).map_err(err("mkdir /dev/pts"))?;
    scratch_dir(&format!("{STAGE}/shm"), 0o1777)?;

    // One bind over the container's /dev (it keeps the scratch tmpfs's nosuid and nodev), then the mounts on it,
    // reached through the bind's own root (resolving /dev again: the first descriptor names what it covers).
    let (_covered, t) = target(root, Path::new("/dev"), Kind::Dir)?;
    mount(Some(STAGE), t.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(nix_err("bind /dev"))?;
    let (_dev, dev) = target(root, Path::new("/dev"), Kind::Dir)?;
    for name in DEVICES {
        let src = host_dev.join(name);
        match mount(Some(&src), format!("{dev}/{name}").as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>) {
            Ok(()) => {}
            // The host has no such device: the container has none either.
            Err(nix::Error::ENOENT) => {
                let node = format!("{STAGE}/{name}");
                std::fs::remove_file(&node).map_err(err(format!("remove {node}")))?;
            }
            Err(e) => return Err(nix_err(format!("bind /dev/{name}"))(e)),
        }
    }
    let gid = tty_gid.map(|g| format!(",gid={g}")).unwrap_or_default();
    let data = format!("newinstance,ptmxmode=0666,mode=0620{gid}");
    mount(
        Some("devpts"),
        format!("{dev}/pts").as_str(),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
    .map_err(nix_err("mount devpts on /dev/pts"))
}
