//! The copy-on-write root (issue 3) through the real binary: both drivers, the lower layer left untouched,
//! `--upper` persistence across runs and drivers, ephemeral layers leaving nothing, `--read-only`, and a FUSE
//! server that dies. Run as an unprivileged user with subids (burrow-t1).

mod support;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::*;

/// Every entry of a tree with its type, mode, size, owner and content or link target.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                stack.push(p.clone());
                "dir".into()
            } else {
                format!("file {}", String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).len())
            };
            let key = p.strip_prefix(root).unwrap().display().to_string();
            out.insert(key, format!("{what} {:o} {}:{}", m.mode(), m.uid(), m.gid()));
        }
    }
    out
}

macro_rules! setup {
    () => {{
        if let Some(reason) = unusable() {
            skip!("{reason}");
        }
        if subuid_start().is_none() {
            skip!("the caller has no /etc/subuid range (run as burrow-t1)");
        }
        if std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse").is_err() {
            skip!("/dev/fuse is not usable (scripts/ci-setup.sh makes it 0666)");
        }
    }};
}

const CHANGES: &str = "echo hi > /etc/motd && rm /bin/ls && mkdir /new && chown 1000:1000 /new && \\
                       mv /etc/passwd /etc/passwd.old && cat /etc/motd && stat -c %u /new";

#[test]
fn writes_land_in_the_layer_and_the_rootfs_is_untouched_with_every_driver() {
    setup!();
    let r = Rootfs::new();
    let before = snapshot(r.path());
    for driver in ["auto", "kernel", "fuse"] {
        let o = output(run_in(r.path(), &["--overlay-driver", driver, "--verbose"], &["sh", "-c", CHANGES]));
        assert_eq!(expect(&o, 0), "hi\n1000\n", "driver {driver}");
        let want = if driver == "auto" { "kernel" } else { driver };
        assert!(stderr(&o).contains(&format!("copy-on-write driver: {want}")), "{}", stderr(&o));
        assert_eq!(snapshot(r.path()), before, "driver {driver} changed the rootfs");
    }
}

#[test]
fn a_kept_upper_persists_across_runs_and_drivers() {
    setup!();
    let r = Rootfs::new();
    let state = tempdir();
    let upper = state.path().join("state");
    let up = upper.to_str().unwrap();
    let o = output(run_in(
        r.path(),
        &["--overlay-driver", "fuse", "--upper", up],
        &["sh", "-c", "touch /kept; rm /bin/ls; echo x > /etc/hostname.new"],
    ));
    expect(&o, 0);
    for driver in ["kernel", "fuse"] {
        let o = output(run_in(
            r.path(),
            &["--overlay-driver", driver, "--upper", up],
            &["sh", "-c", "ls /kept; test -e /bin/ls || echo ls-gone; cat /etc/hostname.new"],
        ));
        assert_eq!(expect(&o, 0), "/kept\nls-gone\nx\n", "read back with {driver}");
    }
    let o = output(run_in(
        r.path(),
        &["--overlay-driver", "kernel", "--upper", up],
        &["sh", "-c", "rm /kept; touch /by-kernel"],
    ));
    expect(&o, 0);
    let o = output(run_in(
        r.path(),
        &["--overlay-driver", "fuse", "--upper", up],
        &["sh", "-c", "test -e /kept || echo kept-gone; ls /by-kernel"],
    ));
    assert_eq!(expect(&o, 0), "kept-gone\n/by-kernel\n");
    assert!(r.path().join("bin/ls").exists() && !r.path().join("kept").exists());
}

#[test]
fn an_ephemeral_layer_leaves_nothing_after_exit_or_sigkill() {
    setup!();
    let r = Rootfs::new();
    // A private TMPDIR gives this test its own state base (XDG_RUNTIME_DIR is unset for burrow here).
    let tmp = tempdir();
    let base = tmp.path().join(format!("burrow-{}", nix::unistd::getuid()));
    let entries = || state_dirs(&base);
    // The default network's helper needs a state directory (its socket), and so has this run.
    for driver in ["kernel", "fuse"] {
        let mut c = run_in(
            r.path(),
            &["--overlay-driver", driver],
            &["sh", "-c", "dd if=/dev/zero of=/big bs=1k count=64 2>/dev/null"],
        );
        c.env("TMPDIR", tmp.path());
        expect(&output(c), 0);
        assert!(entries().is_empty(), "{driver}: state left after exit: {:?}", entries());
        let mut c =
            run_in(r.path(), &["--overlay-driver", driver], &["sh", "-c", "touch /x; echo ready; exec sleep 1000"]);
        c.env("TMPDIR", tmp.path()).stdout(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        assert_eq!(entries().len(), 1, "the running container has its state directory");
        let procs = descendants(child.id() as i32);
        child.kill().unwrap();
        child.wait().unwrap();
        let left = || procs.iter().copied().filter(|p| alive(*p)).collect::<Vec<_>>();
        assert!(eventually(Duration::from_secs(10), || left().is_empty()), "{driver}: processes left: {:?}", left());
        assert!(eventually(Duration::from_secs(10), || entries().is_empty()), "{driver}: state left: {:?}", entries());
    }
}

/// The containers' state directories under a runtime base, named by their 12-hex-digit ids (the user-namespace
/// keeper's socket and lock, tests/keeper.rs, and the lifecycle records' `containers` live next to them).
fn state_dirs(base: &Path) -> Vec<std::ffi::OsString> {
    let id = |n: &std::ffi::OsString| n.len() == 12 && n.to_string_lossy().bytes().all(|b| b.is_ascii_hexdigit());
    let dirs = std::fs::read_dir(base).map(|d| d.flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name()));
    dirs.map(|d| d.filter(id).collect()).unwrap_or_default()
}

/// An unnamed foreground run whose layer is ephemeral and that needs no network helper creates nothing on the
/// host, not even while it runs: the layer's tmpfs is mounted over the runtime directory in the container's own
/// mount namespace. A named run has its state directory.
#[test]
fn an_ephemeral_layer_without_a_network_helper_needs_no_state_directory() {
    setup!();
    let r = Rootfs::new();
    let tmp = tempdir();
    let base = tmp.path().join(format!("burrow-{}", nix::unistd::getuid()));
    for (args, dirs) in [(&["--network", "none"][..], 0), (&["--network", "none", "--name", "cow-named"], 1)] {
        let payload = ["sh", "-c", "echo x > /x && cat /x && exec sleep 1000"];
        let mut c = run_in(r.path(), args, &payload);
        c.env("TMPDIR", tmp.path()).stdout(Stdio::piped());
        let mut child = Reaped(c.spawn().unwrap());
        let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "x", "{args:?}: the layer is not writable");
        let procs = descendants(child.0.id() as i32);
        assert_eq!(state_dirs(&base).len(), dirs, "{args:?}: {:?}", state_dirs(&base));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let left = || procs.iter().copied().filter(|p| alive(*p)).collect::<Vec<_>>();
        assert!(eventually(Duration::from_secs(10), || left().is_empty()), "{args:?}: processes left: {:?}", left());
        assert!(eventually(Duration::from_secs(10), || state_dirs(&base).is_empty()), "{args:?}: state left");
    }
    assert!(!r.path().join("x").exists(), "a write reached the rootfs");
}

#[test]
fn read_only_gives_no_layer() {
    setup!();
    let r = Rootfs::new();
    let o = output(run_in(r.path(), &["--read-only", "--verbose"], &["sh", "-c", "touch /x 2>&1 | grep -c Read-only"]));
    assert_eq!(expect(&o, 0), "1\n");
    assert!(stderr(&o).contains("copy-on-write driver: none"), "{}", stderr(&o));
}

#[test]
fn a_dead_fuse_server_stops_the_container_with_a_clear_error() {
    setup!();
    let r = Rootfs::new();
    // Both launch shapes, in a runtime directory of this test's: without a keeper the server is P1's child;
    // with one (started by the first run, gone 2 s after the last) burrow itself is its parent (a direct
    // launch, docs/design/launch-sequence.md).
    let runtime = tempdir();
    std::fs::set_permissions(runtime.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let env = |c: &mut std::process::Command| {
        c.env("XDG_RUNTIME_DIR", runtime.path()).env("BURROW_KEEPER_IDLE", "2");
    };
    assert!(!kill_the_fuse_server(&r, &["--userns-keeper=off"], env), "without a keeper P1 starts the server");
    let mut first = run_in(r.path(), &["--network", "none"], &["true"]);
    env(&mut first);
    expect(&output(first), 0);
    assert!(kill_the_fuse_server(&r, &[], env), "a direct launch: burrow starts the server");
}

/// Kills the FUSE server of a running container and checks the outcome; true when the server was burrow's own
/// child.
fn kill_the_fuse_server(r: &Rootfs, args: &[&str], env: impl Fn(&mut std::process::Command)) -> bool {
    let mut all = vec!["--overlay-driver", "fuse", "--network", "none"];
    all.extend_from_slice(args);
    let mut c =
        run_in(r.path(), &all, &["sh", "-c", "echo ready; while :; do cat /etc/passwd >/dev/null; sleep 0.05; done"]);
    env(&mut c);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    // The server is burrow's child (a direct launch) or P1's, outside the container's PID namespace: the one
    // process there with /dev/fuse open.
    let burrow_pid = child.id() as i32;
    let all = descendants(burrow_pid);
    let my_pidns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let holds_fuse = |p: i32| {
        let fds = std::fs::read_dir(format!("/proc/{p}/fd")).into_iter().flatten().flatten();
        fds.filter_map(|fd| std::fs::read_link(fd.path()).ok()).any(|t| t == std::path::Path::new("/dev/fuse"))
    };
    let server = all
        .iter()
        .copied()
        .find(|p| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok().as_ref() == Some(&my_pidns) && holds_fuse(*p))
        .expect("the FUSE server process");
    let parent = parent_of(server).expect("the FUSE server's parent");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server), nix::sys::signal::Signal::SIGKILL).unwrap();
    let o = wait_output(child, Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("FUSE overlay server") && err.contains("died"), "{err}");
    let left = || all.iter().copied().filter(|p| alive(*p)).collect::<Vec<_>>();
    assert!(eventually(Duration::from_secs(10), || left().is_empty()), "processes left: {:?}", left());
    parent == burrow_pid
}
