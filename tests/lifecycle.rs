//! Detached containers and the lifecycle commands, through the real binary as an unprivileged user: run -d,
//! ps, logs, exec, stop, kill, wait, rm, the monitor's death, concurrent exec, and the runtime directory that
//! another user cannot deny. Each test has its own TMPDIR and HOME, so its `ps` sees only its containers.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::*;

struct Ctx {
    tmp: tempfile::TempDir,
    home: tempfile::TempDir,
    root: Rootfs,
    /// Extra environment (the systemd user manager's, for the cgroup test).
    env: Vec<(String, String)>,
}

impl Ctx {
    fn new() -> Ctx {
        let root = Rootfs::new();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        )
        .unwrap();
        Ctx { tmp: tempdir(), home: tempdir(), root, env: Vec::new() }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = burrow();
        c.env("TMPDIR", self.tmp.path()).env("HOME", self.home.path());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.args(args);
        c
    }

    fn out(&self, args: &[&str]) -> Output {
        output(self.cmd(args))
    }

    /// `burrow run -d --rootfs ROOT FLAGS -- CMD`; returns the ID it printed.
    fn detach(&self, flags: &[&str], cmd: &[&str]) -> String {
        let r = path_str(self.root.path());
        let mut args = vec!["run", "-d", "--rootfs", &r];
        args.extend_from_slice(flags);
        args.push("--");
        args.extend_from_slice(cmd);
        let id = expect(&self.out(&args), 0).trim().to_string();
        assert!(id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()), "not an ID: {id:?}");
        id
    }

    fn ps_json(&self) -> Vec<serde_json::Value> {
        let text = expect(&self.out(&["ps", "-a", "--format", "json"]), 0);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("ps json: {e}: {text}"))
    }

    fn status(&self, id: &str) -> Option<String> {
        self.ps_json().into_iter().find(|c| c["id"] == id).map(|c| c["status"].as_str().unwrap().to_string())
    }

    /// The record directory of container `id` (the base is TMPDIR/burrow-UID unless a pointer says otherwise).
    fn record(&self, id: &str) -> PathBuf {
        let uid = nix::unistd::getuid();
        let fixed = self.tmp.path().join(format!("burrow-{uid}/containers/{id}"));
        if fixed.exists() {
            return fixed;
        }
        std::fs::read_dir(self.tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.path().join("containers").join(id))
            .find(|p| p.exists())
            .unwrap_or(fixed)
    }

    fn started(&self, id: &str) -> serde_json::Value {
        let path = self.record(id).join("state.json");
        serde_json::from_str(&std::fs::read_to_string(&path).expect("state.json")).unwrap()
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        let ids = output(self.cmd(&["ps", "-aq"]));
        for id in stdout(&ids).lines() {
            let _ = output(self.cmd(&["rm", "-f", id]));
        }
    }
}

fn ready() -> Option<Ctx> {
    if let Some(why) = unusable() {
        eprintln!("SKIP: {why}");
        return None;
    }
    Some(Ctx::new())
}

#[test]
fn detach_ps_logs_exec_stop_rm() {
    let Some(cx) = ready() else { skip!("unusable") };
    let id = cx.detach(&["--name", "web"], &["sh", "-c", "echo hello; echo oops >&2; exec sleep 100"]);
    let ps = expect(&cx.out(&["ps"]), 0);
    assert!(ps.lines().next().unwrap().starts_with("ID"), "{ps}");
    let line = ps.lines().find(|l| l.starts_with(&id)).unwrap_or_else(|| panic!("{id} not listed:\n{ps}"));
    assert!(line.contains("web") && line.contains("Up ") && line.contains(&path_str(cx.root.path())), "{line}");
    // Each stream comes back on its own descriptor.
    assert!(eventually(Duration::from_secs(10), || {
        let o = cx.out(&["logs", "web"]);
        stdout(&o) == "hello\n" && stderr(&o) == "oops\n"
    }));
    // By name, by ID and by a prefix of the ID.
    assert_eq!(expect(&cx.out(&["exec", "web", "echo", "in"]), 0), "in\n");
    assert_eq!(expect(&cx.out(&["exec", &id, "sh", "-c", "exit 7"]), 7), "");
    assert_eq!(expect(&cx.out(&["exec", &id[..5], "cat", "/etc/hostname"]), 0), "burrow\n");
    assert_eq!(expect(&cx.out(&["stop", "-t", "5", "web"]), 0), "web\n");
    assert_eq!(expect(&cx.out(&["wait", "web"]), 0), "143\n");
    let status = cx.status(&id).unwrap();
    assert!(status.starts_with("Exited (143)"), "{status}");
    assert!(!expect(&cx.out(&["ps"]), 0).contains(&id), "an exited container is listed without -a");
    // Logs outlive the container; rm removes everything.
    assert!(stdout(&cx.out(&["logs", &id])).contains("hello"));
    assert_eq!(expect(&cx.out(&["rm", "web"]), 0), "web\n");
    assert!(cx.ps_json().is_empty());
    assert!(!cx.record(&id).exists());
    let o = cx.out(&["logs", "web"]);
    assert_eq!(code(&o), 125);
    assert!(stderr(&o).contains("no such container"), "{}", stderr(&o));
}

#[test]
fn exit_codes_reach_wait_and_ps_and_start_errors_reach_run_d() {
    let Some(cx) = ready() else { skip!("unusable") };
    let id = cx.detach(&[], &["sh", "-c", "exit 3"]);
    assert_eq!(expect(&cx.out(&["wait", &id]), 0), "3\n");
    let all = cx.ps_json();
    assert_eq!(all[0]["exit_code"], 3, "{all:?}");
    assert!(all[0]["status"].as_str().unwrap().starts_with("Exited (3)"));
    // A payload that cannot be executed: run -d says so with exec's exit status, and leaves no record.
    let r = path_str(cx.root.path());
    let o = cx.out(&["run", "-d", "--rootfs", &r, "--", "/no/such/program"]);
    assert_eq!(code(&o), 127, "{}", stderr(&o));
    assert!(stderr(&o).contains("/no/such/program"), "{}", stderr(&o));
    assert_eq!(cx.ps_json().len(), 1);
    // Input errors come before anything starts.
    let o = cx.out(&["run", "-d", "--rootfs", "/no/such/dir", "--", "true"]);
    assert_eq!(code(&o), 125);
    assert_eq!(cx.ps_json().len(), 1);
}

#[test]
fn stop_kills_a_payload_that_ignores_sigterm() {
    let Some(cx) = ready() else { skip!("unusable") };
    let id = cx.detach(&[], &["sh", "-c", "trap '' TERM; echo armed; while :; do sleep 1; done"]);
    assert!(eventually(Duration::from_secs(10), || stdout(&cx.out(&["logs", &id])).contains("armed")));
    let start = Instant::now();
    expect(&cx.out(&["stop", "-t", "1", &id]), 0);
    assert!(start.elapsed() >= Duration::from_secs(1), "stop did not wait for the grace period");
    assert_eq!(expect(&cx.out(&["wait", &id]), 0), "137\n");
}

#[test]
fn kill_sends_the_signal_to_the_payload() {
    let Some(cx) = ready() else { skip!("unusable") };
    let id =
        cx.detach(&[], &["sh", "-c", "trap 'echo got-usr1; exit 5' USR1; echo armed; while :; do sleep 0.1; done"]);
    assert!(eventually(Duration::from_secs(10), || stdout(&cx.out(&["logs", &id])).contains("armed")));
    expect(&cx.out(&["kill", "-s", "USR1", &id]), 0);
    assert_eq!(expect(&cx.out(&["wait", &id]), 0), "5\n");
    assert!(stdout(&cx.out(&["logs", &id])).contains("got-usr1"));
    // Not running any more: an error, and so is a bad signal name.
    assert_eq!(code(&cx.out(&["kill", &id])), 125);
    let o = cx.out(&["kill", "-s", "NOPE", &id]);
    assert!(code(&o) == 125 && stderr(&o).contains("unknown signal"), "{}", stderr(&o));
}

#[test]
fn killing_the_monitor_takes_the_container_down_and_ps_says_so() {
    let Some(cx) = ready() else { skip!("unusable") };
    let id = cx.detach(&[], &["sleep", "100"]);
    let started = cx.started(&id);
    let (monitor, init) = (started["monitor"].as_i64().unwrap() as i32, started["init"].as_i64().unwrap() as i32);
    assert!(alive(monitor) && alive(init), "{started}");
    let family = descendants(monitor);
    assert!(family.len() >= 3, "{family:?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || family.iter().all(|p| !alive(*p))),
        "processes of the container outlived its monitor: {:?}",
        family.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
    );
    let status = cx.status(&id).unwrap();
    assert!(status.starts_with("Exited (unknown"), "{status}");
    assert_eq!(expect(&cx.out(&["wait", &id]), 0), "-1\n");
    // Nothing of the run is left: its state directory (overlay mount point, layer) is gone too.
    let base = cx.record(&id).parent().unwrap().parent().unwrap().to_path_buf();
    assert!(eventually(Duration::from_secs(10), || !base.join(&id).exists()), "state directory left");
    expect(&cx.out(&["rm", &id]), 0);
    assert!(cx.ps_json().is_empty());
}

#[test]
fn two_shells_exec_at_once() {
    let Some(cx) = ready() else { skip!("unusable") };
    let id = cx.detach(&[], &["sleep", "100"]);
    let spawn = || {
        let mut c = cx.cmd(&["exec", &id, "sh", "-c", "sleep 0.5; echo pid=$$"]);
        c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (wait_output(a, Duration::from_secs(30)), wait_output(b, Duration::from_secs(30)));
    let (a, b) = (expect(&a, 0), expect(&b, 0));
    assert!(a.starts_with("pid=") && b.starts_with("pid=") && a != b, "{a} {b}");
    // Each is init's child: its parent inside the container is PID 1.
    assert_eq!(expect(&cx.out(&["exec", &id, "sh", "-c", "grep PPid /proc/self/status"]), 0), "PPid:\t1\n");
}

#[test]
fn ps_exec_stop_and_rm_from_several_shells_at_once() {
    let Some(cx) = ready() else { skip!("unusable") };
    let id = cx.detach(&["--name", "busy"], &["sleep", "100"]);
    let spawn = |args: &[&str]| {
        let mut c = cx.cmd(args);
        c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let children = vec![
        spawn(&["ps", "-a"]),
        spawn(&["exec", "busy", "sleep", "0.3"]),
        spawn(&["stop", "-t", "1", "busy"]),
        spawn(&["rm", "-f", "busy"]),
        spawn(&["ps", "--format", "json"]),
        spawn(&["stop", "busy"]),
        spawn(&["rm", "-f", &id]),
    ];
    let outs: Vec<Output> = children.into_iter().map(|c| wait_output(c, Duration::from_secs(60))).collect();
    // ps never fails, whatever the others do; every error is one clear line.
    assert_eq!(code(&outs[0]), 0, "{}", stderr(&outs[0]));
    assert_eq!(code(&outs[4]), 0, "{}", stderr(&outs[4]));
    for o in &outs {
        let err = stderr(o);
        assert!(err.lines().count() <= 1, "{err}");
        assert!(![101, -1].contains(&code(o)), "a command crashed: {err}");
    }
    // Exactly one rm removed it; the container and its record are gone.
    let removed = [&outs[3], &outs[6]].iter().filter(|o| code(o) == 0).count();
    assert_eq!(removed, 1, "{:?}", outs.iter().map(stderr).collect::<Vec<_>>());
    assert!(cx.ps_json().is_empty());
    assert!(!cx.record(&id).exists());
}

/// What a process sees of its confinement: capabilities, no_new_privs, seccomp, namespaces, cgroup.
const CONFINEMENT: &str = "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp)' /proc/self/status; \
    for n in mnt pid net uts ipc user cgroup; do readlink /proc/self/ns/$n; done; cat /proc/self/cgroup; \
    echo user=$(id -u) cwd=$(pwd)";

#[test]
fn exec_sees_the_payload_s_hardening_namespaces_and_cgroup() {
    let Some(mut cx) = ready() else { skip!("unusable") };
    let rt = format!("/run/user/{}", nix::unistd::getuid());
    if !Path::new(&rt).join("bus").exists() {
        skip!("no systemd user manager ({rt}/bus missing): scripts/ci-setup.sh starts one");
    }
    cx.env = vec![
        ("XDG_RUNTIME_DIR".into(), rt.clone()),
        ("DBUS_SESSION_BUS_ADDRESS".into(), format!("unix:path={rt}/bus")),
    ];
    let script = format!("{CONFINEMENT}; echo ===; exec sleep 100");
    let flags = ["--cgroup-manager", "systemd", "--pids-limit", "50", "--limits", "best-effort", "-w", "/tmp"];
    let id = cx.detach(&flags, &["sh", "-c", &script]);
    let mut payload = String::new();
    assert!(eventually(Duration::from_secs(10), || {
        payload = stdout(&cx.out(&["logs", &id]));
        payload.contains("===")
    }));
    let payload = payload.split("===").next().unwrap().to_string();
    let exec = expect(&cx.out(&["exec", &id, "sh", "-c", CONFINEMENT]), 0);
    assert_eq!(exec, payload, "exec differs from the payload");
    assert!(payload.contains("NoNewPrivs") && payload.contains("CapEff") && payload.contains("cwd=/tmp"), "{payload}");
    // -u and -w change only the user and directory.
    let other =
        expect(&cx.out(&["exec", "-u", "user", "-w", "/", "-e", "X=1", &id, "sh", "-c", "echo $(id -u) $(pwd) $X"]), 0);
    assert_eq!(other, "1000 / 1\n");
    expect(&cx.out(&["rm", "-f", &id]), 0);
}

#[test]
fn exec_errors_are_clear() {
    let Some(cx) = ready() else { skip!("unusable") };
    let id = cx.detach(&[], &["sleep", "100"]);
    let o = cx.out(&["exec", &id, "/no/such/program"]);
    assert_eq!(code(&o), 127, "{}", stderr(&o));
    let o = cx.out(&["exec", "-u", "nobody-here", &id, "true"]);
    assert!(code(&o) == 125 && stderr(&o).contains("nobody-here"), "{}", stderr(&o));
    let o = cx.out(&["exec", "-t", &id, "true"]);
    assert!(code(&o) == 125 && stderr(&o).contains("not a terminal"), "{}", stderr(&o));
    expect(&cx.out(&["kill", &id]), 0);
    assert_eq!(expect(&cx.out(&["wait", &id]), 0), "137\n");
    let o = cx.out(&["exec", &id, "true"]);
    assert!(code(&o) == 125 && stderr(&o).contains("not running"), "{}", stderr(&o));
    let noinit = cx.detach(&["--no-init"], &["sleep", "100"]);
    let o = cx.out(&["exec", &noinit, "true"]);
    assert!(code(&o) == 125 && stderr(&o).contains("--no-init"), "{}", stderr(&o));
    let o = cx.out(&["exec", "nothing-by-this-name", "true"]);
    assert!(code(&o) == 125 && stderr(&o).contains("no such container"), "{}", stderr(&o));
}

#[test]
fn names_are_unique_and_rm_refuses_a_running_container() {
    let Some(cx) = ready() else { skip!("unusable") };
    let id = cx.detach(&["--name", "db"], &["sleep", "100"]);
    let r = path_str(cx.root.path());
    let o = cx.out(&["run", "-d", "--name", "db", "--rootfs", &r, "--", "true"]);
    assert!(code(&o) == 125 && stderr(&o).contains("already in use"), "{}", stderr(&o));
    let o = cx.out(&["run", "-d", "--name", "no/slash", "--rootfs", &r, "--", "true"]);
    assert!(code(&o) == 125 && stderr(&o).contains("invalid name"), "{}", stderr(&o));
    let o = cx.out(&["rm", "db"]);
    assert!(code(&o) == 125 && stderr(&o).contains("is running"), "{}", stderr(&o));
    assert_eq!(expect(&cx.out(&["rm", "-f", "db"]), 0), "db\n");
    assert!(cx.ps_json().is_empty());
    // The name is free again.
    let again = cx.detach(&["--name", "db"], &["true"]);
    assert_ne!(again, id);
}

#[test]
fn a_named_foreground_run_is_reachable_while_it_runs_and_leaves_nothing() {
    let Some(cx) = ready() else { skip!("unusable") };
    let r = path_str(cx.root.path());
    let mut c = cx.cmd(&["run", "--name", "fg", "--rootfs", &r, "--", "sh", "-c", "echo fg-started; exec sleep 100"]);
    c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let fg = Reaped(c.spawn().unwrap());
    let up = || cx.ps_json().iter().any(|c| c["name"] == "fg" && c["status"].as_str().unwrap().starts_with("Up"));
    assert!(eventually(Duration::from_secs(10), up), "the named foreground run is not listed");
    assert_eq!(expect(&cx.out(&["exec", "fg", "echo", "joined"]), 0), "joined\n");
    let o = cx.out(&["run", "-d", "--name", "fg", "--rootfs", &r, "--", "true"]);
    assert!(code(&o) == 125 && stderr(&o).contains("already in use"), "{}", stderr(&o));
    // `wait` from another shell gets the exit code although the record is gone when the run ends.
    let waiter = {
        let mut w = cx.cmd(&["wait", "fg"]);
        w.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        Reaped(w.spawn().unwrap())
    };
    // (time for it to start and block on the record's lock: the lock is its only sign of waiting)
    std::thread::sleep(Duration::from_secs(1));
    expect(&cx.out(&["stop", "-t", "5", "fg"]), 0);
    let o = wait_output(fg.take(), Duration::from_secs(30));
    assert_eq!(code(&o), 143, "{}", stderr(&o));
    let w = wait_output(waiter.take(), Duration::from_secs(30));
    assert_eq!((code(&w), stdout(&w)), (0, "143\n".to_string()), "{}", stderr(&w));
    assert!(stdout(&o).contains("fg-started"), "the output stays on the user's side: {}", stdout(&o));
    assert!(cx.ps_json().is_empty(), "the record stayed");
}

#[test]
fn run_d_rm_removes_the_record_at_the_end() {
    let Some(cx) = ready() else { skip!("unusable") };
    cx.detach(&["--rm"], &["sh", "-c", "sleep 0.3"]);
    assert_eq!(cx.ps_json().len(), 1);
    assert!(eventually(Duration::from_secs(10), || cx.ps_json().is_empty()), "the --rm record stayed");
}

#[test]
fn logs_tail_and_follow() {
    let Some(cx) = ready() else { skip!("unusable") };
    let script = "for i in 1 2 3 4 5; do echo line$i; done; echo err1 >&2; printf part; sleep 1; echo ial; echo late";
    let id = cx.detach(&[], &["sh", "-c", script]);
    assert!(eventually(Duration::from_secs(10), || stdout(&cx.out(&["logs", &id])).contains("part")));
    // --tail counts lines of both streams; a line still open counts as one.
    let o = cx.out(&["logs", "--tail", "3", &id]);
    assert_eq!((stdout(&o), stderr(&o)), ("line5\npart".to_string(), "err1\n".to_string()));
    // -f returns once the container ended, with everything it wrote; a line written in two pieces is whole.
    let all = expect(&cx.out(&["logs", "-f", &id]), 0);
    assert!(all.ends_with("line5\npartial\nlate\n"), "{all}");
    // --timestamps puts each record's time (RFC 3339, UTC) first.
    let stamped = expect(&cx.out(&["logs", "-t", "--tail", "1", &id]), 0);
    let (time, rest) = stamped.split_once(' ').unwrap_or_default();
    assert!(time.len() == 30 && time.ends_with('Z') && rest == "late\n", "{stamped:?}");
}

#[test]
fn the_log_is_capped_with_one_older_generation() {
    let Some(cx) = ready() else { skip!("unusable") };
    // 3 MiB of numbered lines, then a last one.
    let id = cx.detach(&[], &["sh", "-c", "seq 1 400000; echo the-end"]);
    assert_eq!(expect(&cx.out(&["wait", &id]), 0), "0\n");
    let dir = cx.record(&id);
    let (log, old) =
        (std::fs::metadata(dir.join("log")).unwrap().len(), std::fs::metadata(dir.join("log.1")).unwrap().len());
    assert!(log <= 1 << 20 && old <= 1 << 20 && old > 512 << 10, "log {log}, log.1 {old}");
    let all = expect(&cx.out(&["logs", &id]), 0);
    assert!(all.ends_with("399999\n400000\nthe-end\n"), "{}", &all[all.len().saturating_sub(100)..]);
    assert!(!all.starts_with("1\n"), "the oldest lines were kept");
    // What is kept is contiguous: log.1 then log (its first line may be cut: rotation is by size).
    let nums: Vec<u64> = all.lines().skip(1).filter_map(|l| l.parse().ok()).collect();
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "a gap in the kept log");
    assert_eq!(expect(&cx.out(&["logs", "--tail", "1", &id]), 0), "the-end\n");
}

#[test]
fn a_detached_tty_is_logged() {
    let Some(cx) = ready() else { skip!("unusable") };
    let id = cx.detach(&["-t"], &["sh", "-c", "tty; stty size"]);
    assert_eq!(expect(&cx.out(&["wait", &id]), 0), "0\n");
    let logs = stdout(&cx.out(&["logs", &id]));
    assert!(logs.contains("/dev/pts/0") && logs.contains("24 80"), "{logs:?}");
}

/// Another user (or anything else) planted the fixed fallback name before our first run: burrow uses a
/// private directory of its own, and finds it again through the pointer in $HOME.
fn planted_fallback(cx: &Ctx) {
    let id = cx.detach(&["--name", "p"], &["sleep", "100"]);
    let uid = nix::unistd::getuid();
    let host = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();
    let pointer = cx.home.path().join(format!(".cache/burrow/runtime-{host}"));
    let base = PathBuf::from(std::fs::read_to_string(&pointer).expect("pointer written"));
    assert!(base.file_name().unwrap().to_string_lossy().starts_with(&format!("burrow-{uid}-")), "{base:?}");
    assert!(base.join("containers").join(&id).exists());
    assert_eq!(expect(&cx.out(&["exec", "p", "echo", "ok"]), 0), "ok\n");
    expect(&cx.out(&["rm", "-f", "p"]), 0);
}

#[test]
fn a_planted_fallback_directory_does_not_deny_service() {
    let Some(cx) = ready() else { skip!("unusable") };
    let uid = nix::unistd::getuid();
    // A symlink to somewhere else is not a private directory of ours, whoever made it.
    let planted = cx.tmp.path().join(format!("burrow-{uid}"));
    std::os::unix::fs::symlink("/tmp", &planted).unwrap();
    planted_fallback(&cx);
    // Once the planted entry is gone, the containers are still found where the pointer says.
    std::fs::remove_file(&planted).unwrap();
    let id = cx.detach(&[], &["sleep", "100"]);
    assert!(!planted.exists(), "the fixed name was used although a pointer exists");
    assert!(stdout(&cx.out(&["ps"])).contains(&id));
}

#[test]
fn a_directory_planted_by_another_user_does_not_deny_service() {
    let Some(cx) = ready() else { skip!("unusable") };
    // scripts/ci-setup.sh plants /var/tmp/burrow-ci-planted/burrow-UID, owned by the other test user.
    let dir = Path::new("/var/tmp/burrow-ci-planted");
    let uid = nix::unistd::getuid();
    let planted = dir.join(format!("burrow-{uid}"));
    let foreign = std::fs::symlink_metadata(&planted)
        .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) != uid.as_raw() && m.is_dir());
    if !foreign {
        skip!("{} is not a directory of another user: scripts/ci-setup.sh plants it", planted.display());
    }
    let mut cx = cx;
    cx.env.push(("TMPDIR".into(), path_str(dir)));
    planted_fallback(&cx);
    // Our random directory there goes with the test.
    let host = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();
    let pointer = cx.home.path().join(format!(".cache/burrow/runtime-{host}"));
    if let Ok(base) = std::fs::read_to_string(pointer) {
        std::fs::remove_dir_all(base).unwrap();
    }
    cx.env.clear();
}
