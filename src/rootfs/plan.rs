//! The ordered list of mount operations that builds the container's root, computed from the run description
//! alone (no system calls), so it can be printed, unit-tested and reasoned about — the bubblewrap model.
//!
//! Paths in `dst` are container paths; paths in `src` are host paths (canonical, checked by the caller).

use std::path::{Path, PathBuf};

/// What becomes `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Root {
    /// A directory of the host, bound read-only unless `writable`.
    Dir { path: PathBuf, writable: bool },
    /// The host's own `/`, recursively read-only (the built-in default sandbox).
    Host,
    /// An image's unpacked layers, top-most first: the lower layers of the copy-on-write root (never mounted
    /// without it).
    Image { lowers: Vec<PathBuf> },
    /// The host's own `/`, copy-on-write directory by directory (see [`super::host`]).
    HostLayered(super::host::HostLayout),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Bind `root` at the new root.
    Root(Root),
    Tmpfs {
        dst: PathBuf,
        mode: u32,
    },
    Proc {
        dst: PathBuf,
    },
    /// A read-only sysfs (its own instance when the container owns its network namespace, else a recursive
    /// read-only bind of the host's).
    Sysfs {
        dst: PathBuf,
        own_netns: bool,
    },
    /// The container's own cgroup tree (its cgroup namespace root), read-only, so programs see their limits.
    Cgroup2 {
        dst: PathBuf,
    },
    /// Bind one device node of the host's /dev.
    Device {
        name: &'static str,
    },
    /// A private devpts instance at /dev/pts with its own ptmx.
    Devpts {
        tty_gid: Option<u32>,
    },
    Symlink {
        target: PathBuf,
        link: PathBuf,
    },
    Bind {
        src: PathBuf,
        dst: PathBuf,
        readonly: bool,
    },
    /// A small generated file, bound read-only over `dst` (skipped when `dst` cannot exist).
    File {
        dst: PathBuf,
        content: String,
    },
}

/// A user volume (`-v SRC:DST[:ro|rw]`), its source canonical on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub src: PathBuf,
    pub dst: PathBuf,
    pub readonly: bool,
}

/// Everything the plan depends on.
#[derive(Clone, Debug)]
pub struct Input {
    pub root: Root,
    pub volumes: Vec<Volume>,
    pub tmpfs: Vec<PathBuf>,
    pub own_netns: bool,
    /// gid of the `tty` group inside, when it is mapped (devpts `gid=` option).
    pub tty_gid: Option<u32>,
    pub hostname: String,
    /// /etc/hosts content (from the network stage: it knows the container's address).
    pub hosts: String,
    /// Host paths bound read-write at the same place in the host-root default ($HOME, the working directory).
    pub host_binds: Vec<PathBuf>,
    /// Extra /etc files (e.g. resolv.conf from the network stage).
    pub etc_files: Vec<(PathBuf, String)>,
}

const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Computes the ordered operations. Later operations may mount below earlier ones (e.g. a volume under /tmp).
pub fn plan(input: &Input) -> Vec<Op> {
    let mut ops = vec![Op::Root(input.root.clone())];
    ops.push(Op::Proc { dst: "/proc".into() });
    ops.push(Op::Sysfs { dst: "/sys".into(), own_netns: input.own_netns });
    ops.push(Op::Cgroup2 { dst: "/sys/fs/cgroup".into() });
    ops.push(Op::Tmpfs { dst: "/dev".into(), mode: 0o755 });
    ops.extend(DEVICES.iter().map(|name| Op::Device { name }));
    ops.push(Op::Devpts { tty_gid: input.tty_gid });
    for (link, target) in [
        ("/dev/ptmx", "pts/ptmx"),
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/core", "/proc/kcore"),
    ] {
        ops.push(Op::Symlink { target: target.into(), link: link.into() });
    }
    ops.push(Op::Tmpfs { dst: "/dev/shm".into(), mode: 0o1777 });
    ops.push(Op::Tmpfs { dst: "/tmp".into(), mode: 0o1777 });
    for path in &input.host_binds {
        ops.push(Op::Bind { src: path.clone(), dst: path.clone(), readonly: false });
    }
    for v in &input.volumes {
        ops.push(Op::Bind { src: v.src.clone(), dst: v.dst.clone(), readonly: v.readonly });
    }
    for dst in &input.tmpfs {
        ops.push(Op::Tmpfs { dst: dst.clone(), mode: 0o1777 });
    }
    ops.push(Op::File { dst: "/etc/hostname".into(), content: format!("{}\n", input.hostname) });
    ops.push(Op::File { dst: "/etc/hosts".into(), content: input.hosts.clone() });
    for (dst, content) in &input.etc_files {
        ops.push(Op::File { dst: dst.clone(), content: content.clone() });
    }
    ops
}

/// Normalises a container path lexically: absolute, no `.`/`..`/empty components (`..` stops at `/`).
/// Symlinks are resolved later, inside the container root, by [`super::resolve`].
pub fn clean_container_path(p: &Path) -> Option<PathBuf> {
    if !p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> Input {
        Input {
            root: Root::Dir { path: "/srv/r".into(), writable: false },
            volumes: vec![],
            tmpfs: vec![],
            own_netns: true,
            tty_gid: Some(5),
            hostname: "box".into(),
            hosts: "127.0.1.1\tbox\n".into(),
            host_binds: vec![],
            etc_files: vec![],
        }
    }

    #[test]
    fn root_comes_first_then_kernel_filesystems_then_user_mounts_then_files() {
        let mut i = input();
        i.volumes.push(Volume { src: "/home/u/data".into(), dst: "/tmp/data".into(), readonly: true });
        let ops = plan(&i);
        assert_eq!(ops[0], Op::Root(Root::Dir { path: "/srv/r".into(), writable: false }));
        let pos = |want: &Op| ops.iter().position(|o| o == want).unwrap();
        let tmp = pos(&Op::Tmpfs { dst: "/tmp".into(), mode: 0o1777 });
        let vol = pos(&Op::Bind { src: "/home/u/data".into(), dst: "/tmp/data".into(), readonly: true });
        assert!(tmp < vol, "a volume under /tmp must be mounted after the /tmp tmpfs");
        assert!(pos(&Op::Tmpfs { dst: "/dev".into(), mode: 0o755 }) < pos(&Op::Device { name: "null" }));
        assert!(matches!(ops.last(), Some(Op::File { dst, .. }) if dst == Path::new("/etc/hosts")));
    }

    #[test]
    fn hosts_and_hostname_agree() {
        let ops = plan(&input());
        assert!(ops.contains(&Op::File { dst: "/etc/hostname".into(), content: "box\n".into() }));
        assert!(ops.iter().any(|o| matches!(o, Op::File { content, .. } if content.contains("127.0.1.1\tbox"))));
    }

    #[test]
    fn host_default_binds_home_and_cwd_read_write() {
        let mut i = input();
        i.root = Root::Host;
        i.host_binds = vec!["/home/u".into(), "/work/p".into()];
        let ops = plan(&i);
        assert!(ops.contains(&Op::Bind { src: "/home/u".into(), dst: "/home/u".into(), readonly: false }));
        assert!(ops.contains(&Op::Bind { src: "/work/p".into(), dst: "/work/p".into(), readonly: false }));
    }

    #[test]
    fn container_paths_are_cleaned_lexically() {
        assert_eq!(clean_container_path(Path::new("/a/./b/../c//d")), Some("/a/c/d".into()));
        assert_eq!(clean_container_path(Path::new("/../../etc")), Some("/etc".into()));
        assert_eq!(clean_container_path(Path::new("rel")), None);
    }
}
