//! The seccomp filter: denied calls fail with EPERM and the payload goes on, newer calls get ENOSYS, nested
//! user namespaces only with --allow-nested, custom profiles, malformed ones.

use crate::probe::*;
use crate::ready;
use crate::support::*;

#[test]
fn a_denied_syscall_returns_eperm_and_the_container_keeps_running() {
    ready!();
    let r = rootfs();
    for nr in [libc::SYS_io_uring_setup, libc::SYS_perf_event_open, libc::SYS_kexec_load, libc::SYS_bpf] {
        let nr = nr.to_string();
        let o = output(attempt_cmd(&r, &[], &["syscall", &nr]));
        assert_eq!(outcome(&o, "syscall"), Err(EPERM), "syscall {nr}");
        assert!(stdout(&o).contains("still running"), "{}", stdout(&o));
    }
    // Unfiltered, the same calls reach the kernel, which answers with its own errors (bad arguments).
    let io_uring = libc::SYS_io_uring_setup.to_string();
    assert_ne!(attempt(&r, &["--seccomp", "unconfined"], &["syscall", &io_uring]), Err(EPERM));
    // A shell goes on after the denied call.
    let o = output(run_in(
        r.path(),
        &["--network", "none"],
        &["sh", "-c", &format!("/bin/probe syscall {io_uring}; echo alive")],
    ));
    assert!(stdout(&o).ends_with("alive\n"), "{}", stdout(&o));
}

#[test]
fn unsafe_personality_flags_are_denied() {
    ready!();
    let r = rootfs();
    // ADDR_NO_RANDOMIZE turns ASLR off for what the process executes next.
    assert_eq!(attempt(&r, &[], &["personality", "0x0040000"]), Err(EPERM));
    assert_eq!(attempt(&r, &[], &["personality", "0xffffffff"]).map(|_| ()), Ok(()), "the query stays allowed");
    assert!(attempt(&r, WEAK, &["personality", "0x0040000"]).is_ok());
}

#[test]
fn new_user_namespaces_need_allow_nested() {
    ready!();
    let r = rootfs();
    assert_eq!(attempt(&r, &[], &["userns"]), Err(EPERM));
    assert_eq!(attempt(&r, &[], &["clone-userns"]), Err(EPERM));
    // clone3 carries its flags in memory the filter cannot read: ENOSYS, so libc falls back to clone.
    assert_eq!(attempt(&r, &[], &["clone3"]), Err(ENOSYS));
    for args in [&["--allow-nested"][..], WEAK] {
        assert!(attempt(&r, args, &["userns"]).is_ok(), "{args:?}");
        assert!(attempt(&r, args, &["clone-userns"]).is_ok(), "{args:?}");
        assert_ne!(attempt(&r, args, &["clone3"]), Err(ENOSYS), "{args:?}");
    }
}

#[test]
fn a_custom_profile_is_applied() {
    ready!();
    let r = rootfs();
    let dir = tempdir();
    let profile = dir.path().join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                         {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]}"#,
    )
    .unwrap();
    let p = path_str(&profile);
    assert_eq!(attempt(&r, &["--seccomp", &p], &["mkdir", "/tmp/x"]), Err(EACCES));
    assert_eq!(attempt(&r, &["--seccomp", &p], &["personality", "8"]), Err(EPERM), "argument rule");
    // Only what the profile says: the default filter's denials are gone.
    assert!(attempt(&r, &["--seccomp", &p], &["personality", "0x0040000"]).is_ok());
    assert!(attempt(&r, &[], &["mkdir", "/tmp/x"]).is_ok());
    // An allow-list profile: ENOSYS for everything else.
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [{"names": ["execve", "brk",
            "arch_prctl", "set_tid_address", "set_robust_list", "rseq", "prlimit64", "mprotect", "readlinkat",
            "getrandom", "uname", "write", "exit_group", "mmap", "munmap", "newfstatat", "fstat", "ioctl"],
            "action": "SCMP_ACT_ALLOW"}]}"#,
    )
    .unwrap();
    assert_eq!(attempt(&r, &["--seccomp", &p], &["mkdir", "/tmp/x"]), Err(ENOSYS));
}

#[test]
fn a_malformed_profile_is_one_line_and_exit_125() {
    ready!();
    let r = rootfs();
    let dir = tempdir();
    let cases = [
        ("syntax.json", "{\"defaultAction\": "),
        ("action.json", r#"{"defaultAction": "SCMP_ACT_EXPLODE"}"#),
        (
            "op.json",
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_MAYBE"}]}]}"#,
        ),
    ];
    for (name, text) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let o = output(attempt_cmd(&r, &["--seccomp", &path_str(&path)], &["status", "Seccomp"]));
        let err = stderr(&o);
        assert_eq!(code(&o), 125, "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
        assert!(err.contains("seccomp profile") && err.contains(name), "{name}: {err}");
    }
    let o = output(attempt_cmd(&r, &["--seccomp", "/does/not/exist.json"], &["status", "Seccomp"]));
    assert_eq!((code(&o), stderr(&o).trim_end().lines().count()), (125, 1), "{}", stderr(&o));
    let o = output(attempt_cmd(&r, &["--cap-add", "CAP_FLY"], &["status", "Seccomp"]));
    assert_eq!((code(&o), stderr(&o).trim_end().lines().count()), (125, 1), "{}", stderr(&o));
}

#[test]
fn the_filter_is_installed_and_unconfined_removes_it() {
    ready!();
    let r = rootfs();
    assert_eq!(attempt(&r, &[], &["status", "Seccomp"]), Ok("2".into()));
    assert_eq!(attempt(&r, &["--seccomp", "unconfined"], &["status", "Seccomp"]), Ok("0".into()));
}
