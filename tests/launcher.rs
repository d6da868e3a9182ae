//! Integration tests of `burrow run` (the launcher core), run as an unprivileged user WITH subordinate IDs.
//! scripts/test.sh runs this binary as the test user burrow-t1; `cargo test` as any such user works too.

mod support;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;
use support::*;

#[test]
fn both_id_ranges_are_mapped_and_chown_works() {
    let sub = require_subids!();
    let r = Rootfs::new();
    let data = tempdir();
    let vol = format!("{}:/data", data.path().display());
    // --userns=private: the helpers map this container's own namespace, so that the maps seen inside are
    // relative to the host (one from the user-namespace keeper shows them relative to the keeper's: tests/keeper.rs).
    let o = output(run_in(
        r.path(),
        &["-v", &vol, "--userns=private"],
        &["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; touch /data/f && chown 1000:1000 /data/f && stat -c %u:%g /data/f"],
    ));
    let out = expect(&o, 0);
    let uid = nix::unistd::getuid().as_raw();
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["0", &uid.to_string(), "1"], "{out}");
    assert_eq!(lines[1], ["1", &sub.to_string(), "65536"], "{out}");
    assert_eq!(lines.last().unwrap(), &["1000:1000"], "{out}");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(data.path().join("f")).unwrap();
    assert_eq!(meta.uid(), sub + 999, "container uid 1000 is subordinate uid start+999 on the host");
    assert!(stderr(&o).is_empty(), "no notice expected with subids: {}", stderr(&o));
}

#[test]
fn userns_single_is_silent_and_maps_one_id() {
    let _ = require_subids!();
    let r = Rootfs::new();
    let o = output(run_in(
        r.path(),
        &["--userns=single"],
        &["sh", "-c", "cat /proc/self/uid_map | wc -l; cat /proc/self/setgroups"],
    ));
    assert_eq!(expect(&o, 0), "1\ndeny\n");
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

#[test]
fn keep_id_keeps_the_callers_ids_and_file_ownership() {
    let _ = require_subids!();
    let r = Rootfs::new();
    let data = tempdir();
    let vol = format!("{}:/data", data.path().display());
    let o =
        output(run_in(r.path(), &["--userns=keep-id", "-v", &vol], &["sh", "-c", "id -u; id -g; touch /data/mine"]));
    let (uid, gid) = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
    assert_eq!(expect(&o, 0), format!("{uid}\n{gid}\n"));
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(data.path().join("mine")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
}

#[test]
fn user_flag_runs_the_payload_as_that_user() {
    let sub = require_subids!();
    let r = Rootfs::new();
    let data = tempdir();
    std::fs::set_permissions(data.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let vol = format!("{}:/data", data.path().display());
    let o = output(run_in(
        r.path(),
        &["--user", "user", "-v", &vol],
        &["sh", "-c", "id -u; id -g; echo $HOME; touch /data/u"],
    ));
    assert_eq!(expect(&o, 0), "1000\n1000\n/home/user\n");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(data.path().join("u")).unwrap().uid(), sub + 999);
    let o = output(run_in(r.path(), &["--user", "4242:4343"], &["sh", "-c", "echo $(id -u):$(id -g)"]));
    assert_eq!(expect(&o, 0), "4242:4343\n");
}

#[test]
fn hostname_and_etc_files_agree() {
    let _ = require_subids!();
    let r = Rootfs::new();
    let o = output(run_in(
        r.path(),
        &["--hostname", "box"],
        &["sh", "-c", "hostname; cat /etc/hostname; grep -c box /etc/hosts"],
    ));
    assert_eq!(expect(&o, 0), "box\nbox\n1\n");
}

#[test]
fn ps_sees_only_the_container() {
    let _ = require_subids!();
    let r = Rootfs::new();
    let o = output(run_in(r.path(), &[], &["sh", "-c", "ps -o pid=,comm= > /tmp/ps; cat /tmp/ps; echo $$"]));
    let out = expect(&o, 0);
    // Exactly burrow's init (1), the shell (2) and ps itself: nothing of the host.
    let pids: Vec<u32> = out.lines().filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect();
    assert_eq!(pids.len(), 4, "{out}");
    assert_eq!(&pids[..2], &[1, 2], "{out}");
    assert_eq!(pids[3], 2, "the shell is PID 2: {out}");
}

#[test]
fn exit_statuses_follow_the_shell_convention() {
    let _ = require_subids!();
    let r = Rootfs::new();
    let cases: [(&[&str], i32); 5] = [
        (&["true"], 0),
        (&["sh", "-c", "exit 3"], 3),
        (&["no-such-command"], 127),
        (&["/etc/passwd"], 126),
        (&["sh", "-c", "kill -9 $$"], 137),
    ];
    for (cmd, want) in cases {
        let o = output(run_in(r.path(), &[], cmd));
        expect(&o, want);
        if (126..128).contains(&want) {
            let err = stderr(&o);
            assert_eq!(err.lines().count(), 1, "one line for {cmd:?}: {err}");
            assert!(err.starts_with("burrow: cannot run"), "{err}");
        }
    }
    let o = output(run_in(r.path(), &["--no-init"], &["sh", "-c", "echo $$; exit 5"]));
    assert_eq!(expect(&o, 5), "1\n");
}

/// The payload starts with SIGPIPE's default action, as from a shell: burrow's own runtime ignores it, and an
/// ignored signal would stay ignored across exec (a writer to a closed pipe then reports EPIPE instead of ending).
#[test]
fn the_payload_gets_sigpipe_s_default_action() {
    let _ = require_subids!();
    let r = Rootfs::new();
    for extra in [&[][..], &["--no-init"][..]] {
        let o = output(run_in(r.path(), extra, &["sh", "-c", "yes | head -n 1; grep SigIgn /proc/self/status"]));
        let out = expect(&o, 0);
        assert!(stderr(&o).is_empty(), "{extra:?}: {}", stderr(&o));
        let ignored = out.lines().find_map(|l| l.strip_prefix("SigIgn:")).map(|m| u64::from_str_radix(m.trim(), 16));
        let ignored = ignored.expect("a SigIgn line").expect("a hex mask");
        assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "{extra:?}: SIGPIPE ignored: {out}");
        assert!(out.starts_with("y\n"), "{out}");
    }
}

#[test]
fn bad_input_exits_125_with_one_line() {
    let _ = require_subids!();
    let r = Rootfs::new();
    let bad_subuid = tempdir();
    let f = bad_subuid.path().join("subuid");
    let me = nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap().unwrap().name;
    std::fs::write(&f, format!("{me}:abc:65536\n")).unwrap();
    let root = r.path().to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", "--rootfs", "/no/such/rootfs", "--", "true"], "rootfs /no/such/rootfs"),
        (vec!["run", "--rootfs", root, "-v", "nocolon", "--", "true"], "malformed --volume"),
        (vec!["run", "--rootfs", root, "--user", "nobody-here", "--", "true"], "unknown user \"nobody-here\""),
        (vec!["run", "--rootfs", root, "--no-such-flag"], "--no-such-flag"),
        (vec!["run", "--rootfs", root, "-e", "=x", "--", "true"], "malformed --env"),
    ];
    for (args, want) in cases {
        let mut c = burrow();
        c.args(&args);
        let o = output(c);
        expect(&o, 125);
        let err = stderr(&o);
        assert!(err.contains(want), "{args:?}: {err}");
        if !args.contains(&"--no-such-flag") {
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        }
    }
    let mut c = run_in(r.path(), &[], &["true"]);
    c.env("BURROW_SUBUID_FILE", &f);
    let o = output(c);
    expect(&o, 125);
    let err = stderr(&o);
    assert!(err.contains(":1: malformed entry for") && err.lines().count() == 1, "{err}");
}

#[test]
fn read_only_and_read_write_binds() {
    let _ = require_subids!();
    let r = Rootfs::new();
    let (ro, rw) = (tempdir(), tempdir());
    let o = output(run_in(
        r.path(),
        &["--read-only", "-v", &format!("{}:/ro:ro", ro.path().display()), "-v", &format!("{}:/rw", rw.path().display())],
        &["sh", "-c", "touch /ro/x 2>/dev/null && echo ro-writable; echo hello > /rw/y; touch /rootfs-file 2>/dev/null || echo root-ro"],
    ));
    assert_eq!(expect(&o, 0), "root-ro\n");
    assert!(!ro.path().join("x").exists());
    assert_eq!(std::fs::read_to_string(rw.path().join("y")).unwrap(), "hello\n");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(rw.path().join("y")).unwrap().uid(), nix::unistd::getuid().as_raw());
}

#[test]
fn dev_tmp_and_tmpfs_directories_are_private_and_separate() {
    let _ = require_subids!();
    let r = Rootfs::new();
    let script = "ls /dev | tr '\\n' ' '; echo; stat -c %a /tmp /dev/shm /scratch /data | tr '\\n' ' '; echo; \
        touch /tmp/a /dev/shm/b /scratch/c && ls /tmp /dev/shm /scratch /data | tr '\\n' ' '; echo; \
        echo x > /dev/null && head -c 3 /dev/zero | od -An -tx1; \
        grep -E ' /(tmp|dev|dev/shm|scratch) ' /proc/self/mountinfo | grep -cv 'nosuid,nodev'";
    let o = output(run_in(r.path(), &["--tmpfs", "/scratch", "--tmpfs", "/data"], &["sh", "-c", script]));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}\n{}", stderr(&o));
    assert_eq!(lines[0].trim(), "core fd full null ptmx pts random shm stderr stdin stdout tty urandom zero");
    assert_eq!(lines[1].trim(), "1777 1777 1777 1777");
    // Each directory is its own: a file made in one is in no other.
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["/data:", "/dev/shm:", "b", "/scratch:", "c", "/tmp:", "a"]
    );
    assert_eq!(lines[3].trim(), "00 00 00");
    // Every one of those mounts is nosuid and nodev (grep -c counts the lines without both: none).
    assert_eq!(lines[4], "0", "{out}");
    assert_eq!(code(&o), 1, "grep -c found nothing to count, so it exits 1: {}", stderr(&o));
}

#[test]
fn a_symlinked_bind_target_stays_inside_the_rootfs() {
    let _ = require_subids!();
    let r = Rootfs::new();
    let src = tempdir();
    // /link points at a host path by absolute name (not under /tmp, which is a tmpfs inside): it must be
    // resolved, and created, inside the rootfs.
    let home = std::env::var("HOME").expect("HOME");
    let outside = std::path::PathBuf::from(home).join(format!(".burrow-escape-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&outside);
    std::os::unix::fs::symlink(&outside, r.path().join("link")).unwrap();
    let o =
        output(run_in(r.path(), &["--rootfs-rw", "-v", &format!("{}:/link/data", src.path().display())], &["true"]));
    expect(&o, 0);
    let escaped = outside.exists();
    let _ = std::fs::remove_dir_all(&outside);
    assert!(!escaped, "the mount target escaped onto the host at {}", outside.display());
    let inside = r.path().join(outside.strip_prefix("/").unwrap()).join("data");
    assert!(inside.is_dir(), "target created inside the rootfs at {}", inside.display());
}

#[test]
fn environment_and_workdir() {
    let _ = require_subids!();
    let r = Rootfs::new();
    let d = tempdir();
    let envfile = d.path().join("env");
    std::fs::write(&envfile, "# comment\nFROM_FILE=1\n\nBOTH=file\n").unwrap();
    let mut c = run_in(
        r.path(),
        &["-e", "A=b c", "-e", "BOTH=flag", "-e", "INHERITED", "--env-file", envfile.to_str().unwrap(), "-w", "/tmp"],
        &["sh", "-c", "pwd; echo \"$A|$FROM_FILE|$BOTH|$INHERITED|$SECRET|$container\"; echo $HOME"],
    );
    c.env("SECRET", "leak").env("INHERITED", "yes");
    assert_eq!(expect(&output(c), 0), "/tmp\nb c|1|flag|yes||burrow\n/root\n");
    let mut c = run_in(r.path(), &["--preserve-env"], &["sh", "-c", "echo $SECRET"]);
    c.env("SECRET", "kept");
    assert_eq!(expect(&output(c), 0), "kept\n");
}

/// The two launch shapes (docs/design/launch-sequence.md): the arguments of a run with P1 (no keeper: it maps
/// its own namespace), then of a direct launch (a keeper, which the run made here first starts, and nothing
/// else that needs P1).
fn both_shapes(r: &Rootfs) -> [&'static [&'static str]; 2] {
    expect(&output(run_in(r.path(), &["--network", "none"], &["true"])), 0);
    [&["--userns-keeper=off"], &["--network", "none"]]
}

#[test]
fn sigterm_to_burrow_reaches_the_payload() {
    let _ = require_subids!();
    let r = Rootfs::new();
    for args in both_shapes(&r) {
        let script = "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done";
        let mut c = run_in(r.path(), args, &["sh", "-c", script]);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        assert_eq!(lines.next().unwrap().unwrap(), "got-term");
        let o = wait_output(child, Duration::from_secs(20));
        assert_eq!(o.status.code(), Some(7), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn orphans_are_reaped_by_init() {
    let _ = require_subids!();
    let r = Rootfs::new();
    let o = output(run_in(r.path(), &[], &["sh", "-c", "(sh -c 'exit 0' &); sleep 0.5; ps -o stat= | grep -c Z"]));
    assert_eq!(stdout(&o), "0\n", "a zombie was left: {}", stderr(&o));
}

#[test]
fn sigkill_of_burrow_leaves_nothing_behind() {
    let _ = require_subids!();
    let r = Rootfs::new();
    let shapes = both_shapes(&r);
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let tmp_before: Vec<_> = std::fs::read_dir("/tmp").unwrap().flatten().map(|e| e.file_name()).collect();
    for args in shapes {
        let mut c = run_in(r.path(), args, &["sh", "-c", "echo ready; sleep 1000 & sleep 1000"]);
        c.stdout(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        let pid = child.id() as i32;
        // Both sleeps (the shell may have exec'd the second).
        let comm = |p: &i32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        let started = || descendants(pid).iter().filter(|p| comm(p) == "sleep\n").count() == 2;
        assert!(eventually(Duration::from_secs(5), started), "container processes did not start");
        let procs = descendants(pid);
        child.kill().unwrap();
        child.wait().unwrap();
        let left = || procs.iter().copied().filter(|p| alive(*p)).collect::<Vec<_>>();
        assert!(eventually(Duration::from_secs(10), || left().is_empty()), "{args:?}: processes left: {:?}", left());
        assert_eq!(std::fs::read_to_string("/proc/self/mountinfo").unwrap(), mounts_before, "host mounts changed");
    }
    let tmp_after: Vec<_> = std::fs::read_dir("/tmp").unwrap().flatten().map(|e| e.file_name()).collect();
    let new: Vec<_> =
        tmp_after.iter().filter(|n| !tmp_before.contains(n) && n.to_string_lossy().contains("burrow")).collect();
    let new: Vec<_> = new
        .into_iter()
        .filter(|n| {
            !n.to_string_lossy().starts_with("burrow-rootfs.") && !n.to_string_lossy().starts_with("burrow-test.")
        })
        .collect();
    assert!(new.is_empty(), "temporary files left: {new:?}");
}

#[test]
fn the_host_root_default_is_copy_on_write_with_home_and_cwd_writable() {
    let _ = require_subids!();
    let cwd = tempdir();
    let marker = format!("/usr/burrow-cow-{}", std::process::id());
    let script = format!(
        "pwd; touch {marker} && echo usr-cow; touch ./here && echo cwd-rw; test -d /proc/1 && echo proc; hostname"
    );
    let mut c = burrow();
    c.current_dir(cwd.path()).args(["run", "--", "sh", "-c", &script]);
    let out = expect(&output(c), 0);
    assert_eq!(out, format!("{}\nusr-cow\ncwd-rw\nproc\nburrow\n", cwd.path().canonicalize().unwrap().display()));
    assert!(cwd.path().join("here").exists());
    assert!(!std::path::Path::new(&marker).exists(), "a write to /usr reached the host");
    let mut c = burrow();
    c.current_dir(cwd.path()).args(["run", "--read-only", "--", "sh", "-c", "touch /usr/x 2>/dev/null || echo usr-ro"]);
    assert_eq!(expect(&output(c), 0), "usr-ro\n");
}

#[test]
fn doctor_reports_user_namespaces_ok() {
    let _ = require_subids!();
    let mut c = burrow();
    c.arg("doctor");
    let out = expect(&output(c), 0);
    assert!(out.lines().any(|l| l.starts_with("ok   user namespaces")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("ok   subordinate uids")), "{out}");
}

fn interfaces(proc_net_dev: &str) -> Vec<String> {
    proc_net_dev.lines().skip(2).filter_map(|l| Some(l.split(':').next()?.trim().to_string())).collect()
}

#[test]
fn network_none_has_only_loopback_up_and_host_shares_the_hosts() {
    let _ = require_subids!();
    let r = Rootfs::new();
    let o = output(run_in(
        r.path(),
        &["--network", "none"],
        &["sh", "-c", "cat /sys/class/net/lo/flags; cat /proc/net/dev"],
    ));
    let out = expect(&o, 0);
    let (flags, dev) = out.split_once('\n').unwrap();
    assert_eq!(interfaces(dev), ["lo"], "{out}");
    assert_eq!(u32::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap() & 1, 1, "lo is up: {out}");
    let o = output(run_in(r.path(), &["--network", "host"], &["cat", "/proc/net/dev"]));
    let mut inside = interfaces(&expect(&o, 0));
    let mut host = interfaces(&std::fs::read_to_string("/proc/net/dev").unwrap());
    inside.sort();
    host.sort();
    assert_eq!(inside, host);
}

/// The network backend starts while the root filesystem is built and the container's init waits for it: a
/// backend that dies at start (here `false` installed as `pasta`) must fail the run with exit 125 and one line
/// naming it, and leave no process, mount or state directory behind.
#[test]
fn a_network_backend_that_dies_at_start_fails_cleanly() {
    let _ = require_subids!();
    let r = Rootfs::new();
    let bin = tempdir();
    std::os::unix::fs::symlink("/bin/false", bin.path().join("pasta")).unwrap();
    let runtime = tempdir();
    std::fs::set_permissions(runtime.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut c = run_in(r.path(), &["--network", "pasta"], &["sh", "-c", "echo payload-ran"]);
    let marker = format!("BURROW_TEST_MARKER=dies-at-start-{}", std::process::id());
    c.env("PATH", format!("{}:/usr/bin:/bin", path_str(bin.path()))).env("XDG_RUNTIME_DIR", runtime.path());
    c.env("BURROW_TEST_MARKER", &marker[19..]);
    let o = output(c);
    expect(&o, 125);
    let err = stderr(&o);
    assert!(!stdout(&o).contains("payload-ran"), "the payload ran without its network");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    assert!(err.contains("pasta"), "the backend is not named: {err}");
    assert_eq!(std::fs::read_to_string("/proc/self/mountinfo").unwrap(), mounts_before, "host mounts changed");
    let left: Vec<_> = walk(runtime.path());
    assert!(left.iter().all(|p| p.is_dir()), "state files left: {left:?}");
    // Every process of this run (burrow, P1, init, the backend) inherited the marker; none may be left.
    let left = || with_environ(&marker);
    assert!(eventually(Duration::from_secs(5), || left().is_empty()), "processes left: {:?}", left());
}

fn with_environ(entry: &str) -> Vec<i32> {
    let pids = std::fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse().ok());
    pids.filter(|pid: &i32| {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        env.split(|b| *b == 0).any(|v| v == entry.as_bytes())
    })
    .collect()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// A run whose every process was SIGKILLed (burrow, P1, init: nobody left to clean up) leaves its state
/// directory; the next run that creates one removes it, and never the directory of a run that is alive.
#[test]
fn the_state_directory_of_a_killed_run_is_removed_by_the_next_run() {
    let _ = require_subids!();
    if !std::path::Path::new("/usr/bin/slirp4netns").exists() {
        skip!("slirp4netns is not installed (a run needs a state directory: a network backend gives it one)");
    }
    let r = Rootfs::new();
    let runtime = tempdir();
    std::fs::set_permissions(runtime.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let base = runtime.path().join("burrow");
    // Only the state directories (the user-namespace keeper's socket and lock live next to them).
    let dirs = || -> Vec<_> {
        let entries = std::fs::read_dir(&base).map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>());
        entries.unwrap_or_default().into_iter().filter(|p| p.is_dir()).collect()
    };
    let marker = format!("BURROW_TEST_MARKER=killed-run-{}", std::process::id());
    let run = |cmd: &[&str]| {
        let mut c = run_in(r.path(), &["--network", "slirp4netns"], cmd);
        c.env("XDG_RUNTIME_DIR", runtime.path());
        c
    };
    let mut first = run(&["sh", "-c", "echo ready; sleep 1000"]);
    first.env("BURROW_TEST_MARKER", &marker[19..]).stdout(Stdio::piped());
    let mut child = Reaped(first.spawn().unwrap());
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let live = dirs();
    assert_eq!(live.len(), 1, "one state directory expected: {live:?}");
    // A run while the first is alive leaves the first's directory alone (and removes its own).
    expect(&output(run(&["true"])), 0);
    assert_eq!(dirs(), live, "the live run's state directory was touched");
    // Kill every process of the first run at once: none of them can clean up.
    let procs = with_environ(&marker);
    assert!(procs.len() >= 3, "burrow, P1 and init expected: {procs:?}");
    for p in &procs {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), nix::sys::signal::Signal::SIGKILL);
    }
    let left = || with_environ(&marker);
    assert!(eventually(Duration::from_secs(10), || left().is_empty()), "processes left: {:?}", left());
    let _ = child.0.wait();
    assert_eq!(dirs(), live, "the killed run's directory should still be there before the next run");
    expect(&output(run(&["true"])), 0);
    assert_eq!(dirs(), Vec::<std::path::PathBuf>::new(), "state directories left after the next run");
}
