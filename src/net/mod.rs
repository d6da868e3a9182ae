//! User-mode networking: `--network none | host | slirp4netns | pasta | auto`.
//!
//! Two steps, split like the launch: [`preflight`] (P0, before any fork) picks the backend, checks
//! the flags and that published host ports are free (binding them for burrow's own forwarder), so
//! that every user error comes before anything is created; [`spawn`] (P0, once P1 has unshared its
//! user and network namespaces: pasta while newuidmap runs, slirp4netns after the maps) starts the
//! backend on P1's namespace, and [`Starting::wait`] returns when the network is configured
//! ([`attach`] is both in one). The returned [`Attached`] stops the backend when dropped. When
//! burrow's forwarder carries published ports, P1 starts it ([`Plan::start_forwarder`]).

pub mod dns;
pub mod forward;
mod helper;
mod netlink;
pub mod pasta;
pub mod publish;
pub mod slirp4netns;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use thiserror::Error;

pub use dns::ResolverPaths;
pub use forward::Forwarder;
pub use publish::{Exposed, HostSocket, PortSpec, Proto, PublishError};

/// Both backends run with the largest MTU the tap device allows: about 3x the throughput of 1500.
pub const MTU: u32 = 65520;
/// The backend's interface inside the container.
pub const TAP_NAME: &str = "tap0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Auto,
    None,
    Host,
    Slirp4netns,
    Pasta,
}

impl FromStr for Mode {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Mode::Auto),
            "none" => Ok(Mode::None),
            "host" => Ok(Mode::Host),
            "slirp4netns" => Ok(Mode::Slirp4netns),
            "pasta" => Ok(Mode::Pasta),
            _ => Err(NetError::UnknownMode(s.to_string())),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Auto => "auto",
            Mode::None => "none",
            Mode::Host => "host",
            Mode::Slirp4netns => "slirp4netns",
            Mode::Pasta => "pasta",
        })
    }
}

/// Who carries published ports (`--port-handler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortHandler {
    /// burrow's forwarder ([`forward`]), with either backend: kernel sockets and splice(2), no user-space
    /// network stack on the way; the container sees connections from its own address.
    #[default]
    Burrow,
    /// slirp4netns' `add_hostfwd` over its API socket: every byte through libslirp; the container
    /// sees connections from 10.0.2.2; published UDP needs --allow-host-loopback.
    Slirp4netns,
    /// pasta's own `-t`/`-u`: spliced when the client is on the host's loopback. Debian 12's pasta loses the
    /// reply of a published UDP flow and the tail of a TCP answer when the container closes the connection.
    Pasta,
}

impl FromStr for PortHandler {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "burrow" => Ok(PortHandler::Burrow),
            "slirp4netns" => Ok(PortHandler::Slirp4netns),
            "pasta" => Ok(PortHandler::Pasta),
            _ => Err(NetError::UnknownPortHandler(s.to_string())),
        }
    }
}

impl fmt::Display for PortHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortHandler::Burrow => "burrow",
            PortHandler::Slirp4netns => "slirp4netns",
            PortHandler::Pasta => "pasta",
        })
    }
}

/// What the user asked for (from the command line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub mode: Mode,
    /// `-p` specs, then those of `-P` (host port 0: chosen by the kernel in [`preflight`]).
    pub publish: Vec<PortSpec>,
    pub allow_host_loopback: bool,
    pub dns: Vec<IpAddr>,
    /// None: the default (burrow); Some when given on the command line.
    pub port_handler: Option<PortHandler>,
}

#[derive(Debug, Error)]
pub enum NetError {
    #[error("unknown network mode `{0}` (auto, none, host, slirp4netns or pasta)")]
    UnknownMode(String),
    #[error("unknown port handler `{0}` (burrow, slirp4netns or pasta)")]
    UnknownPortHandler(String),
    #[error("cannot start burrow's port forwarder: {what}: {source}")]
    Forwarder { what: &'static str, source: std::io::Error },
    #[error("--network {mode}: `{helper}` is not installed (in $PATH); install the package `{package}` or pick another --network")]
    NotInstalled { mode: Mode, helper: &'static str, package: &'static str },
    #[error(
        "--publish and --publish-all need a network namespace with a backend (--network slirp4netns or pasta), not --network {mode}"
    )]
    PublishNeedsBackend { mode: &'static str },
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("cannot start {helper}: {source}")]
    Spawn { helper: &'static str, source: std::io::Error },
    #[error("cannot create {path} for {helper}: {source}; check that the state directory is writable")]
    StateFile { helper: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{helper} (pid {pid}) exited before the network was ready ({status}){log}")]
    Died { helper: &'static str, pid: u32, status: String, log: String },
    #[error("{helper} did not configure the network within {secs} s and was killed{log}")]
    Timeout { helper: &'static str, secs: u64, log: String },
    #[error("slirp4netns API socket path {path} is longer than a unix socket allows (107 bytes); use a shorter state directory")]
    SocketPathTooLong { path: PathBuf },
    #[error("cannot publish {spec} through the slirp4netns API ({socket}): {desc}")]
    Hostfwd { spec: PortSpec, socket: PathBuf, desc: String },
    #[error("--publish {spec} with --port-handler slirp4netns needs --allow-host-loopback: libslirp drops a published UDP port's replies while host loopback is closed; use the default --port-handler burrow or allow host loopback")]
    SlirpUdpNeedsHostLoopback { spec: PortSpec },
    #[error("cannot set the queue length of {dev} in the container: {source}")]
    TxQueue { dev: &'static str, source: std::io::Error },
    #[error("internal error in the network setup: {0}")]
    Internal(&'static str),
}

#[derive(Debug, Clone)]
enum Backend {
    None,
    Host,
    Slirp4netns { bin: PathBuf, features: slirp4netns::Features },
    Pasta { bin: PathBuf },
}

/// The validated network setup, ready to attach.
#[derive(Debug, Clone)]
pub struct Plan {
    backend: Backend,
    publish: Vec<PortSpec>,
    allow_host_loopback: bool,
    dns: Vec<IpAddr>,
    notices: Vec<String>,
    resolver: ResolverPaths,
    port_handler: PortHandler,
    /// Host sockets bound in preflight for burrow's forwarder; taken by [`Plan::start_forwarder`]
    /// (P1) or closed by [`Plan::close_host_sockets`] (P0, after the fork).
    host_sockets: Arc<Mutex<Vec<(PortSpec, HostSocket)>>>,
}

/// pasta's tap device drops packets when its 1000-packet queue fills (pasta never sets it); this
/// length holds pasta's whole receive window even at MTU 1500.
pub const PASTA_TXQUEUELEN: u32 = 10_000;

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| rustix::fs::access(p, rustix::fs::Access::EXEC_OK).is_ok() && p.is_file())
}

/// `$XDG_CACHE_HOME/burrow` (default `~/.cache/burrow`), created on demand; None without a home.
fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let dir = base.join("burrow");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

fn slirp_backend() -> Option<Backend> {
    let bin = find_in_path(slirp4netns::NAME)?;
    let features = slirp4netns::detect(&bin, cache_dir().as_deref());
    Some(Backend::Slirp4netns { bin, features })
}

fn pasta_backend() -> Option<Backend> {
    find_in_path(pasta::NAME).map(|bin| Backend::Pasta { bin })
}

/// libslirp sends a UDP reply to the host-side peer it shows as 10.0.2.2, and
/// `--disable-host-loopback` drops exactly that (podman issue #4586): published UDP needs host
/// loopback open with slirp4netns' own forwarding (burrow's forwarder does not go through slirp).
fn slirp_udp_blocked(req: &Request) -> Option<PortSpec> {
    if req.allow_host_loopback || req.port_handler.unwrap_or_default() == PortHandler::Burrow {
        return None;
    }
    req.publish.iter().find(|p| p.proto == Proto::Udp).copied()
}

fn choose(req: &Request, notices: &mut Vec<String>) -> Result<Backend, NetError> {
    let mode = req.mode;
    let missing = |helper, package| NetError::NotInstalled { mode, helper, package };
    Ok(match mode {
        Mode::None => Backend::None,
        Mode::Host => Backend::Host,
        Mode::Slirp4netns => slirp_backend().ok_or(missing("slirp4netns", "slirp4netns"))?,
        Mode::Pasta => pasta_backend().ok_or(missing("pasta", "passt"))?,
        Mode::Auto => match slirp_backend().or_else(pasta_backend) {
            Some(b) => b,
            None => {
                notices.push(
                    "burrow: no network: neither slirp4netns nor pasta is installed (install the package `slirp4netns` or `passt`); running with --network none".to_string(),
                );
                Backend::None
            }
        },
    })
}

/// Before fork: picks the backend, validates, checks host ports are free. Returns notices to print.
pub fn preflight(req: &Request) -> Result<Plan, NetError> {
    let mut notices = Vec::new();
    let backend = choose(req, &mut notices)?;
    if let (Backend::Slirp4netns { .. }, Some(spec)) = (&backend, slirp_udp_blocked(req)) {
        return Err(NetError::SlirpUdpNeedsHostLoopback { spec });
    }
    let mut port_handler = req.port_handler.unwrap_or_default();
    let own = match backend {
        Backend::Slirp4netns { .. } => Some(PortHandler::Slirp4netns),
        Backend::Pasta { .. } => Some(PortHandler::Pasta),
        Backend::None | Backend::Host => None,
    };
    if port_handler != PortHandler::Burrow && Some(port_handler) != own {
        notices.push(format!(
            "burrow: --port-handler {port_handler} applies to --network {port_handler} only; using burrow's forwarder"
        ));
        port_handler = PortHandler::Burrow;
    }
    if !req.publish.is_empty() {
        match backend {
            Backend::None if req.mode == Mode::Auto => {
                return Err(NetError::NotInstalled {
                    mode: Mode::Auto,
                    helper: "slirp4netns or pasta",
                    package: "slirp4netns",
                })
            }
            Backend::None => return Err(NetError::PublishNeedsBackend { mode: "none" }),
            Backend::Host => return Err(NetError::PublishNeedsBackend { mode: "host" }),
            Backend::Slirp4netns { .. } | Backend::Pasta { .. } => {}
        }
    }
    if req.allow_host_loopback && matches!(backend, Backend::None) {
        notices.push("burrow: --allow-host-loopback has no effect with --network none".to_string());
    }
    let mut plan = Plan {
        backend,
        publish: req.publish.clone(),
        allow_host_loopback: req.allow_host_loopback,
        dns: req.dns.clone(),
        notices,
        resolver: ResolverPaths::default(),
        port_handler,
        host_sockets: Arc::default(),
    };
    // From here on `publish` holds the host ports really used (those the kernel chose for `-P`).
    if plan.forwards_ports() {
        let bound = publish::bind_host_ports(&plan.publish)?;
        plan.publish = bound.iter().map(|(spec, _)| *spec).collect();
        *plan.sockets() = bound;
    } else {
        plan.publish = publish::check_host_ports(&plan.publish)?;
    }
    Ok(plan)
}

impl Plan {
    /// Whether P1 must unshare a network namespace (all modes but `host`).
    pub fn unshare_netns(&self) -> bool {
        !matches!(self.backend, Backend::Host)
    }

    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// The published ports with their real host ports (a `-P` port as the kernel chose it).
    pub fn published(&self) -> &[PortSpec] {
        &self.publish
    }

    pub fn backend_name(&self) -> &str {
        match self.backend {
            Backend::None => "none",
            Backend::Host => "host",
            Backend::Slirp4netns { .. } => slirp4netns::NAME,
            Backend::Pasta { .. } => pasta::NAME,
        }
    }

    /// Whether [`spawn`] starts a helper, which needs a state directory for its sockets and which the
    /// container's init waits for (`Msg::NetReady`) before it configures the tap device.
    pub fn needs_state_dir(&self) -> bool {
        self.has_tap()
    }

    /// Whether the backend may be started before P1's ID maps are written (so that its start-up overlaps
    /// newuidmap's). pasta can; slirp4netns' sandbox cannot (it calls setegid(0)).
    pub fn starts_before_maps(&self) -> bool {
        matches!(self.backend, Backend::Pasta { .. })
    }

    fn has_tap(&self) -> bool {
        matches!(self.backend, Backend::Slirp4netns { .. } | Backend::Pasta { .. })
    }

    /// Whether burrow's forwarder carries the published ports (a backend, `--port-handler burrow`, at least
    /// one `-p`).
    pub fn forwards_ports(&self) -> bool {
        self.has_tap() && self.port_handler == PortHandler::Burrow && !self.publish.is_empty()
    }

    fn sockets(&self) -> std::sync::MutexGuard<'_, Vec<(PortSpec, HostSocket)>> {
        self.host_sockets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// P0, right after forking P1: closes P0's copies of the host sockets (P1 holds its own).
    pub fn close_host_sockets(&self) {
        self.sockets().clear();
    }

    /// P1, in the container's network namespace after `Go` (the backend may still be configuring the tap
    /// device), single-threaded, before it forks anything that must not hold the host sockets:
    /// forks burrow's port forwarder (when it has ports to forward) and closes P1's copies of the
    /// host sockets. Dropping the returned [`Forwarder`] kills it.
    pub fn start_forwarder(&self) -> Result<Option<Forwarder>, NetError> {
        let sockets = std::mem::take(&mut *self.sockets());
        if sockets.is_empty() {
            return Ok(None);
        }
        forward::spawn(sockets).map(Some)
    }

    /// Reads the host's resolver files from other paths (tests).
    pub fn with_resolver_paths(mut self, paths: ResolverPaths) -> Plan {
        self.resolver = paths;
        self
    }

    /// Contents for the container's /etc/resolv.conf.
    pub fn resolv_conf(&self) -> String {
        let source = match self.backend {
            Backend::None => dns::DnsSource::Nothing,
            Backend::Host => dns::DnsSource::HostFile,
            _ => dns::DnsSource::Forwarder,
        };
        dns::resolv_conf(source, &self.dns, &self.resolver)
    }

    /// Contents for the container's /etc/hosts.
    pub fn hosts(&self, hostname: &str) -> String {
        let own = self.has_tap().then_some(dns::CONTAINER_ADDR);
        let host = (self.has_tap() && self.allow_host_loopback).then_some(dns::HOST_GATEWAY);
        dns::hosts(hostname, own, host)
    }

    /// Inside the container's network namespace, after [`attach`] returned (e.g. in init, right
    /// after bringing `lo` up): the settings the backend cannot make itself. For pasta, the tap
    /// device's queue length. Needs CAP_NET_ADMIN in the namespace's owning user namespace.
    pub fn configure_inside(&self) -> Result<(), NetError> {
        if let Backend::Pasta { .. } = self.backend {
            netlink::set_txqueuelen(TAP_NAME, PASTA_TXQUEUELEN)
                .map_err(|source| NetError::TxQueue { dev: TAP_NAME, source })?;
        }
        Ok(())
    }
}

/// A running backend. Dropping it stops the backend (kill, wait) and removes its sockets.
#[derive(Debug)]
pub struct Attached {
    helper: Option<helper::Helper>,
}

impl Attached {
    /// The backend process id, if a backend runs.
    pub fn backend_pid(&self) -> Option<u32> {
        self.helper.as_ref().map(|h| h.pid())
    }
}

/// A backend started and configuring the namespace; [`Starting::wait`] returns when it is done.
#[derive(Debug)]
pub struct Starting {
    pending: Option<helper::Pending>,
    /// slirp4netns' port forwards, added over its API socket once it is ready.
    hostfwd: Option<(PathBuf, Vec<PortSpec>)>,
}

impl Starting {
    /// Waits for the backend's ready signal (or its death, or the timeout) and finishes its setup.
    pub fn wait(self) -> Result<Attached, NetError> {
        let helper = self.pending.map(helper::Pending::wait).transpose()?;
        if let Some((dir, specs)) = &self.hostfwd {
            slirp4netns::publish(dir, specs)?;
        }
        Ok(Attached { helper })
    }
}

/// P0, once P1 has unshared its user and network namespaces: starts the backend on `pid`'s namespaces and
/// returns without waiting for it. `state_dir` must exist and be private to the user.
///
/// pasta is tied to the calling thread by PR_SET_PDEATHSIG: call this from the thread that lives
/// as long as burrow (the main thread).
pub fn spawn(plan: &Plan, pid: i32, state_dir: &Path) -> Result<Starting, NetError> {
    let mut hostfwd = None;
    let pending = match &plan.backend {
        Backend::None | Backend::Host => None,
        Backend::Slirp4netns { bin, features } => {
            let start = slirp4netns::Start { bin, features: *features, allow_host_loopback: plan.allow_host_loopback };
            // Unless burrow's forwarder (started by P1) carries them, add_hostfwd does.
            if !plan.forwards_ports() {
                hostfwd = Some((state_dir.to_path_buf(), plan.publish.clone()));
            }
            Some(slirp4netns::spawn(&start, pid, state_dir)?)
        }
        Backend::Pasta { bin } => Some(pasta::spawn(
            &pasta::Start {
                bin,
                allow_host_loopback: plan.allow_host_loopback,
                publish: if plan.forwards_ports() { &[] } else { &plan.publish },
            },
            pid,
            state_dir,
        )?),
    };
    Ok(Starting { pending, hostfwd })
}

/// [`spawn`] and [`Starting::wait`] in one: returns when the network is configured.
pub fn attach(plan: &Plan, pid: i32, state_dir: &Path) -> Result<Attached, NetError> {
    spawn(plan, pid, state_dir)?.wait()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        for m in ["auto", "none", "host", "slirp4netns", "pasta"] {
            assert_eq!(m.parse::<Mode>().unwrap().to_string(), m);
        }
        assert!("slirp".parse::<Mode>().is_err());
    }

    #[test]
    fn publish_needs_a_backend() {
        for mode in [Mode::None, Mode::Host] {
            let req = Request { mode, publish: vec!["127.0.0.1:1:1".parse().unwrap()], ..Request::default() };
            assert!(matches!(preflight(&req), Err(NetError::PublishNeedsBackend { .. })));
        }
    }

    #[test]
    fn host_mode_keeps_the_host_netns() {
        let plan = preflight(&Request { mode: Mode::Host, ..Request::default() }).unwrap();
        assert!(!plan.unshare_netns());
        let plan = preflight(&Request { mode: Mode::None, ..Request::default() }).unwrap();
        assert!(plan.unshare_netns());
        assert!(!plan.hosts("c").contains(dns::HOST_NAME));
    }
}
