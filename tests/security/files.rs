//! Host files: outside the root and binds, behind a symlink in the root, behind an inherited descriptor.

use crate::probe::*;
use crate::support::*;
use crate::{ready, skip};
use std::process::Command;

#[test]
fn host_files_outside_the_root_are_unreachable() {
    ready!();
    let s = secret();
    let path = path_str(&s.path);
    assert_eq!(on_host(&["read", &path]), Ok("host-secret".into()), "control: the probe reads it on the host");
    let r = rootfs();
    for args in [&[][..], WEAK] {
        assert!(attempt(&r, args, &["read", &path]).is_err(), "absolute path, {args:?}");
        assert!(attempt(&r, args, &["parent-walk", &path]).is_err(), "../ above the root, {args:?}");
    }
    // The root's host path is visible in mountinfo (the overlay's lowerdir, or the bind's root); a path built
    // from it must still not lead out.
    let o = output(attempt_cmd(&r, &[], &["read", "/proc/self/mountinfo"]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let from_mountinfo =
        format!("{}/../{}/secret", path_str(r.path()), s.dir.path().file_name().unwrap().to_str().unwrap());
    assert_eq!(on_host(&["read", &from_mountinfo]), Ok("host-secret".into()), "control");
    assert!(attempt(&r, WEAK, &["read", &from_mountinfo]).is_err());
}

#[test]
fn a_host_process_root_is_unreachable_through_proc() {
    ready!();
    let s = secret();
    let mut sleeper = Reaped(Command::new("sleep").arg("30").spawn().expect("sleep"));
    let via_proc = format!("/proc/{}/root{}", sleeper.0.id(), path_str(&s.path));
    assert_eq!(on_host(&["read", &via_proc]), Ok("host-secret".into()), "control: /proc/PID/root on the host");
    let r = rootfs();
    for args in [&[][..], WEAK] {
        assert!(attempt(&r, args, &["read", &via_proc]).is_err(), "{args:?}");
        assert!(attempt(&r, args, &["read", &format!("/proc/1/root{}", path_str(&s.path))]).is_err(), "{args:?}");
    }
    let _ = sleeper.0.kill();
}

#[test]
fn file_handles_are_denied_by_seccomp() {
    ready!();
    let r = rootfs();
    // open_by_handle_at decodes any inode of a filesystem the container can see (the "shocker" escape).
    assert_eq!(attempt(&r, &[], &["handle", "/bin/probe"]), Err(EPERM));
    // Without the filter the calls reach the kernel (which may still refuse them for its own reasons).
    assert_ne!(attempt(&r, WEAK, &["handle", "/bin/probe"]), Err(EPERM), "the kernel should answer, not the filter");
}

#[test]
fn a_symlink_in_the_root_cannot_redirect_a_bind_onto_the_host() {
    ready!();
    let r = rootfs();
    let host_dir = tempdir();
    std::os::unix::fs::symlink(host_dir.path(), r.path().join("escape")).unwrap();
    assert_eq!(std::fs::canonicalize(r.path().join("escape")).unwrap(), host_dir.path().canonicalize().unwrap());
    let vol = tempdir();
    std::fs::write(vol.path().join("f"), "vol\n").unwrap();
    let v = format!("{}:/escape/x", path_str(vol.path()));
    let inside = format!("{}/x/f", path_str(host_dir.path()));
    for extra in [&[][..], &["--rootfs-rw"][..]] {
        let mut args = vec!["-v", v.as_str()];
        args.extend_from_slice(extra);
        // The bind lands inside the root, at the place the symlink names there.
        assert_eq!(attempt(&r, &args, &["read", &inside]), Ok("vol".into()), "{extra:?}");
        let leaked: Vec<_> = std::fs::read_dir(host_dir.path()).unwrap().collect();
        assert!(leaked.is_empty(), "the host directory got {leaked:?} ({extra:?})");
    }
}

/// The caller hands burrow descriptors 3-5, all open on `file`.
fn with_fds(file: &std::path::Path, r: &Rootfs, args: &[&str], probe_args: &[&str]) -> Outcome {
    let o = through_shell("3<\"$1\" 4<\"$1\" 5<\"$1\"", file, attempt_cmd(r, args, probe_args));
    outcome(&o, probe_args[0])
}

#[test]
fn descriptors_inherited_from_the_caller_are_closed() {
    ready!();
    let s = secret();
    let r = rootfs();
    assert_eq!(with_fds(&s.path, &r, &[], &["fd", "5"]), Err(EBADF));
    assert_eq!(with_fds(&s.path, &r, &["--preserve-fds", "3"], &["fd", "5"]), Ok("host-secret".into()));
    assert_eq!(with_fds(&s.path, &r, &["--preserve-fds", "2"], &["fd", "5"]), Err(EBADF), "only 3..3+N");
    // Asking for a descriptor the caller does not have is an input error.
    let o = output(attempt_cmd(&r, &["--preserve-fds", "40"], &["fd", "3"]));
    assert_eq!(code(&o), 125, "{}", stderr(&o));
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("--preserve-fds 40: descriptor"), "{}", stderr(&o));
}

#[test]
fn landlock_confines_a_leaked_directory_descriptor() {
    ready!();
    if std::fs::read_to_string("/sys/kernel/security/lsm").is_ok_and(|l| !l.contains("landlock")) {
        skip!("Landlock is not enabled in this kernel (lsm= boot parameter)");
    }
    let s = secret();
    let r = rootfs();
    let dir = s.dir.path().to_path_buf();
    let run = |args: &[&str]| {
        outcome(&through_shell("3<\"$1\"", &dir, attempt_cmd(&r, args, &["read-at", "3", "secret"])), "read-at")
    };
    // A directory descriptor passed in on purpose reaches the host: --landlock still stops it.
    assert_eq!(run(&["--preserve-fds", "1"]), Ok("host-secret".into()));
    assert_eq!(run(&["--preserve-fds", "1", "--landlock"]), Err(EACCES));
    // Inside its own tree the payload works as before.
    assert_eq!(attempt(&r, &["--landlock"], &["read", "/etc/hostname"]), Ok("burrow".into()));
}
