//! What the payload is: its capabilities, no_new_privs, setuid binaries, the session keyring.

use crate::probe::*;
use crate::support::*;
use crate::{ready, skip};
use std::process::Command;

/// podman's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE
/// SYS_CHROOT SETFCAP.
const DEFAULT_CAPS: u64 = 0x8004_05fb;

fn caps(r: &Rootfs, args: &[&str], set: &str) -> u64 {
    let v = attempt(r, args, &["status", set]).unwrap_or_else(|e| panic!("{set}: errno {e}"));
    u64::from_str_radix(&v, 16).unwrap_or_else(|_| panic!("{set}: {v:?}"))
}

fn all_caps() -> u64 {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").unwrap().trim().parse().unwrap();
    (1u64 << (last + 1)) - 1
}

#[test]
fn root_keeps_only_the_default_capability_set_in_every_set() {
    ready!();
    let r = rootfs();
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(caps(&r, &[], set), DEFAULT_CAPS, "{set}");
    }
    // No inheritable or ambient capabilities for root (CVE-2022-27649).
    assert_eq!(caps(&r, &[], "CapInh"), 0);
    assert_eq!(caps(&r, &[], "CapAmb"), 0);
    assert_eq!(caps(&r, WEAK, "CapEff"), all_caps(), "--cap-add all");
    let raw = 1 << 13;
    assert_eq!(caps(&r, &["--cap-add", "NET_RAW", "--cap-drop", "chown"], "CapEff"), (DEFAULT_CAPS | raw) & !1);
    assert_eq!(caps(&r, &["--cap-drop", "all"], "CapBnd"), 0);
    assert_eq!(caps(&r, &["--cap-drop", "all", "--cap-add", "cap_kill"], "CapEff"), 1 << 5);
}

#[test]
fn a_non_root_user_gets_no_capabilities_unless_added() {
    ready!();
    if subuid_start().is_none() {
        skip!("--user 1000 needs subordinate IDs (run as burrow-t1)");
    }
    let r = rootfs();
    for set in ["CapEff", "CapPrm", "CapAmb", "CapInh"] {
        assert_eq!(caps(&r, &["--user", "1000"], set), 0, "{set}");
    }
    // An added capability reaches a non-root payload as an ambient one.
    let raw = 1 << 13;
    assert_eq!(caps(&r, &["--user", "1000", "--cap-add", "NET_RAW"], "CapEff"), raw);
    assert_eq!(caps(&r, &["--user", "1000", "--cap-add", "NET_RAW"], "CapAmb"), raw);
}

#[test]
fn no_new_privs_is_set_unless_setuid_is_allowed() {
    ready!();
    let r = rootfs();
    assert_eq!(attempt(&r, &[], &["status", "NoNewPrivs"]), Ok("1".into()));
    assert_eq!(attempt(&r, &["--allow-setuid"], &["status", "NoNewPrivs"]), Ok("0".into()));
}

#[test]
fn a_setuid_binary_inside_gains_nothing() {
    ready!();
    if subuid_start().is_none() {
        skip!("a non-root user inside needs subordinate IDs (run as burrow-t1)");
    }
    let r = rootfs();
    // Owned by the caller, which is root inside: a setuid-root binary of the container.
    install_probe(&r.path().join("bin/suid-probe"), 0o4755);
    let run = |args: &[&str]| {
        let mut all = vec!["--user", "1000"];
        all.extend_from_slice(args);
        let o = output(run_in(r.path(), &all, &["/bin/suid-probe", "setuid-status"]));
        (outcome(&o, "setuid-status"), stdout(&o))
    };
    for driver in ["kernel", "fuse"] {
        let (o, line) = run(&["--overlay-driver", driver]);
        assert!(o.is_err() && line.contains("euid=1000 capeff=0000000000000000"), "{driver}: {line}");
    }
    assert!(run(&["--read-only"]).0.is_err(), "a plain bind of the rootfs is nosuid too");
    // With --allow-setuid it works: the bit counts (inside the user namespace only).
    let (o, line) = run(&["--allow-setuid"]);
    assert!(o.is_ok() && line.contains("euid=0"), "{line}");
    let (o, line) = run(&["--allow-setuid", "--overlay-driver", "fuse"]);
    assert!(o.is_ok() && line.contains("euid=0"), "fuse: {line}");
}

/// Runs `inner` under a new session keyring holding a user key `name` = "host-key" (python3's ctypes, as a
/// login session's keyring would hold a key); returns the key's serial and the output.
fn with_host_key(name: &str, inner: Command) -> (String, std::process::Output) {
    let script = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
SYS_keyctl, SYS_add_key = 250, 248
if libc.syscall(SYS_keyctl, 1, None) < 0:
    sys.exit("join session keyring: errno %d" % ctypes.get_errno())
serial = libc.syscall(SYS_add_key, b"user", sys.argv[1].encode(), b"host-key", 8, -3)
if serial < 0:
    sys.exit("add_key: errno %d" % ctypes.get_errno())
print("serial", serial, flush=True)
os.execv(sys.argv[2], sys.argv[2:])
"#;
    let mut c = Command::new("/usr/bin/python3");
    c.env_clear().current_dir("/");
    c.envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))));
    c.arg("-c").arg(script).arg(name).arg(inner.get_program()).args(inner.get_args());
    let o = output(c);
    let serial = stdout(&o).lines().find_map(|l| l.strip_prefix("serial ").map(str::to_string));
    (serial.unwrap_or_else(|| panic!("no serial: {}", stderr(&o))), o)
}

#[test]
fn the_callers_session_keyring_is_out_of_reach() {
    ready!();
    if std::env::consts::ARCH != "x86_64" {
        skip!("the keyring helper uses x86_64 syscall numbers");
    }
    let name = format!("burrow-test-{}", std::process::id());
    let host = host_probe();
    let mut control = Command::new(&host.path);
    control.args(["key-search", &name]);
    let (_, o) = with_host_key(&name, control);
    assert!(outcome(&o, "key-search").is_ok(), "control: the host finds its key: {}", stdout(&o));
    let r = rootfs();
    let (_, o) = with_host_key(&name, attempt_cmd(&r, &[], &["key-search", &name]));
    assert!(outcome(&o, "key-search").is_err(), "found from inside: {}", stdout(&o));
    // By serial number: not possessed (the key is on the caller's keyring, not the container's).
    let mut serial_probe = Command::new("true");
    serial_probe.arg("x");
    let (serial, _) = with_host_key(&name, serial_probe);
    assert!(attempt(&r, &[], &["key-read", &serial]).is_err());
    // Keyrings themselves keep working inside.
    assert!(attempt(&r, &[], &["key-add"]).is_ok());
    // /proc/keys, which lists every key the caller may view, is masked.
    assert_eq!(attempt(&r, &[], &["read", "/proc/keys"]), Ok(String::new()));
}

#[test]
fn the_hardening_is_the_same_with_a_single_id_map() {
    ready!();
    let r = rootfs();
    // The map users without subordinate IDs get (setgroups denied): the same profile must apply.
    let single = ["--userns", "single"];
    assert_eq!(caps(&r, &single, "CapEff"), DEFAULT_CAPS);
    assert_eq!(caps(&r, &single, "CapBnd"), DEFAULT_CAPS);
    assert_eq!(attempt(&r, &single, &["status", "NoNewPrivs"]), Ok("1".into()));
    // The default profile is one filter (docs/security.md).
    assert_eq!(attempt(&r, &single, &["status", "Seccomp_filters"]), Ok("1".into()));
    assert_eq!(attempt(&r, &single, &["userns"]), Err(EPERM));
    assert_eq!(attempt(&r, &single, &["read", "/proc/keys"]), Ok(String::new()));
}
