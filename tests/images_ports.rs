//! `-P/--publish-all` and `--expose` with images (issue 10), and what `burrow ps` shows of an image run, through
//! the real binary as burrow-t1: the ports an image exposes are published on host ports the kernel chooses,
//! `ps` (table and JSON) shows those ports and the image's reference, a TCP connection from the host reaches
//! the payload (burrow's forwarder and slirp4netns' add_hostfwd); `-P` without exposed ports is a no-op; a bad
//! `--expose` is a one-line error, exit 125. Each test has its own store, TMPDIR and HOME (its own `ps`).

mod support;
#[macro_use]
#[path = "support/store.rs"]
mod store;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};
use store::*;
use support::oci::{self, Comp};
use support::*;

/// The image's payload: one line to the first TCP client of port 80.
const SERVE: &str = "echo from-the-image | nc -l -p 80";

/// A store with `localhost/web:1` (ExposedPorts 80/tcp and 53/udp, Cmd: [`SERVE`]) and `localhost/plain:1`
/// (no ExposedPorts), plus a runtime directory of its own; its containers are removed on drop.
struct Ports {
    env: Env,
}

impl Ports {
    fn new() -> Ports {
        let env = Env::new();
        for (name, config) in [
            ("web", serde_json::json!({"Cmd": ["/bin/sh", "-c", SERVE], "ExposedPorts": {"80/tcp": {}, "53/udp": {}}})),
            ("plain", serde_json::json!({"Cmd": ["/bin/true"]})),
        ] {
            let layout = env.path(name);
            oci::write_layout(&layout, "1", &[base_layer(Comp::Gzip)], config);
            expect(&env.import(&layout, &[]), 0);
        }
        for d in ["tmp", "home"] {
            std::fs::create_dir_all(env.path(d)).unwrap();
        }
        Ports { env }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.env.cmd(args);
        c.env("TMPDIR", self.env.path("tmp")).env("HOME", self.env.path("home"));
        c
    }

    fn out(&self, args: &[&str]) -> std::process::Output {
        output(self.cmd(args))
    }

    /// `burrow run -d ARGS...`: the ID.
    fn detach(&self, args: &[&str]) -> String {
        let mut all = vec!["run", "-d"];
        all.extend_from_slice(args);
        let id = expect(&self.out(&all), 0).trim().to_string();
        assert_eq!(id.len(), 12, "not an ID: {id:?}");
        id
    }

    /// `ps -a --format json`'s entry for `id`.
    fn ps_entry(&self, id: &str) -> serde_json::Value {
        let text = expect(&self.out(&["ps", "-a", "--format", "json"]), 0);
        let all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        all.into_iter().find(|c| c["id"] == id).unwrap_or_else(|| panic!("{id} not in ps: {text}"))
    }
}

impl Drop for Ports {
    fn drop(&mut self) {
        // Before the store's own cleanup: rmi refuses an image a container still uses.
        for id in stdout(&self.out(&["ps", "-aq"])).lines() {
            let _ = self.out(&["rm", "-f", id]);
        }
    }
}

/// A TCP port free on the host's loopback right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The host port that `ports` (ps's strings, `0.0.0.0:HOST:CONTAINER/PROTO`) gives `container`/`proto`.
fn host_port(ports: &serde_json::Value, container: u16, proto: &str) -> u16 {
    let list: Vec<&str> = ports.as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    let want = format!(":{container}/{proto}");
    let found = list.iter().find(|p| p.ends_with(&want)).unwrap_or_else(|| panic!("no {want} in {list:?}"));
    let (addr, _) = found.rsplit_once(':').unwrap();
    let (ip, port) = addr.rsplit_once(':').unwrap();
    assert_eq!(ip, "0.0.0.0", "-P publishes on every address: {found}");
    let port: u16 = port.parse().unwrap();
    assert_ne!(port, 0, "ps shows the port the kernel chose: {found}");
    port
}

/// Connects to 127.0.0.1:`port` until the payload answers a line (it may not listen yet: the forwarder then
/// closes the connection), for at most 30 s.
fn first_line(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut line = String::new();
                match BufReader::new(s).read_line(&mut line) {
                    Ok(n) if n > 0 => return line,
                    other => last = format!("{other:?}"),
                }
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("nothing from 127.0.0.1:{port} within 30 s (last: {last})");
}

#[test]
fn publish_all_puts_the_exposed_ports_on_free_host_ports_shown_by_ps() {
    setup!();
    let p = Ports::new();
    let id = p.detach(&["-P", "--expose", "8080", "localhost/web:1"]);
    let entry = p.ps_entry(&id);
    assert_eq!(entry["root"], "localhost/web:1", "ps shows the image, not the host root: {entry}");
    let ports = &entry["ports"];
    assert_eq!(ports.as_array().unwrap().len(), 3, "80/tcp, 53/udp and --expose 8080: {ports}");
    let web = host_port(ports, 80, "tcp");
    let udp = host_port(ports, 53, "udp");
    let extra = host_port(ports, 8080, "tcp");
    assert!(web != extra, "two TCP ports share host port {web}");
    // The port is held by burrow's forwarder for the container's life: nothing else may bind it.
    assert!(std::net::TcpListener::bind(("0.0.0.0", web)).is_err(), "host port {web} is not held");
    assert!(std::net::UdpSocket::bind(("0.0.0.0", udp)).is_err(), "host port {udp}/udp is not held");
    assert_eq!(first_line(web), "from-the-image\n");
    // The table: IMAGE/ROOT and the same ports.
    let table = expect(&p.out(&["ps", "-a"]), 0);
    let row = table.lines().find(|l| l.starts_with(&id)).unwrap_or_else(|| panic!("{id} not in {table}"));
    assert!(row.contains("localhost/web:1"), "{row}");
    assert!(row.contains(&format!("0.0.0.0:{web}:80/tcp")), "{row}");
    assert!(!row.contains(" host "), "{row}");
}

#[test]
fn explicit_ports_win_and_a_foreground_run_says_where_the_others_went() {
    setup!();
    let p = Ports::new();
    let fixed = free_port();
    let spec = format!("127.0.0.1:{fixed}:80");
    let id = p.detach(&["-p", &spec, "-P", "localhost/web:1"]);
    let entry = p.ps_entry(&id);
    let ports: Vec<&str> = entry["ports"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(ports.len(), 2, "80/tcp published once, by -p: {ports:?}");
    assert_eq!(ports[0], format!("{spec}/tcp"));
    assert!(ports[1].ends_with(":53/udp") && !ports[1].contains(":0:"), "{ports:?}");
    assert_eq!(first_line(fixed), "from-the-image\n");
    // A foreground run is in no ps: it prints the ports it chose, one line each, on stderr.
    let o = p.out(&["run", "-P", "--network", "slirp4netns", "localhost/web:1", "true"]);
    expect(&o, 0);
    let err = stderr(&o);
    let said: Vec<&str> = err.lines().filter(|l| l.starts_with("burrow: publishing 0.0.0.0:")).collect();
    assert_eq!(said.len(), 2, "{err}");
    assert!(
        said.iter().any(|l| l.ends_with(" -> 80/tcp")) && said.iter().any(|l| l.ends_with(" -> 53/udp")),
        "{said:?}"
    );
}

/// slirp4netns' own forwarding: burrow picks the free ports by binding them (then slirp4netns binds them);
/// published UDP needs host loopback open there, so only TCP is exposed (--expose on a --rootfs root).
#[test]
fn publish_all_works_with_slirp4netns_port_forwarding_and_without_an_image() {
    setup!();
    let p = Ports::new();
    let root = Rootfs::new();
    let r = root.path().to_str().unwrap();
    let args = ["-P", "--expose", "80/tcp", "--network", "slirp4netns", "--port-handler", "slirp4netns"];
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--rootfs", r, "--", "/bin/sh", "-c", SERVE]);
    let id = p.detach(&all);
    let entry = p.ps_entry(&id);
    assert_eq!(entry["root"], r);
    let port = host_port(&entry["ports"], 80, "tcp");
    assert_eq!(first_line(port), "from-the-image\n");
}

#[test]
fn publish_all_without_exposed_ports_is_a_no_op_and_bad_expose_values_fail() {
    setup!();
    let p = Ports::new();
    // No ExposedPorts: nothing to publish, so even --network none (which cannot publish) runs.
    let o = p.out(&["run", "-P", "--network", "none", "localhost/plain:1"]);
    assert_eq!(expect(&o, 0), "");
    assert!(!stderr(&o).contains("publishing"), "{}", stderr(&o));
    let id = p.detach(&["-P", "localhost/plain:1"]);
    assert_eq!(p.ps_entry(&id)["ports"], serde_json::json!([]));
    // With ports to publish, --network none is refused before anything runs.
    let o = p.out(&["run", "-P", "--network", "none", "localhost/web:1"]);
    expect(&o, 125);
    assert!(stderr(&o).contains("--publish-all need a network namespace"), "{}", stderr(&o));
    // slirp4netns' own forwarding drops published UDP replies unless host loopback is open: -P of an image
    // exposing 53/udp says so, before anything runs.
    let o = p.out(&["run", "-P", "--network", "slirp4netns", "--port-handler", "slirp4netns", "localhost/web:1"]);
    expect(&o, 125);
    assert!(stderr(&o).contains("53/udp") && stderr(&o).contains("--allow-host-loopback"), "{}", stderr(&o));
    for bad in ["80/sctp", "0", "http", "8000-8010", "80:80"] {
        let o = p.out(&["run", "-P", "--expose", bad, "localhost/web:1"]);
        expect(&o, 125);
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{bad}: {err}");
        assert!(err.contains(&format!("invalid --expose `{bad}`")) && err.contains("PORT[/tcp|/udp]"), "{bad}: {err}");
    }
}
