//! pasta (package `passt`): run in the foreground (`-f`) as burrow's child, so no daemon is left
//! behind. pasta has no ready fd: its pid file (`-P`), written once the namespace is configured,
//! is a FIFO that burrow reads. It has no exit fd either: PR_SET_PDEATHSIG ties it to burrow.
//!
//! The addresses copy slirp4netns' layout (10.0.2.100/24, gateway 10.0.2.2, DNS forwarder
//! 10.0.2.3) so /etc/hosts and resolv.conf are the same for both backends.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Command;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::helper::{self, Helper, Pending};
use super::publish::{PortSpec, Proto};
use super::{dns, NetError, MTU, TAP_NAME};

pub const NAME: &str = "pasta";

pub struct Start<'a> {
    pub bin: &'a Path,
    pub allow_host_loopback: bool,
    pub publish: &'a [PortSpec],
}

/// pasta's `-t`/`-u` spec for one published port: `[ADDR/]HOSTPORT:CONTAINERPORT`.
fn forward_spec(p: &PortSpec) -> String {
    if p.host_ip_is_any() {
        format!("{}:{}", p.host_port, p.container_port)
    } else {
        format!("{}/{}:{}", p.host_ip, p.host_port, p.container_port)
    }
}

/// The full argument list, without the target pid.
pub fn args(s: &Start<'_>, pidfile: &Path) -> Vec<String> {
    let mut a: Vec<String> = ["--foreground", "--quiet", "--config-net", "--ipv4-only", "--ns-ifname", TAP_NAME]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend([
        format!("--mtu={MTU}"),
        format!("--address={}", dns::CONTAINER_ADDR),
        "--netmask=24".to_string(),
        format!("--gateway={}", dns::HOST_GATEWAY),
        format!("--dns-forward={}", dns::FORWARDER),
    ]);
    for proto in [Proto::Tcp, Proto::Udp] {
        let flag = if proto == Proto::Tcp { "-t" } else { "-u" };
        let specs: Vec<String> = s.publish.iter().filter(|p| p.proto == proto).map(forward_spec).collect();
        if specs.is_empty() {
            a.extend([flag.to_string(), "none".to_string()]);
        }
        for spec in specs {
            a.extend([flag.to_string(), spec]);
        }
    }
    if s.allow_host_loopback {
        // The gateway maps to the host's loopback (any port, through the tap device), and the
        // container's own 127.0.0.1:PORT reaches host loopback listeners through pasta's splice
        // path (-T/-U auto: ports bound on the host, rescanned every second), the fast path.
        a.extend(["-T", "auto", "-U", "auto"].map(String::from));
    } else {
        // Closed: no gateway mapping, and no namespace-to-host loopback forwarding (whose
        // default, auto, would expose every port the host listens on).
        a.extend(["--no-map-gw", "-T", "none", "-U", "none"].map(String::from));
    }
    a.push("--pid".to_string());
    a.push(pidfile.display().to_string());
    a
}

/// Creates the pid-file FIFO and opens our read end first (non-blocking), so that pasta's own
/// open for writing does not block and nothing else can take the FIFO.
fn ready_fifo(path: &Path) -> Result<OwnedFd, NetError> {
    let io = |e: nix::errno::Errno| NetError::StateFile { helper: NAME, path: path.to_path_buf(), source: e.into() };
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR).map_err(io)?;
    nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, Mode::empty()).map_err(io)
}

/// Starts pasta on `pid`'s namespaces without waiting for it. pasta may join the user namespace before its ID
/// maps are written (it needs no ID of its own there), so P0 starts it while newuidmap runs.
pub fn spawn(s: &Start<'_>, pid: i32, state_dir: &Path) -> Result<Pending, NetError> {
    let fifo = state_dir.join("pasta.pid");
    let log = state_dir.join("pasta.log");
    let ready = ready_fifo(&fifo)?;
    let (out, err) = helper::log_file(NAME, &log)?;
    let mut cmd = Command::new(s.bin);
    cmd.args(args(s, &fifo)).arg(pid.to_string()).stdin(std::process::Stdio::null()).stdout(out).stderr(err);
    let child = crate::sys::net::spawn_with_fds(&mut cmd, &[], true)
        .map_err(|source| NetError::Spawn { helper: NAME, source })?;
    let helper = Helper { name: NAME, child, keep: Vec::new(), files: vec![fifo, log.clone()] };
    Ok(Pending { helper, ready, log })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_close_host_loopback_by_default() {
        let publish: Vec<PortSpec> = vec!["127.0.0.1:8080:80".parse().unwrap(), "53:53/udp".parse().unwrap()];
        let s = Start { bin: Path::new("pasta"), allow_host_loopback: false, publish: &publish };
        let a = args(&s, Path::new("/s/pasta.pid")).join(" ");
        assert!(a.contains("-t 127.0.0.1/8080:80"), "{a}");
        assert!(a.contains("-u 53:53"), "{a}");
        assert!(a.contains("--no-map-gw -T none -U none"), "{a}");
        assert!(a.contains("--mtu=65520"), "{a}");
        let s = Start { bin: Path::new("pasta"), allow_host_loopback: true, publish: &[] };
        let a = args(&s, Path::new("/s/pasta.pid")).join(" ");
        assert!(a.contains("-t none") && a.contains("-u none") && a.contains("-T auto"), "{a}");
        assert!(!a.contains("--no-map-gw"), "{a}");
    }
}
