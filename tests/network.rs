//! `burrow run` networking (issue 5) with the REAL slirp4netns and pasta: one shared list of tests, run for
//! each backend. Traffic goes only to the host's loopback and the backends' internal addresses. The container
//! is the host-root default, so it has python3 for its servers and clients.

mod support;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `burrow run --network BACKEND ARGS -- python3 -c SCRIPT` in the host-root default.
fn py(backend: &str, args: &[&str], script: &str) -> Command {
    let mut c = burrow();
    c.args(["run", "--network", backend]).args(args).args(["--", "python3", "-c", script]);
    c
}

fn require(backend: &str) -> Option<String> {
    if let Some(r) = unusable() {
        return Some(r);
    }
    let bin = if backend == "pasta" { "pasta" } else { "slirp4netns" };
    if !["/usr/bin", "/bin", "/usr/local/bin"].iter().any(|d| std::path::Path::new(d).join(bin).exists()) {
        return Some(format!("{bin} is not installed"));
    }
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun").is_err() {
        return Some("/dev/net/tun is not usable (scripts/ci-setup.sh makes it 0666)".into());
    }
    None
}

/// Serves one "hello" per connection on the host's 127.0.0.1, in a thread.
fn host_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(b"hello-from-host\n");
        }
    });
    port
}

const CONNECT: &str = "import socket,sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
    print(c.recv(100).decode().strip())
except OSError as e:
    print('refused', type(e).__name__)";

fn host_loopback_is_closed_by_default_and_open_when_allowed(backend: &str) {
    let port = host_server().to_string();
    let mut c = py(backend, &[], CONNECT);
    c.args(["10.0.2.2", &port]);
    let out = expect(&output(c), 0);
    assert!(out.starts_with("refused"), "{backend}: host loopback reachable by default: {out}");
    let mut c = py(backend, &["--allow-host-loopback"], CONNECT);
    c.args(["host.burrow.internal", &port]);
    assert_eq!(expect(&output(c), 0), "hello-from-host\n", "{backend}");
}

const SERVE: &str = "import socket
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(('0.0.0.0', 8080)); t.listen(1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', 8081))
print('ready', flush=True)
c, _ = t.accept(); c.sendall(b'tcp-from-container\\n'); c.close()
d, a = u.recvfrom(100); u.sendto(b'udp:' + d, a)
print('served', d.decode(), flush=True)";

fn published_tcp_and_udp_ports_reach_the_container(backend: &str) {
    published_tcp_and_udp_with(backend, &[]);
}

/// Debian 12's pasta (2023-03-09) has two bugs on its own forwarding path (`--port-handler pasta`), which
/// burrow's forwarder (the default) avoids: they are tolerated, and printed as KNOWN, only there.
fn pasta_own_forwarding(extra: &[&str]) -> bool {
    extra.windows(2).any(|w| w == ["--port-handler", "pasta"])
}

fn published_tcp_and_udp_with(backend: &str, extra: &[&str]) {
    let (tp, up) = (free_port(), free_udp_port());
    let (t, u) = (format!("127.0.0.1:{tp}:8080"), format!("127.0.0.1:{up}:8081/udp"));
    let mut args = vec!["-p", &t, "-p", &u];
    args.extend_from_slice(extra);
    let mut c = py(backend, &args, SERVE);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Reaped(c.spawn().unwrap());
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready", "{backend}");
    let mut s = TcpStream::connect(("127.0.0.1", tp)).expect("connect to the published TCP port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert_eq!(got, "tcp-from-container\n", "{backend}");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 100];
    let mut answer = None;
    for _ in 0..20 {
        sock.send_to(b"ping", ("127.0.0.1", up)).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            answer = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            break;
        }
    }
    // The datagram must reach the server in every case.
    assert_eq!(lines.next().unwrap().unwrap(), "served ping", "{backend}: the published UDP port did not deliver");
    if pasta_own_forwarding(extra) && answer.is_none() {
        // Known: Debian 12's pasta (2023-03-09) drops the reply of a UDP flow it spliced from the host's
        // loopback (the request arrives, as checked above). Newer pasta must pass the assertion below.
        eprintln!("KNOWN: pasta lost the UDP reply on its loopback splice path");
    } else {
        assert_eq!(answer.as_deref(), Some("udp:ping"), "{backend}: the reply from the published UDP port");
    }
    let o = wait_output(child.take(), Duration::from_secs(20));
    assert!(o.status.success(), "{backend}: {}", stderr(&o));
}

fn resolv_conf_points_at_the_forwarder_or_the_given_server(backend: &str) {
    let cat = "print(open('/etc/resolv.conf').read())";
    let out = expect(&output(py(backend, &[], cat)), 0);
    let servers: Vec<&str> = out.lines().filter(|l| l.starts_with("nameserver")).collect();
    assert_eq!(servers, ["nameserver 10.0.2.3"], "{backend}: {out}");
    let out = expect(&output(py(backend, &["--dns", "192.0.2.53"], cat)), 0);
    let servers: Vec<&str> = out.lines().filter(|l| l.starts_with("nameserver")).collect();
    assert_eq!(servers, ["nameserver 192.0.2.53"], "{backend}: {out}");
    let out = expect(&output(py(backend, &["--hostname", "box"], "print(open('/etc/hosts').read())")), 0);
    assert!(out.contains("10.0.2.100\tbox"), "{backend}: {out}");
}

fn backends_of_mine() -> Vec<i32> {
    let me = nix::unistd::getuid().as_raw();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|p| {
            use std::os::unix::fs::MetadataExt;
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            let mine = std::fs::metadata(format!("/proc/{p}")).is_ok_and(|m| m.uid() == me);
            // Debian's pasta runs as passt.avx2 or pasta.avx2 on CPUs that have it.
            let c = comm.trim();
            mine && (c == "slirp4netns" || c.starts_with("pasta") || c.starts_with("passt"))
        })
        .collect()
}

fn no_backend_process_remains_after_exit_or_sigkill(backend: &str) {
    let before = backends_of_mine();
    expect(&output(py(backend, &[], "pass")), 0);
    let mut c = py(backend, &[], "print('ready', flush=True); import time; time.sleep(1000)");
    c.stdout(Stdio::piped());
    let mut child = Reaped(c.spawn().unwrap());
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let during: Vec<i32> = backends_of_mine().into_iter().filter(|p| !before.contains(p)).collect();
    assert!(!during.is_empty(), "{backend}: no backend process while the container runs");
    // burrow reads its signals from a signalfd with them blocked; the backend must not inherit that mask
    // (it would ignore SIGTERM and SIGHUP; pasta's tap path also ran slower with it).
    for p in &during {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        let blocked = status.lines().find(|l| l.starts_with("SigBlk:")).unwrap_or("SigBlk: gone");
        assert!(blocked.ends_with("0000000000000000") || blocked.ends_with("gone"), "{backend} {p}: {blocked}");
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let left = || during.iter().copied().filter(|p| alive(*p)).collect::<Vec<_>>();
    assert!(eventually(Duration::from_secs(10), || left().is_empty()), "{backend}: left after SIGKILL: {:?}", left());
}

fn a_busy_port_or_a_malformed_publish_fails_before_anything_starts(backend: &str) {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let spec = format!("127.0.0.1:{port}:80");
    // A private TMPDIR: any state directory (which a started backend needs) would show up here.
    let tmp = tempdir();
    for (p, want) in
        [(spec.as_str(), "in use"), ("80", "--publish"), ("1:2:3:4", "--publish"), ("8080:80/sctp", "sctp")]
    {
        let mut c = burrow();
        c.env("TMPDIR", tmp.path()).args(["run", "--network", backend, "-p", p, "--", "true"]);
        let o = output(c);
        expect(&o, 125);
        let err = stderr(&o);
        assert!(err.contains(want) && err.lines().count() == 1, "{backend} -p {p}: {err}");
    }
    let made: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().map(|e| e.path()).collect();
    assert!(made.is_empty(), "{backend}: something was set up before the error: {made:?}");
}

/// Sends `data` to the published port, half-closes, and returns all that comes back.
fn send_and_read_back(port: u16, data: &[u8]) -> Vec<u8> {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the published TCP port");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            w.write_all(data).expect("send to the published port");
            w.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut back = Vec::with_capacity(data.len());
        (&s).read_to_end(&mut back).expect("read from the published port");
        back
    })
}

/// Starts `script` in a container publishing 127.0.0.1:PORT:8080 and waits for its "ready" line.
fn serve_published(
    backend: &str,
    extra: &[&str],
    script: &str,
) -> (Reaped, u16, std::io::Lines<BufReader<std::process::ChildStdout>>) {
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8080");
    let mut args = vec!["-i", "-p", publish.as_str()];
    args.extend_from_slice(extra);
    let mut c = py(backend, &args, script);
    // stdin: a server that waits for a line gets EOF when the test drops the pipe (wait_output).
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Reaped(c.spawn().unwrap());
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready", "{backend}");
    (child, port, lines)
}

/// Closes the container's stdin (the servers below wait for it) and waits for burrow to exit.
fn finish(mut child: Reaped) -> std::process::Output {
    drop(child.0.stdin.take());
    wait_output(child.take(), Duration::from_secs(20))
}

/// Reads everything until the client half-closes, then sends it all back: the answer travels only after
/// the end of the request, as in HTTP/1.0 or a shell pipe. The container then waits for a line on stdin
/// (see `serve_published`), so that its end does not race the bytes still in flight.
const ECHO_AFTER_EOF: &str = "import socket, sys
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(('0.0.0.0', 8080)); t.listen(1)
print('ready', flush=True)
c, a = t.accept(); data = bytearray()
while True:
    b = c.recv(1 << 20)
    if not b: break
    data += b
c.sendall(data); c.close()
print('echoed', len(data), a[0], flush=True)
sys.stdin.readline()";

fn a_large_transfer_through_a_published_port_is_intact_both_ways(backend: &str) {
    large_transfer_with(backend, &[]);
}

fn large_transfer_with(backend: &str, extra: &[&str]) {
    let (child, port, mut lines) = serve_published(backend, extra, ECHO_AFTER_EOF);
    let data = xorshift_bytes(0x5eed, 64 << 20);
    let back = send_and_read_back(port, &data);
    let done = lines.next().unwrap().unwrap();
    assert!(done.starts_with(&format!("echoed {}", data.len())), "{backend}: host to container: {done}");
    assert!(data.starts_with(&back), "{backend}: the bytes echoed back differ from those sent");
    if pasta_own_forwarding(extra) && back.len() < data.len() {
        // Known: Debian 12's pasta (2023-03-09) loses the tail of a spliced connection's container-to-host
        // direction when the container closes it (the container still runs; measured: 57 of 64 MiB arrive).
        eprintln!("KNOWN: pasta cut the echo short: {} of {} bytes", back.len(), data.len());
    } else {
        assert_eq!(back.len(), data.len(), "{backend}: bytes echoed back");
    }
    let o = finish(child);
    assert!(o.status.success(), "{backend}: {}", stderr(&o));
}

/// One thread per connection, each echoing as it reads, until CLIENTS connections are served.
const ECHO_CONCURRENT: &str = "import socket, threading, sys
n = 8
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(('0.0.0.0', 8080)); t.listen(n)
print('ready', flush=True)
def echo(c):
    while True:
        b = c.recv(65536)
        if not b: break
        c.sendall(b)
    c.close()
ts = [threading.Thread(target=echo, args=(t.accept()[0],)) for _ in range(n)]
[x.start() for x in ts]; [x.join() for x in ts]
print('served', n, flush=True)
sys.stdin.readline()";

fn concurrent_connections_through_a_published_port_stay_apart(backend: &str) {
    const CLIENTS: u64 = 8;
    let (child, port, mut lines) = serve_published(backend, &[], ECHO_CONCURRENT);
    std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                scope.spawn(move || {
                    let data = xorshift_bytes(i + 1, (1 << 20) + i as usize * 4099);
                    assert!(send_and_read_back(port, &data) == data, "{backend}: client {i} got other bytes back");
                })
            })
            .collect();
        clients.into_iter().for_each(|c| c.join().unwrap());
    });
    assert_eq!(lines.next().unwrap().unwrap(), format!("served {CLIENTS}"), "{backend}");
    let o = finish(child);
    assert!(o.status.success(), "{backend}: {}", stderr(&o));
}

macro_rules! for_each_backend {
    ($($name:ident),*) => {
        mod slirp4netns { $( #[test] fn $name() { if let Some(r) = super::require("slirp4netns") { crate::skip!("{r}"); } super::$name("slirp4netns") } )* }
        mod pasta { $( #[test] fn $name() { if let Some(r) = super::require("pasta") { crate::skip!("{r}"); } super::$name("pasta") } )* }
    };
}

for_each_backend!(
    host_loopback_is_closed_by_default_and_open_when_allowed,
    published_tcp_and_udp_ports_reach_the_container,
    resolv_conf_points_at_the_forwarder_or_the_given_server,
    no_backend_process_remains_after_exit_or_sigkill,
    a_busy_port_or_a_malformed_publish_fails_before_anything_starts,
    a_large_transfer_through_a_published_port_is_intact_both_ways,
    concurrent_connections_through_a_published_port_stay_apart
);

/// burrow's own forwarder for published ports with slirp4netns (`--port-handler burrow`, the default), and
/// slirp4netns' add_hostfwd behind `--port-handler slirp4netns`.
mod port_handler {
    use super::*;

    fn require() -> bool {
        let reason = super::require("slirp4netns");
        let skip = |r: String| crate::skip!("{r}");
        reason.map(skip).is_none()
    }

    /// The forwarder processes below burrow's process `pid`.
    fn forwarders(pid: u32) -> Vec<i32> {
        let comm = |p: &i32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        descendants(pid as i32).into_iter().filter(|p| comm(p).trim() == "burrow-portfwd").collect()
    }

    const PEER: &str = "import socket
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(('0.0.0.0', 8080)); t.listen(1)
print('ready', flush=True)
c, a = t.accept(); c.sendall(b'hi\\n'); c.close()
print('peer', a[0], flush=True)";

    /// Which address the container sees a published connection come from: its own with the forwarder
    /// (the forwarder connects from inside), slirp's host gateway with add_hostfwd.
    fn peer_seen(handler: &[&str]) -> String {
        let (child, port, mut lines) = serve_published("slirp4netns", handler, PEER);
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hi\n", "{handler:?}");
        let peer = lines.next().unwrap().unwrap();
        let o = wait_output(child.take(), Duration::from_secs(20));
        assert!(o.status.success(), "{}", stderr(&o));
        peer
    }

    #[test]
    fn both_handlers_publish_tcp_and_show_their_source_address() {
        if !require() {
            return;
        }
        assert_eq!(peer_seen(&[]), "peer 10.0.2.100");
        assert_eq!(peer_seen(&["--port-handler", "burrow"]), "peer 10.0.2.100");
        assert_eq!(peer_seen(&["--port-handler", "slirp4netns"]), "peer 10.0.2.2");
    }

    const UDP_ECHO: &str = "import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', 8081))
print('ready', flush=True)
for _ in range(2):
    d, a = u.recvfrom(100); u.sendto(b'udp:' + d, a)
print('served', flush=True)";

    #[test]
    fn published_udp_works_without_host_loopback() {
        if !require() {
            return;
        }
        let port = free_udp_port();
        let publish = format!("127.0.0.1:{port}:8081/udp");
        let mut c = py("slirp4netns", &["-p", &publish], UDP_ECHO);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = Reaped(c.spawn().unwrap());
        let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        // Two clients: two flows, each answered at its own address.
        for client in 0..2 {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let msg = format!("ping{client}");
            sock.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
            let mut buf = [0u8; 100];
            let (n, from) = sock.recv_from(&mut buf).expect("the reply of the published UDP port");
            assert_eq!(&buf[..n], format!("udp:{msg}").as_bytes());
            assert_eq!(from.port(), port, "the reply must come from the published port");
        }
        assert_eq!(lines.next().unwrap().unwrap(), "served");
        let o = wait_output(child.take(), Duration::from_secs(20));
        assert!(o.status.success(), "{}", stderr(&o));
        // add_hostfwd still refuses it, with the way out in the message.
        let mut c = py("slirp4netns", &["-p", &publish, "--port-handler", "slirp4netns"], "pass");
        c.env("TMPDIR", tempdir().path());
        let o = output(c);
        expect(&o, 125);
        assert!(stderr(&o).contains("--allow-host-loopback"), "{}", stderr(&o));
    }

    #[test]
    fn a_large_transfer_through_add_hostfwd_is_intact() {
        if !require() {
            return;
        }
        let (child, port, mut lines) =
            serve_published("slirp4netns", &["--port-handler", "slirp4netns"], ECHO_AFTER_EOF);
        let data = xorshift_bytes(7, 16 << 20);
        assert!(send_and_read_back(port, &data) == data, "add_hostfwd: the echoed bytes differ");
        assert!(lines.next().unwrap().unwrap().starts_with("echoed"));
        let o = finish(child);
        assert!(o.status.success(), "{}", stderr(&o));
    }

    #[test]
    fn a_reply_sent_just_before_the_container_exits_arrives_whole() {
        if !require() {
            return;
        }
        // ECHO_AFTER_EOF without the wait: the container ends right after its last write. The client reads
        // only after a pause, so that most of the reply (16 MiB: the host side's socket buffers fill, the
        // rest waits in the pipe and the container's sockets) is still in flight when the container is gone.
        // The forwarder drains it before P1 kills it.
        let script = ECHO_AFTER_EOF.replace("sys.stdin.readline()", "");
        let (child, port, mut lines) = serve_published("slirp4netns", &[], &script);
        let data = xorshift_bytes(11, 16 << 20);
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&data).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        assert!(lines.next().unwrap().unwrap().starts_with("echoed"));
        assert_eq!(back.len(), data.len(), "the reply was cut short by the container's exit");
        assert!(back == data);
        let o = finish(child);
        assert!(o.status.success(), "{}", stderr(&o));
    }

    const HOLD: &str = "import socket, time
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(('0.0.0.0', 8080)); t.listen(1)
print('ready', flush=True)
c, a = t.accept(); c.sendall(b'hi\\n'); c.close()
time.sleep(1000)";

    #[test]
    fn no_forwarder_remains_after_exit_or_sigkill() {
        if !require() {
            return;
        }
        // A normal exit, with a connection served.
        let (child, port, _lines) = serve_published("slirp4netns", &[], PEER);
        let fwd = forwarders(child.0.id());
        assert_eq!(fwd.len(), 1, "one forwarder while the container runs: {fwd:?}");
        let status = std::fs::read_to_string(format!("/proc/{}/status", fwd[0])).unwrap();
        assert!(status.contains("CapEff:\t0000000000000000"), "the forwarder keeps capabilities: {status}");
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.read_to_string(&mut String::new()).unwrap();
        let o = wait_output(child.take(), Duration::from_secs(20));
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(!alive(fwd[0]), "forwarder {} left after a normal exit", fwd[0]);
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok(), "the published port is still bound after exit");
        // SIGKILL of burrow with a connection open.
        let (mut child, port, _lines) = serve_published("slirp4netns", &[], HOLD);
        let fwd = forwarders(child.0.id());
        assert_eq!(fwd.len(), 1, "{fwd:?}");
        let _open = TcpStream::connect(("127.0.0.1", port)).unwrap();
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        assert!(eventually(Duration::from_secs(10), || !alive(fwd[0])), "forwarder {} left after SIGKILL", fwd[0]);
        assert!(
            eventually(Duration::from_secs(10), || TcpListener::bind(("127.0.0.1", port)).is_ok()),
            "the published port is still bound after SIGKILL"
        );
    }

    /// The forwarder lives outside the container, so only something on the host can kill it: the container
    /// goes on (its exit code is its own) and burrow says, once, that its published ports stopped working.
    #[test]
    fn a_dead_forwarder_is_reported_and_the_container_goes_on() {
        if !require() {
            return;
        }
        let script = "import sys\nprint('ready', flush=True)\nsys.stdin.readline()\nsys.exit(7)";
        let (mut child, _port, _lines) = serve_published("slirp4netns", &[], script);
        let fwd = forwarders(child.0.id());
        assert_eq!(fwd.len(), 1, "{fwd:?}");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(fwd[0]), nix::sys::signal::Signal::SIGKILL).unwrap();
        assert!(eventually(Duration::from_secs(5), || !alive(fwd[0])), "the forwarder was not reaped");
        // Give P1 a moment to notice before the container ends.
        std::thread::sleep(Duration::from_millis(200));
        let stdin = child.0.stdin.take().unwrap();
        drop(stdin);
        let o = wait_output(child.take(), Duration::from_secs(20));
        assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
        let err = stderr(&o);
        let warnings: Vec<&str> = err.lines().filter(|l| l.contains("port forwarder")).collect();
        assert_eq!(warnings.len(), 1, "{err}");
        assert!(warnings[0].contains(&format!("pid {}", fwd[0])) && warnings[0].contains("SIGKILL"), "{err}");
    }

    /// pasta's own forwarding (`--port-handler pasta`): TCP and UDP reach the container; the two bugs of
    /// Debian 12's pasta on this path are tolerated and printed as KNOWN (see `pasta_own_forwarding`).
    #[test]
    fn pasta_own_forwarding_still_publishes() {
        if super::require("pasta").map(|r| crate::skip!("{r}")).is_some() {
            return;
        }
        let pasta = ["--port-handler", "pasta"];
        published_tcp_and_udp_with("pasta", &pasta);
        large_transfer_with("pasta", &pasta);
        // No forwarder of burrow's on this path.
        let (child, _port, _lines) = serve_published("pasta", &pasta, PEER);
        assert!(forwarders(child.0.id()).is_empty(), "burrow's forwarder runs with --port-handler pasta");
    }
}
