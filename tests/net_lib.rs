//! Integration tests of `burrow::net` with the real slirp4netns and pasta, run as an unprivileged
//! user. The container is stood in for by `unshare -Urn sleep` (a process in its own user and
//! network namespaces, id maps written); checks run inside it with `nsenter`. Traffic goes only to
//! loopback and the backends' internal addresses. One suite, instantiated for each backend.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use burrow::net::{self, Mode, NetError, PortSpec, Request, ResolverPaths};

#[path = "net_lib/support.rs"]
mod support;
use support::*;

pub fn host_loopback_closed_by_default(mode: Mode) {
    let port = host_server();
    let dir = tempfile::tempdir().unwrap();
    let t = Target::new();
    let plan = net::preflight(&req(mode)).unwrap();
    assert_eq!(plan.backend_name(), mode.to_string());
    let _a = attached(&plan, &t, dir.path());
    assert!(!connects_from_inside(&t, "127.0.0.1", port), "ns loopback reached the host");
    if mode == Mode::Slirp4netns {
        // pasta routes 10.0.2.2 to the outside world when not mapped: only slirp handles it itself.
        assert!(!connects_from_inside(&t, "10.0.2.2", port), "10.0.2.2 reached host loopback");
    }
    assert!(!plan.hosts("box").contains("host.burrow.internal"));
}

pub fn host_loopback_allowed(mode: Mode) {
    let port = host_server();
    let dir = tempfile::tempdir().unwrap();
    let t = Target::new();
    let plan = net::preflight(&Request { allow_host_loopback: true, ..req(mode) }).unwrap();
    let _a = attached(&plan, &t, dir.path());
    assert!(plan.hosts("box").contains("10.0.2.2\thost.burrow.internal"));
    assert!(connects_from_inside(&t, "10.0.2.2", port), "host.burrow.internal unreachable");
}

const SERVERS: &str = r#"
import socket, sys
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 8080)); t.listen(1); t.settimeout(10)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 5353)); u.settimeout(10)
print("ready", flush=True)
c, _ = t.accept(); c.sendall(b"hello-tcp"); c.close()
d, peer = u.recvfrom(100); u.sendto(b"hello-udp:" + d, peer)
print("udp-got", d.decode(), flush=True)
"#;

pub fn published_ports_reach_the_container(mode: Mode) {
    let (tp, up) = (free_port(), free_port());
    let publish: Vec<PortSpec> =
        vec![format!("127.0.0.1:{tp}:8080").parse().unwrap(), format!("127.0.0.1:{up}:5353/udp").parse().unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let t = Target::new();
    // Only the launcher's P1 starts burrow's forwarder: the library test drives the backend's own forwarding.
    let own = if mode == Mode::Pasta { net::PortHandler::Pasta } else { net::PortHandler::Slirp4netns };
    let mut r = Request { publish, port_handler: Some(own), ..req(mode) };
    if mode == Mode::Slirp4netns {
        // libslirp drops UDP replies while host loopback is closed: preflight must say so.
        let e = net::preflight(&r).unwrap_err();
        assert!(matches!(e, NetError::SlirpUdpNeedsHostLoopback { .. }), "{e}");
        r.allow_host_loopback = true;
    }
    let plan = net::preflight(&r).unwrap();
    let _a = attached(&plan, &t, dir.path());
    let mut server = t.ns_cmd(&["python3", "-c", SERVERS]).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");

    let mut s = TcpStream::connect(("127.0.0.1", tp)).expect("connect to the published TCP port");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello-tcp");

    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 100];
    let mut answer = None;
    // UDP may be dropped while the forward settles: resend a few times.
    for _ in 0..4 {
        u.send_to(b"ping", ("127.0.0.1", up)).unwrap();
        if let Ok((n, _)) = u.recv_from(&mut buf) {
            answer = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            break;
        }
    }
    // The datagram must reach the server in any case.
    let mut got = String::new();
    out.read_line(&mut got).unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(got.trim(), "udp-got ping", "the published UDP port did not deliver");
    if mode == Mode::Pasta && answer.is_none() {
        // Known: the pasta build in Debian 12 (2023-03-09) loses the reply of a UDP flow spliced
        // from the host's loopback. Reported, not asserted (newer pasta must pass).
        eprintln!("KNOWN: pasta lost the UDP reply on the loopback splice path");
        return;
    }
    assert_eq!(answer.as_deref(), Some("hello-udp:ping"));
}

pub fn resolv_conf_cases(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("resolv.conf");
    let upstream = dir.path().join("upstream.conf");
    let paths = ResolverPaths { host: host.clone(), upstream: upstream.clone() };
    let plan = net::preflight(&req(mode)).unwrap().with_resolver_paths(paths.clone());

    std::fs::write(&host, "nameserver 192.0.2.53\nsearch example.test\n").unwrap();
    let r = plan.resolv_conf();
    assert!(r.contains("nameserver 10.0.2.3\n") && !r.contains("192.0.2.53"), "{r}");
    assert!(r.contains("search example.test\n"), "{r}");

    std::fs::write(&host, "nameserver 127.0.0.53\noptions edns0 trust-ad\n").unwrap();
    std::fs::write(&upstream, "nameserver 198.51.100.1\nnameserver 198.51.100.2\nsearch up.test\n").unwrap();
    let r = plan.resolv_conf();
    assert!(r.contains("nameserver 198.51.100.1\nnameserver 198.51.100.2\n"), "{r}");
    assert!(!r.contains("127.0.0.53") && !r.contains("10.0.2.3"), "{r}");
    assert!(r.contains("search up.test"), "{r}");

    let plan = net::preflight(&Request { dns: vec!["203.0.113.9".parse().unwrap()], ..req(mode) })
        .unwrap()
        .with_resolver_paths(paths);
    let r = plan.resolv_conf();
    assert!(r.contains("nameserver 203.0.113.9\n") && !r.contains("198.51"), "{r}");
}

pub fn no_process_after_drop(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let t = Target::new();
    let plan = net::preflight(&Request {
        publish: vec![format!("127.0.0.1:{}:80", free_port()).parse().unwrap()],
        ..req(mode)
    })
    .unwrap();
    let a = attached(&plan, &t, dir.path());
    let pid = a.backend_pid().expect("a backend pid");
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    if mode == Mode::Slirp4netns {
        for flag in ["--disable-host-loopback", "--mtu=65520", "--enable-sandbox", "--enable-seccomp"] {
            assert!(cmdline.contains(flag), "{flag} missing in {cmdline:?}");
        }
    }
    drop(a);
    // Drop kills without waiting for the (slow) death of the backend: it must be gone shortly after.
    assert!(wait_dead(pid), "{mode} (pid {pid}) still runs 3 s after drop");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "files left in the state dir: {left:?}");
}

/// Run in a child test process by `no_process_after_sigkill`: attaches and waits to be killed.
pub fn hold_attached(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let t = Target::new();
    let plan = net::preflight(&req(mode)).unwrap();
    let a = net::attach(&plan, t.pid(), dir.path()).unwrap();
    println!("HOLDING backend={} target={}", a.backend_pid().unwrap(), t.pid());
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

pub fn no_process_after_sigkill(mode: Mode, helper_test: &str) {
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", helper_test, "--include-ignored", "--nocapture", "--test-threads=1"])
        .env("BURROW_NET_HOLD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("HOLDING") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "holder exited before attaching");
    }
    let field = |k: &str| -> u32 {
        line.split_whitespace().find_map(|w| w.strip_prefix(k)).and_then(|v| v.parse().ok()).unwrap()
    };
    let (backend, target) = (field("backend="), field("target="));
    assert!(proc_alive(backend));
    holder.kill().unwrap(); // SIGKILL: no destructor runs in the holder
    holder.wait().unwrap();
    let gone = wait_dead(backend);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(target as i32), nix::sys::signal::SIGKILL);
    assert!(gone, "{mode} (pid {backend}) survived SIGKILL of the process holding it");
}

pub fn bad_publish_fails_in_preflight(mode: Mode) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let e = net::preflight(&Request { publish: vec![format!("127.0.0.1:{port}:80").parse().unwrap()], ..req(mode) })
        .unwrap_err();
    assert!(matches!(e, NetError::Publish(net::PublishError::Busy { .. })), "{e}");
    assert!(e.to_string().contains("already in use"), "{e}");
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let uport = u.local_addr().unwrap().port();
    let e = net::preflight(&Request {
        publish: vec![format!("127.0.0.1:{uport}:53/udp").parse().unwrap()],
        allow_host_loopback: true,
        ..req(mode)
    })
    .unwrap_err();
    assert!(e.to_string().contains("already in use"), "{e}");
    for bad in ["80", "x:80", "1:2/sctp", "127.0.0.1:99999:80"] {
        let e = bad.parse::<PortSpec>().unwrap_err();
        assert!(e.to_string().starts_with("invalid --publish"), "{e}");
    }
}

/// Run inside the namespace (the test binary re-executed through nsenter) by
/// `pasta_tap_queue_is_set_inside`.
#[test]
#[ignore = "child process of pasta_tap_queue_is_set_inside"]
fn configure_inside_child() {
    if std::env::var_os("BURROW_NET_INSIDE").is_none() {
        return;
    }
    let plan = net::preflight(&req(Mode::Pasta)).unwrap();
    plan.configure_inside().unwrap();
    println!("\nCONFIGURED");
}

#[test]
fn pasta_tap_queue_is_set_inside() {
    if backend_missing(Mode::Pasta) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = Target::new();
    let plan = net::preflight(&req(Mode::Pasta)).unwrap();
    let _a = attached(&plan, &t, dir.path());
    let exe = std::env::current_exe().unwrap();
    let out = t
        .ns_cmd(&[exe.to_str().unwrap(), "--exact", "configure_inside_child", "--include-ignored", "--nocapture"])
        .env("BURROW_NET_INSIDE", "1")
        .output()
        .unwrap()
        .success_or_panic();
    assert!(out.contains("CONFIGURED"), "{out}");
    let link = t.ns(&["ip", "link", "show", "dev", "tap0"]).success_or_panic();
    assert!(link.contains(&format!("qlen {}", net::PASTA_TXQUEUELEN)), "{link}");
}

pub fn dead_target_fails_fast(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Target::new();
    let pid = t.pid();
    t.child.kill().unwrap();
    t.child.wait().unwrap();
    let plan = net::preflight(&req(mode)).unwrap();
    let start = Instant::now();
    let e = net::attach(&plan, pid, dir.path()).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    eprintln!("attach to a dead pid: {e}");
    assert!(matches!(e, NetError::Died { .. }), "{e}");
    assert!(e.to_string().contains(&mode.to_string()), "{e}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "files left in the state dir: {left:?}");
}

macro_rules! suite {
    ($modname:ident, $mode:expr) => {
        mod $modname {
            use super::*;
            fn go(f: impl FnOnce(Mode)) {
                if !backend_missing($mode) {
                    f($mode)
                }
            }
            #[test]
            fn host_loopback_closed_by_default() {
                go(super::host_loopback_closed_by_default)
            }
            #[test]
            fn host_loopback_allowed() {
                go(super::host_loopback_allowed)
            }
            #[test]
            fn published_ports_reach_the_container() {
                go(super::published_ports_reach_the_container)
            }
            #[test]
            fn resolv_conf_cases() {
                go(super::resolv_conf_cases)
            }
            #[test]
            fn no_process_after_drop() {
                go(super::no_process_after_drop)
            }
            #[test]
            fn bad_publish_fails_in_preflight() {
                go(super::bad_publish_fails_in_preflight)
            }
            #[test]
            fn dead_target_fails_fast() {
                go(super::dead_target_fails_fast)
            }
            #[test]
            fn no_process_after_sigkill() {
                let name = concat!(stringify!($modname), "::hold_attached");
                go(|m| super::no_process_after_sigkill(m, name))
            }
            #[test]
            #[ignore = "child process of no_process_after_sigkill"]
            fn hold_attached() {
                if std::env::var_os("BURROW_NET_HOLD").is_some() {
                    super::hold_attached($mode)
                }
            }
        }
    };
}

suite!(slirp4netns, Mode::Slirp4netns);
suite!(pasta, Mode::Pasta);

#[test]
fn mode_none_has_only_lo() {
    if backend_missing(Mode::None) || skip_unless(installed("nsenter"), "nsenter missing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = Target::new();
    let plan = net::preflight(&req(Mode::None)).unwrap();
    assert!(plan.unshare_netns());
    let a = net::attach(&plan, t.pid(), dir.path()).unwrap();
    assert_eq!(a.backend_pid(), None);
    let links = t.ns(&["ip", "-o", "link", "show"]).success_or_panic();
    let names: Vec<&str> = links.lines().filter_map(|l| l.split(':').nth(1)).map(str::trim).collect();
    assert_eq!(names, vec!["lo"], "{links}");
    assert!(plan.resolv_conf().lines().all(|l| !l.starts_with("nameserver")));
}

#[test]
fn mode_host_shares_the_host_netns() {
    let plan = net::preflight(&req(Mode::Host)).unwrap();
    assert!(!plan.unshare_netns());
    assert_eq!(plan.backend_name(), "host");
}

#[test]
fn auto_picks_slirp4netns_first() {
    let plan = net::preflight(&req(Mode::Auto)).unwrap();
    let expect = if installed("slirp4netns") {
        "slirp4netns"
    } else if installed("pasta") {
        "pasta"
    } else {
        "none"
    };
    assert_eq!(plan.backend_name(), expect);
    assert_eq!(plan.notices().is_empty(), expect != "none");
}

/// Driven by scripts/bench-net.sh: attaches the backend named by $BURROW_NET_BENCH_MODE to
/// $BURROW_NET_BENCH_PID, prints the preflight and attach times, and holds it until stdin closes.
#[test]
#[ignore = "driven by scripts/bench-net.sh"]
fn bench_attach_and_hold() {
    let Ok(pid) = std::env::var("BURROW_NET_BENCH_PID") else {
        return;
    };
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let mode: Mode = env("BURROW_NET_BENCH_MODE").parse().unwrap();
    let request = Request {
        mode,
        allow_host_loopback: env("BURROW_NET_BENCH_ALLOW") == "1",
        publish: env("BURROW_NET_BENCH_PUBLISH")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect(),
        dns: Vec::new(),
        // The library alone has no forwarder (P1 starts it): published ports go through the backend's own
        // forwarding (slirp4netns' add_hostfwd, pasta's -t/-u).
        port_handler: Some(if mode == Mode::Pasta { net::PortHandler::Pasta } else { net::PortHandler::Slirp4netns }),
    };
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let plan = net::preflight(&request).unwrap();
    let t1 = Instant::now();
    let a = net::attach(&plan, pid.parse().unwrap(), dir.path()).unwrap();
    let t2 = Instant::now();
    println!(
        "\nBENCH preflight_ms={:.2} attach_ms={:.2} backend_pid={}",
        (t1 - t0).as_secs_f64() * 1e3,
        (t2 - t1).as_secs_f64() * 1e3,
        a.backend_pid().unwrap_or(0)
    );
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// A handler that belongs to the other backend is ignored with a notice (burrow's forwarder is used), and
/// add_hostfwd with published UDP and host loopback closed is refused with the fix in one line.
#[test]
fn a_port_handler_of_the_other_backend_falls_back_to_burrows() {
    if backend_missing(Mode::Slirp4netns) || backend_missing(Mode::Pasta) {
        return;
    }
    let publish: Vec<PortSpec> = vec![format!("127.0.0.1:{}:53/udp", free_port()).parse().unwrap()];
    let r = Request { publish: publish.clone(), port_handler: Some(net::PortHandler::Slirp4netns), ..req(Mode::Pasta) };
    let plan = net::preflight(&r).unwrap();
    assert!(plan.forwards_ports());
    assert!(plan.notices().iter().any(|n| n.contains("--port-handler slirp4netns applies to")), "{:?}", plan.notices());
    drop(plan);
    let r = Request { publish, port_handler: Some(net::PortHandler::Slirp4netns), ..req(Mode::Auto) };
    let e = net::preflight(&r).unwrap_err();
    assert!(matches!(e, NetError::SlirpUdpNeedsHostLoopback { .. }), "{e}");
    assert!(e.to_string().contains("--port-handler burrow"), "{e}");
}

#[test]
fn burrow_port_handler_binds_the_host_ports_in_preflight() {
    if backend_missing(Mode::Slirp4netns) {
        return;
    }
    let (tp, up) = (free_port(), free_port());
    let publish: Vec<PortSpec> =
        vec![format!("127.0.0.1:{tp}:80").parse().unwrap(), format!("127.0.0.1:{up}:53/udp").parse().unwrap()];
    // Published UDP needs no host loopback with burrow's forwarder: auto keeps slirp4netns.
    let plan = net::preflight(&Request { publish: publish.clone(), ..req(Mode::Auto) }).unwrap();
    assert_eq!(plan.backend_name(), "slirp4netns");
    assert!(plan.forwards_ports());
    // The bind is the check: the ports stay taken while the plan holds them, and are free once closed.
    assert!(TcpListener::bind(("127.0.0.1", tp)).is_err(), "TCP port {tp} not held by the plan");
    assert!(UdpSocket::bind(("127.0.0.1", up)).is_err(), "UDP port {up} not held by the plan");
    let again = net::preflight(&Request { publish: publish.clone(), ..req(Mode::Slirp4netns) }).unwrap_err();
    assert!(again.to_string().contains("already in use"), "{again}");
    plan.close_host_sockets();
    // A process another test thread is spawning holds copies of every open descriptor between its
    // fork and its exec (close-on-exec closes them only then): the ports must be free again within a
    // moment, not at the very instant.
    rebinds_within(Duration::from_secs(3), || TcpListener::bind(("127.0.0.1", tp)).map(drop), "TCP", tp);
    rebinds_within(Duration::from_secs(3), || UdpSocket::bind(("127.0.0.1", up)).map(drop), "UDP", up);
    let hostfwd =
        net::preflight(&Request { port_handler: Some(net::PortHandler::Slirp4netns), ..req(Mode::Slirp4netns) });
    assert!(!hostfwd.unwrap().forwards_ports());
}

/// Retries `bind` until it succeeds or `limit` has passed (then fails with the last error).
fn rebinds_within(limit: Duration, bind: impl Fn() -> std::io::Result<()>, proto: &str, port: u16) {
    let deadline = Instant::now() + limit;
    loop {
        match bind() {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => {
                panic!("{proto} port {port} still taken {limit:?} after close: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// `-P`: host port 0 in a spec is bound to a port the kernel chooses, which `published()` reports (the
/// container's record and `ps` show it); with burrow's forwarder the chosen ports stay held, with slirp4netns'
/// add_hostfwd they are chosen by binding and released for the backend.
#[test]
fn publish_all_ports_are_chosen_by_the_kernel_in_preflight() {
    if backend_missing(Mode::Slirp4netns) {
        return;
    }
    let exposed: Vec<net::Exposed> = ["80/tcp", "53/udp", "8080"].iter().map(|e| e.parse().unwrap()).collect();
    let explicit: Vec<PortSpec> = vec![format!("127.0.0.1:{}:8080", free_port()).parse().unwrap()];
    let all_specs = net::publish::publish_all(&explicit, &exposed);
    assert_eq!(all_specs.len(), 2, "8080/tcp is published by -p already: {all_specs:?}");
    let publish: Vec<PortSpec> = explicit.iter().chain(&all_specs).copied().collect();
    let plan = net::preflight(&Request { publish: publish.clone(), ..req(Mode::Slirp4netns) }).unwrap();
    let chosen = plan.published().to_vec();
    assert_eq!(chosen.len(), 3);
    assert_eq!(chosen[0], explicit[0]);
    assert!(chosen.iter().all(|p| p.host_port != 0), "{chosen:?}");
    assert!(TcpListener::bind(("0.0.0.0", chosen[1].host_port)).is_err(), "the chosen TCP port is not held");
    assert!(UdpSocket::bind(("0.0.0.0", chosen[2].host_port)).is_err(), "the chosen UDP port is not held");
    plan.close_host_sockets();
    let tcp_only: Vec<PortSpec> = publish.iter().filter(|p| p.proto == net::Proto::Tcp).copied().collect();
    let r = Request { publish: tcp_only, port_handler: Some(net::PortHandler::Slirp4netns), ..req(Mode::Slirp4netns) };
    let hostfwd = net::preflight(&r).unwrap();
    assert!(!hostfwd.forwards_ports());
    let port = hostfwd.published()[1].host_port;
    assert_ne!(port, 0);
    rebinds_within(Duration::from_secs(3), || TcpListener::bind(("0.0.0.0", port)).map(drop), "TCP", port);
}
