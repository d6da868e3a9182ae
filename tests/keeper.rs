//! Integration tests of the user-namespace keeper (scripts/test.sh runs this binary as burrow-t1, which has
//! subordinate IDs). Each test has a runtime directory (XDG_RUNTIME_DIR) and config directory of its own, so
//! its keeper is its own; a guard kills whatever keeper a test leaves.
//!
//! Not tested here: the system policy file /etc/burrow/config.toml (only root may write it; its semantics are
//! unit-tested in src/userns/config.rs) and the once-a-minute policy check of an idle keeper.

mod support;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::*;

/// A private runtime and config directory, a rootfs, and cleanup of the keepers started in them.
struct Env {
    runtime: tempfile::TempDir,
    config: tempfile::TempDir,
    rootfs: Rootfs,
}

impl Env {
    fn new() -> Env {
        let runtime = tempdir();
        std::fs::set_permissions(runtime.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        Env { runtime, config: tempdir(), rootfs: Rootfs::new() }
    }

    fn base(&self) -> PathBuf {
        self.runtime.path().join("burrow")
    }

    /// `burrow run --verbose --network none ARGS -- CMD` in this environment.
    fn cmd(&self, args: &[&str], cmd: &[&str]) -> Command {
        let mut all = vec!["--verbose", "--network", "none"];
        all.extend_from_slice(args);
        let mut c = run_in(self.rootfs.path(), &all, cmd);
        c.env("XDG_RUNTIME_DIR", self.runtime.path()).env("XDG_CONFIG_HOME", self.config.path());
        c
    }

    fn run(&self, args: &[&str], cmd: &[&str]) -> Output {
        output(self.cmd(args, cmd))
    }

    /// The names of the files in the keeper's directory.
    fn names(&self) -> Vec<String> {
        let entries = std::fs::read_dir(self.base()).unwrap().flatten();
        entries.map(|e| e.file_name().to_string_lossy().into_owned()).collect()
    }

    /// The pids of the live keepers serving this environment's runtime directory.
    fn keepers(&self) -> Vec<i32> {
        let dir = path_str(&self.base());
        let pids = std::fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse().ok());
        pids.filter(|pid: &i32| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            alive(*pid) && args.contains(&&b"__keeper"[..]) && args.contains(&dir.as_bytes())
        })
        .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for pid in self.keepers() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// The pid in a verbose line "...PREFIX (pid N)...".
fn pid_after(text: &str, prefix: &str) -> Option<i32> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    rest.strip_prefix(" (pid ")?.split(')').next()?.parse().ok()
}

fn started(o: &Output) -> i32 {
    let err = stderr(o);
    pid_after(&err, "started the user-namespace keeper").unwrap_or_else(|| panic!("no keeper started:\n{err}"))
}

fn joined(o: &Output) -> i32 {
    let err = stderr(o);
    assert!(!err.contains("newuidmap"), "a run that joins runs no helper:\n{err}");
    pid_after(&err, "joined the keeper").unwrap_or_else(|| panic!("did not join a keeper:\n{err}"))
}

fn ns_id(path: impl AsRef<Path>) -> (u64, u64) {
    let m = std::fs::metadata(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()));
    (m.dev(), m.ino())
}

/// The user namespace of a running container and its parent, seen from the host: runs `sh` that says ready
/// and waits for a line on stdin, then looks at burrow's descendants in another user namespace.
fn container_userns(env: &Env, args: &[&str]) -> ((u64, u64), (u64, u64), String) {
    let child = waiting(env, args);
    let ours = ns_id("/proc/self/ns/user");
    let inside = descendants(child.0.id() as i32)
        .into_iter()
        .find(|p| std::fs::metadata(format!("/proc/{p}/ns/user")).is_ok_and(|m| (m.dev(), m.ino()) != ours))
        .expect("a container process in its own user namespace");
    let ns = std::fs::File::open(format!("/proc/{inside}/ns/user")).unwrap();
    let parent = burrow::sys::ns::ns_parent(ns.as_fd()).expect("NS_GET_PARENT");
    let p = nix::sys::stat::fstat(&parent).unwrap();
    let own = ns_id(format!("/proc/{inside}/ns/user"));
    let o = release(child);
    (own, (p.st_dev, p.st_ino), stderr(&o))
}

/// `burrow run -i ARGS -- sh -c 'echo ready; read x'`, once it said ready.
fn waiting(env: &Env, args: &[&str]) -> Reaped {
    let mut all = vec!["-i"];
    all.extend_from_slice(args);
    let mut c = env.cmd(&all, &["sh", "-c", "echo ready; read x"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Reaped(c.spawn().unwrap());
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    child
}

/// Lets a [`waiting`] container end, and checks that it ended well.
fn release(mut child: Reaped) -> Output {
    child.0.stdin.take().unwrap().write_all(b"\n").unwrap();
    let o = wait_output(child.take(), Duration::from_secs(30));
    expect(&o, 0);
    o
}

#[test]
fn the_second_run_joins_a_namespace_nested_in_the_keepers() {
    let sub = require_subids!();
    let env = Env::new();
    let uid = nix::unistd::getuid().as_raw();
    let first = env.run(&[], &["cat", "/proc/self/uid_map"]);
    let out = expect(&first, 0);
    let lines: Vec<Vec<String>> = out.lines().map(|l| l.split_whitespace().map(String::from).collect()).collect();
    assert_eq!(
        lines,
        [vec!["0".to_string(), uid.to_string(), "1".into()], vec!["1".into(), sub.to_string(), "65536".into()]]
    );
    assert!(stderr(&first).contains("mapped with newuidmap/newgidmap (no keeper is running)"), "{}", stderr(&first));
    let keeper = started(&first);
    assert_eq!(env.keepers(), [keeper]);
    // Seen from inside, the map is relative to the keeper's namespace: the identity of its two lines.
    let second = env.run(&[], &["cat", "/proc/self/uid_map"]);
    let out = expect(&second, 0);
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines, [["0", "0", "1"], ["1", "1", "65536"]], "{out}");
    assert_eq!(joined(&second), keeper);
    // The container's namespace is its own, and its parent is the keeper's.
    let (own, parent, err) = container_userns(&env, &[]);
    assert_eq!(pid_after(&err, "joined the keeper"), Some(keeper), "{err}");
    let keeper_ns = ns_id(format!("/proc/{keeper}/ns/user"));
    assert_eq!(parent, keeper_ns, "the container's user namespace is not nested in the keeper's");
    assert_ne!(own, keeper_ns, "the container shares the keeper's namespace itself");
    // Chown to a subordinate ID works as with the helpers' maps.
    let data = tempdir();
    let vol = format!("{}:/data", data.path().display());
    let o = env.run(&["-v", &vol], &["sh", "-c", "touch /data/f && chown 1000:1000 /data/f"]);
    expect(&o, 0);
    assert_eq!(std::fs::metadata(data.path().join("f")).unwrap().uid(), sub + 999);
}

#[test]
fn the_keeper_holds_no_cwd_mount_or_descriptor_of_a_container() {
    let _ = require_subids!();
    let env = Env::new();
    let keeper = started(&env.run(&["-w", "/tmp"], &["true"]));
    // The namespaces a running container uses (made by the keeper for it, handed over, never kept). It runs
    // until the end of the test: a namespace freed may give its inode number to the keeper's next spare.
    let mut c = env.cmd(&["-i"], &["sh", "-c", "for n in net uts ipc; do readlink /proc/self/ns/$n; done; read x"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut container = Reaped(c.spawn().unwrap());
    let lines = BufReader::new(container.0.stdout.take().unwrap()).lines();
    let used: String = lines.take(3).map(|l| l.unwrap() + "\n").collect();
    assert_eq!(used.lines().count(), 3, "{used}");
    assert_eq!(std::fs::read_link(format!("/proc/{keeper}/cwd")).unwrap(), Path::new("/"));
    assert_eq!(
        ns_id(format!("/proc/{keeper}/ns/mnt")),
        ns_id("/proc/self/ns/mnt"),
        "the keeper left our mount namespace"
    );
    let stat = std::fs::read_to_string(format!("/proc/{keeper}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    // setsid() by the process that forked the keeper: a session of its own, which it does not lead (so it can
    // never acquire a controlling terminal).
    let ours = nix::unistd::getsid(None).unwrap().as_raw().to_string();
    assert_ne!(fields[3], ours, "the keeper stayed in the caller's session");
    assert_ne!(fields[3], keeper.to_string(), "the keeper leads its session");
    assert_eq!(fields[4], "0", "the keeper has a controlling terminal");
    let base = path_str(&env.base());
    let held = || -> Vec<String> {
        let fds = std::fs::read_dir(format!("/proc/{keeper}/fd")).unwrap().flatten();
        fds.filter_map(|fd| std::fs::read_link(fd.path()).ok()).map(|t| path_str(&t)).collect()
    };
    // A run that took a published spare leaves the keeper its copies until the keeper sees the claim removed
    // (inotify): a moment after that run started.
    assert!(
        eventually(Duration::from_secs(5), || !held().iter().any(|t| used.lines().any(|u| u == t))),
        "the keeper still holds a namespace a container used: {:?}",
        held()
    );
    for target in held() {
        // The spares: a user namespace, and the network, UTS and IPC namespaces made with it, for the next run.
        let spare = ["user:[", "net:[", "uts:[", "ipc:["].iter().any(|k| target.starts_with(k));
        let fine = target == "/dev/null"
            || target.starts_with("socket:[")
            || target == "anon_inode:inotify"
            || spare
            || target == format!("{base}/keeper-1.lock");
        assert!(fine, "the keeper holds {target}");
    }
    let environ = std::fs::read(format!("/proc/{keeper}/environ")).unwrap();
    assert!(environ.is_empty(), "the keeper kept an environment: {}", String::from_utf8_lossy(&environ));
    release(container);
}

#[test]
fn a_run_takes_the_published_spare_and_the_keeper_publishes_the_next() {
    let _ = require_subids!();
    let env = Env::new();
    let keeper = started(&env.run(&[], &["true"]));
    let published = || env.names().iter().filter(|n| n.starts_with("spare-")).count();
    assert!(eventually(Duration::from_secs(5), || published() == 1), "no spare published");
    // Each container runs until the end: a namespace freed may give its inode number to a later one.
    let mut running: Vec<(String, Reaped)> = Vec::new();
    for _ in 0..3 {
        // The keeper makes the next spare SPARE_DELAY after a run took one: wait for it, so that each run
        // takes a published one (a run that finds none asks over the socket, which works too).
        assert!(eventually(Duration::from_secs(5), || published() == 1), "the next spare was not published");
        let mut c = env.cmd(&["-i"], &["sh", "-c", "readlink /proc/self/ns/user; read x"]);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = Reaped(c.spawn().unwrap());
        let ns = BufReader::new(child.0.stdout.take().unwrap()).lines().next().unwrap().unwrap();
        assert!(!running.iter().any(|r| r.0 == ns), "two runs got the same namespace {ns}");
        running.push((ns, child));
    }
    for (_, child) in running {
        let err = stderr(&release(child));
        assert!(err.contains(&format!("joined the keeper (pid {keeper}): took its published namespace")), "{err}");
    }
    // No claim is left behind.
    let names = env.names();
    assert!(!names.iter().any(|n| n.starts_with("taken-")), "{names:?}");
}

/// burrow's children while `burrow run ARGS -- sh -c 'echo ready; read x'` runs, each with whether it is PID 1 of
/// a PID namespace of its own (the container's init), and whether burrow itself left our user namespace (for
/// the container's).
fn process_shape(env: &Env, args: &[&str]) -> (Vec<(i32, bool)>, bool) {
    let child = waiting(env, args);
    let burrow = child.0.id();
    let shape: Vec<(i32, bool)> = children(burrow).into_iter().map(|p| (p, is_ns_init(p))).collect();
    assert!(shape.iter().any(|c| c.1), "no init among burrow's children: {shape:?}");
    // Compared by uid_map (its user namespace's map, as seen from ours), not by ns links: a named container's
    // init, which serves `exec`, is not dumpable, and its ns links are closed to us.
    let map = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    let in_container_userns = map(&burrow.to_string()) != map("self");
    release(child);
    (shape, in_container_userns)
}

#[test]
fn a_joined_run_that_needs_nothing_else_forks_no_namespace_process() {
    let _ = require_subids!();
    let env = Env::new();
    started(&env.run(&[], &["true"]));
    // The direct launch: burrow itself joins the namespace and forks init, its only child.
    let (shape, inside) = process_shape(&env, &[]);
    assert_eq!(shape.iter().map(|c| c.1).collect::<Vec<_>>(), [true], "burrow's children: {shape:?}");
    assert!(inside, "burrow did not join the container's user namespace");
    // Its own namespace (no keeper): P1 unshares it and P0 maps it, so P1 is there beside init.
    let (shape, inside) = process_shape(&env, &["--userns=private"]);
    assert_eq!(shape.iter().filter(|c| !c.1).count(), 1, "no P1 beside init: {shape:?}");
    assert!(!inside, "burrow joined a namespace it had to map");
    // A named container keeps its record's lock in P1 too: P1 again, with the keeper's namespace.
    let (shape, inside) = process_shape(&env, &["--rm", "--name", "shape"]);
    assert_eq!(shape.iter().filter(|c| !c.1).count(), 1, "no P1 beside init: {shape:?}");
    assert!(!inside, "burrow joined the container's namespace though P1 was there");
}

#[test]
fn keep_id_is_nested_in_the_same_keeper() {
    let _ = require_subids!();
    let env = Env::new();
    let keeper = started(&env.run(&[], &["true"]));
    let data = tempdir();
    let vol = format!("{}:/data", data.path().display());
    let o = env.run(&["--userns=keep-id", "-v", &vol], &["sh", "-c", "id -u; id -g; touch /data/f"]);
    let (uid, gid) = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
    assert_eq!(expect(&o, 0), format!("{uid}\n{gid}\n"));
    assert_eq!(joined(&o), keeper);
    let meta = std::fs::metadata(data.path().join("f")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    // The keeper keeps a spare for each of the two layouts: back to auto, still joined.
    assert_eq!(joined(&env.run(&[], &["true"])), keeper);
}

#[test]
fn userns_private_maps_a_namespace_of_its_own() {
    let _ = require_subids!();
    let env = Env::new();
    let keeper = started(&env.run(&[], &["true"]));
    let (_, parent, err) = container_userns(&env, &["--userns=private"]);
    assert!(err.contains("mapped with newuidmap/newgidmap (--userns=private)"), "{err}");
    assert_eq!(parent, ns_id("/proc/self/ns/user"), "a private namespace is a child of the caller's");
    assert!(!err.contains("keeper (pid"), "{err}");
    assert_eq!(env.keepers(), [keeper], "--userns=private neither stops nor starts a keeper");
}

#[test]
fn userns_keeper_off_neither_starts_nor_uses_one() {
    let _ = require_subids!();
    let env = Env::new();
    let o = env.run(&["--userns-keeper=off"], &["true"]);
    expect(&o, 0);
    assert!(stderr(&o).contains("mapped with newuidmap/newgidmap (--userns-keeper=off)"), "{}", stderr(&o));
    let mut c = env.cmd(&[], &["true"]);
    c.env("BURROW_USERNS_KEEPER", "off");
    let o = output(c);
    expect(&o, 0);
    assert!(stderr(&o).contains("(--userns-keeper=off)"), "{}", stderr(&o));
    assert!(env.keepers().is_empty() && !env.base().join("keeper-1.sock").exists(), "a keeper was started");
    let keeper = started(&env.run(&[], &["true"]));
    let o = env.run(&["--userns-keeper=off"], &["true"]);
    expect(&o, 0);
    assert!(!stderr(&o).contains("joined"), "{}", stderr(&o));
    assert_eq!(env.keepers(), [keeper], "the flag is for one run: it leaves a running keeper alone");
    let o = env.run(&["--userns-keeper=maybe"], &["true"]);
    expect(&o, 125);
}

#[test]
fn a_user_config_that_forbids_keepers_stops_a_running_one() {
    let _ = require_subids!();
    let env = Env::new();
    let keeper = started(&env.run(&[], &["true"]));
    let dir = env.config.path().join("burrow");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), "[userns]\nkeeper = false\n").unwrap();
    let o = env.run(&[], &["true"]);
    expect(&o, 0);
    assert_eq!(pid_after(&stderr(&o), "stopped the user-namespace keeper"), Some(keeper), "{}", stderr(&o));
    assert!(eventually(Duration::from_secs(5), || !alive(keeper)), "the keeper outlived the policy");
    assert!(!env.base().join("keeper-1.sock").exists());
    // --userns-keeper=on overrides the user's own file for one run.
    let o = env.run(&["--userns-keeper=on"], &["true"]);
    started(&o);
    // A broken config file is an input error, before anything starts.
    std::fs::write(dir.join("config.toml"), "[userns]\nkeeper = \"sometimes\"\n").unwrap();
    let o = env.run(&[], &["true"]);
    expect(&o, 125);
    assert!(stderr(&o).contains("config.toml") && stderr(&o).contains("fix or remove it"), "{}", stderr(&o));
}

#[test]
fn an_idle_keeper_exits_and_removes_its_socket() {
    let _ = require_subids!();
    let env = Env::new();
    let mut c = env.cmd(&[], &["true"]);
    c.env("BURROW_KEEPER_IDLE", "1");
    let keeper = started(&output(c));
    assert!(eventually(Duration::from_secs(10), || !alive(keeper)), "the keeper did not exit when idle");
    assert!(!env.base().join("keeper-1.sock").exists(), "the idle keeper left its socket");
    assert_ne!(started(&env.run(&[], &["true"])), keeper);
}

#[test]
fn a_keeper_killed_with_sigkill_is_replaced_by_the_next_run() {
    let _ = require_subids!();
    let env = Env::new();
    let keeper = started(&env.run(&[], &["true"]));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(keeper), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(eventually(Duration::from_secs(5), || !alive(keeper)));
    assert!(env.base().join("keeper-1.sock").exists(), "a killed keeper leaves its socket (refused from then on)");
    let o = env.run(&[], &["true"]);
    expect(&o, 0);
    let second = started(&o);
    assert_ne!(second, keeper);
    assert_eq!(joined(&env.run(&[], &["true"])), second);
}

#[test]
fn a_keeper_running_another_burrow_binary_is_replaced() {
    let _ = require_subids!();
    let env = Env::new();
    let keeper = started(&env.run(&[], &["true"]));
    // The same program in another file, as after an upgrade replaced burrow: the old keeper must not serve it.
    let dir = tempdir();
    let other = dir.path().join("burrow");
    std::fs::copy(BURROW, &other).unwrap();
    let with_other = || {
        let c = env.cmd(&[], &["true"]);
        let mut o = Command::new(&other);
        o.args(c.get_args())
            .env_clear()
            .envs(c.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .current_dir("/")
            .stdin(Stdio::null());
        output(o)
    };
    let o = with_other();
    let err = stderr(&o);
    assert!(err.contains(&format!("the keeper (pid {keeper}) runs another burrow binary: stopped it")), "{err}");
    let replacement = started(&o);
    assert!(eventually(Duration::from_secs(5), || !alive(keeper)), "the other binary's keeper is still alive");
    assert_eq!(joined(&with_other()), replacement);
    // And back: the first binary replaces it in turn.
    let o = env.run(&[], &["true"]);
    assert!(stderr(&o).contains("runs another burrow binary"), "{}", stderr(&o));
    assert_ne!(started(&o), replacement);
}

#[test]
fn a_keeper_whose_maps_differ_from_the_subid_files_is_replaced() {
    let sub = require_subids!();
    let env = Env::new();
    let keeper = started(&env.run(&[], &["true"]));
    // Another plan for the same user: a part of its range (the helpers, which read the real files, allow it).
    let files = tempdir();
    let name = nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap().unwrap().name;
    for f in ["subuid", "subgid"] {
        std::fs::write(files.path().join(f), format!("{name}:{sub}:1000\n")).unwrap();
    }
    let smaller = |cmd: &[&str]| {
        let mut c = env.cmd(&[], cmd);
        c.env("BURROW_SUBUID_FILE", files.path().join("subuid")).env("BURROW_SUBGID_FILE", files.path().join("subgid"));
        output(c)
    };
    let o = smaller(&["cat", "/proc/self/uid_map"]);
    let err = stderr(&o);
    assert!(
        err.contains(&format!("the keeper (pid {keeper}) maps other IDs than")) && err.contains("stopped it"),
        "{err}"
    );
    let replacement = started(&o);
    assert!(eventually(Duration::from_secs(5), || !alive(keeper)), "the outdated keeper is still alive");
    assert!(expect(&o, 0).ends_with(&format!("{sub}       1000\n")), "{}", stdout(&o));
    let o = smaller(&["cat", "/proc/self/uid_map"]);
    assert_eq!(joined(&o), replacement);
    let lines: Vec<Vec<String>> =
        stdout(&o).lines().map(|l| l.split_whitespace().map(String::from).collect()).collect();
    assert_eq!(lines[1], ["1", "1", "1000"]);
    // Back to the real files: replaced again.
    let o = env.run(&[], &["true"]);
    assert!(stderr(&o).contains("maps other IDs than"), "{}", stderr(&o));
    assert_ne!(started(&o), replacement);
}

#[test]
fn concurrent_first_runs_start_exactly_one_keeper() {
    let _ = require_subids!();
    let env = Env::new();
    let children: Vec<Reaped> = (0..4)
        .map(|_| {
            let mut c = env.cmd(&[], &["true"]);
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            Reaped(c.spawn().unwrap())
        })
        .collect();
    let outputs: Vec<Output> = children.into_iter().map(|c| wait_output(c.take(), Duration::from_secs(60))).collect();
    let mut started_here = Vec::new();
    for o in &outputs {
        expect(o, 0);
        if let Some(pid) = pid_after(&stderr(o), "started the user-namespace keeper") {
            started_here.push(pid);
        }
    }
    assert_eq!(started_here.len(), 1, "{:?}", outputs.iter().map(stderr).collect::<Vec<_>>());
    assert!(eventually(Duration::from_secs(5), || env.keepers() == started_here), "keepers: {:?}", env.keepers());
    assert_eq!(joined(&env.run(&[], &["true"])), started_here[0]);
}

#[test]
fn something_else_on_the_keeper_socket_is_not_trusted_and_is_replaced() {
    let _ = require_subids!();
    let env = Env::new();
    std::fs::create_dir_all(env.base()).unwrap();
    std::fs::set_permissions(env.base(), std::fs::Permissions::from_mode(0o700)).unwrap();
    // A listener of ours, but not in a user namespace of its own: not a keeper.
    use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
    let path = env.base().join("keeper-1.sock");
    let fake = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).unwrap();
    bind(std::os::fd::AsRawFd::as_raw_fd(&fake), &UnixAddr::new(&path).unwrap()).unwrap();
    listen(&fake, Backlog::new(4).unwrap()).unwrap();
    let o = env.run(&[], &["true"]);
    expect(&o, 0);
    assert!(stderr(&o).contains("is not in a user namespace of its own"), "{}", stderr(&o));
    let keeper = started(&o);
    assert_eq!(joined(&env.run(&[], &["true"])), keeper);
    drop(fake);
    // A plain file where the socket should be: no keeper, one is started over it.
    let env = Env::new();
    std::fs::create_dir_all(env.base()).unwrap();
    std::fs::set_permissions(env.base(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(env.base().join("keeper-1.sock"), "").unwrap();
    let o = env.run(&[], &["true"]);
    expect(&o, 0);
    assert_eq!(joined(&env.run(&[], &["true"])), started(&o));
}

#[test]
fn doctor_reports_the_keeper() {
    let _ = require_subids!();
    let env = Env::new();
    let doctor = || {
        let mut c = burrow();
        c.arg("doctor").env("XDG_RUNTIME_DIR", env.runtime.path()).env("XDG_CONFIG_HOME", env.config.path());
        let o = output(c);
        stdout(&o).lines().find(|l| l.contains("user-namespace keeper")).unwrap_or_default().to_string()
    };
    assert!(doctor().starts_with("ok   user-namespace keeper: not running"), "{}", doctor());
    let keeper = started(&env.run(&[], &["true"]));
    let line = doctor();
    assert!(line.contains(&format!("running (pid {keeper}), its maps match")), "{line}");
    // The doctor's connection is not a client: the keeper still serves the next run.
    assert_eq!(joined(&env.run(&[], &["true"])), keeper);
}
