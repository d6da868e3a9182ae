//! Kernel interfaces: sysctls and SysRq, remounts, devices, the cgroup tree, masked /proc files.

use crate::probe::*;
use crate::ready;
use crate::support::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn proc_sys_and_sysrq_trigger_are_read_only() {
    ready!();
    let r = rootfs();
    let forward = "/proc/sys/net/ipv4/ip_forward";
    for file in ["/proc/sys/kernel/hostname", forward] {
        assert_eq!(attempt(&r, &[], &["write", file, "1"]), Err(EROFS), "{file}");
    }
    assert!(attempt(&r, &[], &["write", "/proc/sysrq-trigger", "h"]).is_err());
    // Unmasked and with every capability, a sysctl of the container's own network namespace can be written:
    // the read-only mount is the wall. The host's kernel.* and SysRq stay the kernel's to refuse.
    let mut weak = WEAK.to_vec();
    weak.extend(["--unmask", "all"]);
    assert_eq!(attempt(&r, &weak, &["write", forward, "1"]), Ok(String::new()));
    assert_eq!(attempt(&r, &weak, &["write", "/proc/sys/kernel/hostname", "evil"]), Err(EACCES));
    assert!(attempt(&r, &weak, &["write", "/proc/sysrq-trigger", "h"]).is_err());
}

#[test]
fn host_kernel_files_are_masked() {
    ready!();
    let r = rootfs();
    // /proc/keys lists every key the caller may view (at least the session keyring the container joins).
    assert_eq!(attempt(&r, &[], &["read", "/proc/keys"]), Ok(String::new()));
    // The whole file, not the probe's first line: keys of other tests running at the same time may sort first.
    let o = output(run_in(r.path(), &["--network", "none", "--unmask", "/proc/keys"], &["cat", "/proc/keys"]));
    assert!(stdout(&o).contains("keyring"), "{}", stdout(&o));
    // Directories get an empty read-only tmpfs.
    let o = output(run_in(r.path(), &["--network", "none"], &["ls", "-A", "/sys/firmware", "/proc/acpi"]));
    assert_eq!(stdout(&o).lines().filter(|l| !l.is_empty() && !l.ends_with(':')).count(), 0, "{}", stdout(&o));
}

#[test]
fn kernel_files_of_the_hosts_root_are_closed_without_a_mount() {
    ready!();
    let r = rootfs();
    // The host's root is not in the ID map: files the kernel gives its root refuse the container's root even
    // with every capability and nothing masked, so burrow adds no mount over them (docs/security.md).
    let mut weak = WEAK.to_vec();
    weak.extend(["--unmask", "all"]);
    let irq = "/proc/irq/default_smp_affinity";
    let timers = "/proc/timer_list";
    let owner_only = std::fs::metadata(timers).is_ok_and(|m| m.permissions().mode() & 0o077 == 0);
    for args in [&[][..], &weak] {
        if std::path::Path::new(irq).exists() {
            assert_eq!(attempt(&r, args, &["write", irq, "1"]), Err(EACCES), "{args:?}");
        }
        if owner_only {
            assert_eq!(attempt(&r, args, &["read", timers]), Err(EACCES), "{args:?}");
        }
    }
    // What is mounted: /proc/sys read-only and the readable masks; nothing over /proc/irq or an owner-only file.
    let o = output(run_in(r.path(), &["--network", "none"], &["cat", "/proc/self/mountinfo"]));
    let info = stdout(&o);
    let points: Vec<&str> = info.lines().filter_map(|l| l.split(' ').nth(4)).collect();
    assert!(points.contains(&"/proc/sys") && points.contains(&"/proc/keys"), "{points:?}");
    assert!(!points.contains(&"/proc/irq") && !points.contains(&"/proc/bus"), "{points:?}");
    if owner_only {
        assert!(!points.contains(&timers), "{points:?}");
    }
}

#[test]
fn the_root_and_read_only_binds_cannot_be_remounted_read_write() {
    ready!();
    let r = rootfs();
    let vol = tempdir();
    let v = format!("{}:/ro:ro", path_str(vol.path()));
    for target in ["/", "/ro"] {
        assert_eq!(attempt(&r, &["--read-only", "-v", &v], &["remount-rw", target]), Err(EPERM), "{target}");
    }
    // With CAP_SYS_ADMIN (in the container's user namespace) the remount works: the capability is the wall.
    let mut weak = WEAK.to_vec();
    weak.extend(["--read-only", "-v", &v]);
    assert_eq!(attempt(&r, &weak, &["remount-rw", "/ro"]), Ok(String::new()));
}

#[test]
fn host_devices_cannot_be_opened() {
    ready!();
    let r = rootfs();
    for dev in ["/dev/kmsg", "/dev/vda", "/dev/sda", "/dev/mem"] {
        assert_eq!(attempt(&r, WEAK, &["read", dev]), Err(ENOENT), "{dev}");
    }
    assert_eq!(attempt(&r, &[], &["mknod-blk", "/tmp/disk", "8"]), Err(EPERM));
    // A bound /dev is nodev: even a harmless device of the host does not open through it.
    assert!(on_host(&["read", "/dev/null"]).is_ok(), "control");
    for args in [&["-v", "/dev:/data"][..], &["-v", "/dev:/data", "--seccomp", "unconfined", "--cap-add", "all"]] {
        assert_eq!(attempt(&r, args, &["read", "/data/null"]), Err(EACCES), "{args:?}");
    }
}

#[test]
fn the_cgroup_tree_is_read_only_and_rooted_at_the_container() {
    ready!();
    let r = rootfs();
    let o = output(run_in(r.path(), &["--network", "none"], &["cat", "/proc/self/cgroup"]));
    assert!(stdout(&o).lines().any(|l| l == "0::/"), "the cgroup namespace root: {}", stdout(&o));
    for args in [&[][..], WEAK] {
        assert_eq!(attempt(&r, args, &["write", "/sys/fs/cgroup/cgroup.procs", "1"]), Err(EROFS), "{args:?}");
    }
    // With CAP_SYS_ADMIN the read-only mount can be lifted and cgroup.procs written, but only inside the
    // namespace's root: nothing above it is reachable, so the payload stays where burrow put it.
    let script = "/bin/probe remount-rw /sys/fs/cgroup; /bin/probe write /sys/fs/cgroup/cgroup.procs 0; \
                  /bin/probe read /sys/fs/cgroup/../cgroup.procs; grep ^0:: /proc/self/cgroup";
    let mut weak = WEAK.to_vec();
    weak.extend(["--network", "none"]);
    let o = output(run_in(r.path(), &weak, &["sh", "-c", script]));
    assert_eq!(outcome(&o, "remount-rw"), Ok(String::new()), "{}", stderr(&o));
    assert_ne!(outcome(&o, "write"), Err(EROFS));
    assert!(outcome(&o, "read").is_err(), "no cgroup.procs above the namespace root");
    assert!(stdout(&o).lines().any(|l| l == "0::/"), "{}", stdout(&o));
}
