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
    /// The container's `/dev` (see [`super::dev`]): the device nodes of [`DEVICES`] bound from the host's, a
    /// private devpts instance at /dev/pts with its own ptmx, the usual symlinks and a /dev/shm directory.
    Dev {
        tty_gid: Option<u32>,
    },
    Bind {
        src: PathBuf,
        dst: PathBuf,
        readonly: bool,
    },
    /// `$HOME` of the host-root sandbox, shown as `--home` asks (see [`Home`]).
    Home(Home),
    /// A small generated file, bound read-only over `dst` (skipped when `dst` cannot exist).
    File {
        dst: PathBuf,
        content: String,
    },
    /// Hide a kernel file or directory: an empty read-only file or directory bound over it (skipped when the
    /// kernel has no such path, or, with `owner_only_is_closed`, when only its owner may open it: the kernel's
    /// root, which the container's ID map does not hold).
    Mask {
        dst: PathBuf,
        owner_only_is_closed: bool,
    },
    /// Bind a kernel path read-only over itself (skipped when missing).
    ReadOnly {
        dst: PathBuf,
    },
    /// Last: whether setuid bits count (`--allow-setuid`: on the root filesystem) or not (nosuid everywhere).
    Suid {
        allow: bool,
    },
}

/// `$HOME` in the host-root sandbox: the host directory shown at the same path, read-write, read-only,
/// copy-on-write (a kernel overlay of its own; read-only with a notice where it cannot be layered) or hidden
/// behind an empty tmpfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Home {
    pub path: PathBuf,
    pub mode: crate::cli::HomeMode,
    /// `--upper DIR`: the copy-on-write layer is kept in DIR/upper/.burrow-home (and DIR/work/.burrow-home).
    pub keep: Option<PathBuf>,
    /// uid and gid inside that own the empty tmpfs of `none` (the payload's user).
    pub owner: (u32, u32),
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
    /// Host paths bound read-write at the same place in the host-root default (the working directory; $HOME with
    /// `--home rw`).
    pub host_binds: Vec<PathBuf>,
    /// `$HOME` of the host-root default, mounted before `host_binds` (so a working directory inside it stays
    /// writable).
    pub home: Option<Home>,
    /// Extra /etc files (e.g. resolv.conf from the network stage).
    pub etc_files: Vec<(PathBuf, String)>,
    /// `--allow-setuid`: setuid binaries of the root filesystem work (inside the user namespace only).
    pub allow_setuid: bool,
    /// `--unmask`: masked and read-only kernel paths below these are left as they are (`/` for all).
    pub unmask: Vec<PathBuf>,
    /// The host's uid or gid 0 is in the container's ID map (burrow run by root, or a subordinate range that
    /// starts at 0): files the kernel gives its own root are then the container's too.
    pub host_root_mapped: bool,
}

/// Kernel files that leak host information or kernel memory layout, hidden as podman and Docker hide them:
/// physical memory (kcore), every key of the host visible to the user (keys), timers and scheduler state of
/// every host process (timer_list, sched_debug, latency_stats), hardware and firmware tables.
pub const MASKED: [&str; 12] = [
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/fs/selinux",
    "/sys/dev/block",
    "/sys/devices/virtual/powercap",
];

/// Kernel paths that configure the host (sysctls, SysRq, interrupts, buses) rather than the container: read-only.
/// /proc/sys always (the sysctls of the container's network namespace belong to the container's root); the
/// others only when the host's root is mapped: every file below them belongs to the kernel's root, so in a
/// namespace without it the kernel itself refuses every write (no capability of the namespace applies to an
/// inode whose owner it does not map), and a read-only bind would add a mount and nothing else.
pub const READ_ONLY: [&str; 6] =
    ["/proc/sys", "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sysrq-trigger"];

pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Computes the ordered operations. Later operations may mount below earlier ones (e.g. a volume under /tmp).
pub fn plan(input: &Input) -> Vec<Op> {
    let mut ops = vec![Op::Root(input.root.clone())];
    ops.push(Op::Proc { dst: "/proc".into() });
    ops.push(Op::Sysfs { dst: "/sys".into(), own_netns: input.own_netns });
    ops.push(Op::Cgroup2 { dst: "/sys/fs/cgroup".into() });
    let kept = |p: &str| !input.unmask.iter().any(|u| Path::new(p).starts_with(u));
    let closed = !input.host_root_mapped;
    ops.extend(MASKED.iter().filter(|p| kept(p)).map(|p| Op::Mask { dst: p.into(), owner_only_is_closed: closed }));
    let needed = |p: &&&str| **p == "/proc/sys" || input.host_root_mapped;
    ops.extend(READ_ONLY.iter().filter(needed).filter(|p| kept(p)).map(|p| Op::ReadOnly { dst: p.into() }));
    ops.push(Op::Dev { tty_gid: input.tty_gid });
    ops.push(Op::Tmpfs { dst: "/tmp".into(), mode: 0o1777 });
    if let Some(home) = &input.home {
        ops.push(Op::Home(home.clone()));
    }
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
    ops.push(Op::Suid { allow: input.allow_setuid });
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
            home: None,
            etc_files: vec![],
            allow_setuid: false,
            unmask: vec![],
            host_root_mapped: false,
        }
    }

    #[test]
    fn kernel_paths_are_masked_after_proc_and_sys_unless_unmasked() {
        let ops = plan(&input());
        let pos = |want: &Op| ops.iter().position(|o| o == want);
        let kcore = pos(&Op::Mask { dst: "/proc/kcore".into(), owner_only_is_closed: true }).unwrap();
        assert!(pos(&Op::Proc { dst: "/proc".into() }).unwrap() < kcore);
        assert!(pos(&Op::Cgroup2 { dst: "/sys/fs/cgroup".into() }).unwrap() < kcore);
        assert!(pos(&Op::ReadOnly { dst: "/proc/sys".into() }).is_some());
        let mut i = input();
        i.unmask = vec!["/proc/sys".into(), "/sys".into()];
        let ops = plan(&i);
        assert!(!ops.contains(&Op::ReadOnly { dst: "/proc/sys".into() }));
        assert!(!ops.iter().any(|o| matches!(o, Op::Mask { dst, .. } if dst == Path::new("/sys/firmware"))));
        assert!(ops.contains(&Op::Mask { dst: "/proc/kcore".into(), owner_only_is_closed: true }));
        i.unmask = vec!["/".into()];
        assert!(!plan(&i).iter().any(|o| matches!(o, Op::Mask { .. } | Op::ReadOnly { .. })));
    }

    #[test]
    fn root_owned_kernel_paths_are_bound_read_only_only_when_the_host_root_is_mapped() {
        let ro = |i: &Input| -> Vec<PathBuf> {
            plan(i).into_iter().filter_map(|o| if let Op::ReadOnly { dst } = o { Some(dst) } else { None }).collect()
        };
        let mut i = input();
        assert_eq!(ro(&i), vec![PathBuf::from("/proc/sys")], "the network namespace's sysctls are the container's");
        i.host_root_mapped = true;
        assert_eq!(ro(&i).len(), READ_ONLY.len());
        assert!(plan(&i).iter().all(|o| !matches!(o, Op::Mask { owner_only_is_closed: true, .. })));
    }

    #[test]
    fn setuid_is_off_everywhere_unless_allowed() {
        let mut i = input();
        assert_eq!(plan(&i).last(), Some(&Op::Suid { allow: false }));
        i.allow_setuid = true;
        assert_eq!(plan(&i).last(), Some(&Op::Suid { allow: true }));
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
        assert!(pos(&Op::Dev { tty_gid: Some(5) }) < tmp, "/dev before the user's mounts");
        assert!(matches!(&ops[ops.len() - 2], Op::File { dst, .. } if dst == Path::new("/etc/hosts")));
        assert_eq!(ops.last(), Some(&Op::Suid { allow: false }), "nosuid over everything, last");
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
    fn home_comes_before_the_working_directory_bind() {
        let mut i = input();
        i.root = Root::Host;
        let home = Home { path: "/home/u".into(), mode: crate::cli::HomeMode::Cow, keep: None, owner: (0, 0) };
        i.home = Some(home.clone());
        i.host_binds = vec!["/home/u/proj".into()];
        let ops = plan(&i);
        let pos = |want: &Op| ops.iter().position(|o| o == want).unwrap();
        let cwd = Op::Bind { src: "/home/u/proj".into(), dst: "/home/u/proj".into(), readonly: false };
        assert!(pos(&Op::Home(home)) < pos(&cwd));
        assert!(pos(&Op::Tmpfs { dst: "/tmp".into(), mode: 0o1777 }) < pos(&cwd));
    }

    #[test]
    fn container_paths_are_cleaned_lexically() {
        assert_eq!(clean_container_path(Path::new("/a/./b/../c//d")), Some("/a/c/d".into()));
        assert_eq!(clean_container_path(Path::new("/../../etc")), Some("/etc".into()));
        assert_eq!(clean_container_path(Path::new("rel")), None);
    }
}
