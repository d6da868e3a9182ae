//! `-p/--publish [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]`: parsing, and binding the host ports
//! (or checking that they are free, for backends that bind them themselves), done before anything
//! is created so that a busy port fails fast and cleanly.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::str::FromStr;

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One published port. `host_ip` defaults to 0.0.0.0 (all IPv4 addresses), as in podman.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortSpec {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PublishError {
    #[error("invalid --publish `{spec}`: {why} (expected [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp], e.g. 127.0.0.1:8080:80/tcp)")]
    Malformed { spec: String, why: String },
    #[error("cannot publish {spec}: host port {addr} ({proto}) is already in use; pick another host port or stop what listens there")]
    Busy { spec: PortSpec, addr: SocketAddr, proto: &'static str },
    #[error("cannot publish {spec}: binding {addr} ({proto}) on the host failed: {errno}")]
    Bind { spec: PortSpec, addr: SocketAddr, proto: &'static str, errno: String },
    #[error("--publish {spec} is given twice (same host address, port and protocol)")]
    Duplicate { spec: PortSpec },
    #[error("invalid --expose `{spec}`: {why} (expected PORT[/tcp|/udp], e.g. 8080/tcp)")]
    BadExpose { spec: String, why: String },
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            IpAddr::V4(ip) => write!(f, "{ip}:")?,
            IpAddr::V6(ip) => write!(f, "[{ip}]:")?,
        }
        write!(f, "{}:{}/{}", self.host_port, self.container_port, self.proto.as_str())
    }
}

impl PortSpec {
    pub fn host_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host_ip, self.host_port)
    }

    /// True when the host side binds every address (no HOSTIP given, or 0.0.0.0).
    pub fn host_ip_is_any(&self) -> bool {
        self.host_ip.is_unspecified()
    }
}

fn malformed(spec: &str, why: impl Into<String>) -> PublishError {
    PublishError::Malformed { spec: spec.to_string(), why: why.into() }
}

fn parse_port(spec: &str, what: &str, s: &str) -> Result<u16, PublishError> {
    if s.contains('-') {
        return Err(malformed(spec, format!("{what} `{s}`: port ranges are not supported")));
    }
    match s.parse::<u16>() {
        Ok(0) => Err(malformed(spec, format!("{what} must be 1-65535, not 0"))),
        Ok(p) => Ok(p),
        Err(_) => Err(malformed(spec, format!("{what} `{s}` is not a port number 1-65535"))),
    }
}

/// Splits `[HOSTIP:]HOSTPORT:CONTAINERPORT` into (ip, host port, container port) strings.
fn split_addr(spec: &str, body: &str) -> Result<(Option<String>, String, String), PublishError> {
    if let Some(rest) = body.strip_prefix('[') {
        let (ip, ports) =
            rest.split_once("]:").ok_or_else(|| malformed(spec, "missing `]:` after a bracketed IPv6 address"))?;
        let (h, c) = ports.split_once(':').ok_or_else(|| malformed(spec, "missing CONTAINERPORT"))?;
        return Ok((Some(ip.to_string()), h.to_string(), c.to_string()));
    }
    let parts: Vec<&str> = body.split(':').collect();
    match parts.as_slice() {
        [h, c] => Ok((None, h.to_string(), c.to_string())),
        [ip, h, c] => Ok((Some(ip.to_string()), h.to_string(), c.to_string())),
        [_] => Err(malformed(spec, "both HOSTPORT and CONTAINERPORT are required")),
        _ => Err(malformed(spec, "too many `:` (write IPv6 addresses as [ADDR])")),
    }
}

impl FromStr for PortSpec {
    type Err = PublishError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (body, proto) = match spec.rsplit_once('/') {
            Some((b, "tcp")) => (b, Proto::Tcp),
            Some((b, "udp")) => (b, Proto::Udp),
            Some((_, p)) => return Err(malformed(spec, format!("unknown protocol `{p}` (tcp or udp)"))),
            None => (spec, Proto::Tcp),
        };
        let (ip, host, container) = split_addr(spec, body)?;
        let host_ip = match ip.as_deref() {
            None | Some("") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(s) => s.parse::<IpAddr>().map_err(|_| malformed(spec, format!("`{s}` is not an IP address")))?,
        };
        if host_ip.is_ipv6() {
            // Both backends run IPv4-only here (slirp4netns without --enable-ipv6, pasta -4).
            return Err(malformed(spec, "IPv6 host addresses are not supported yet"));
        }
        Ok(PortSpec {
            host_ip,
            host_port: parse_port(spec, "HOSTPORT", &host)?,
            container_port: parse_port(spec, "CONTAINERPORT", &container)?,
            proto,
        })
    }
}

/// A container port that `-P/--publish-all` publishes: one the image exposes (`ExposedPorts`) or one
/// named by `--expose PORT[/tcp|/udp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Exposed {
    pub port: u16,
    pub proto: Proto,
}

impl fmt::Display for Exposed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.proto.as_str())
    }
}

impl FromStr for Exposed {
    type Err = PublishError;

    /// `PORT[/tcp|/udp]`, as `--expose` and an image's `ExposedPorts` keys write it (tcp by default).
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |why: String| PublishError::BadExpose { spec: spec.to_string(), why };
        let (port, proto) = match spec.rsplit_once('/') {
            Some((p, "tcp")) => (p, Proto::Tcp),
            Some((p, "udp")) => (p, Proto::Udp),
            Some((_, p)) => return Err(bad(format!("unknown protocol `{p}` (tcp or udp)"))),
            None => (spec, Proto::Tcp),
        };
        if port.contains('-') {
            return Err(bad(format!("`{port}`: port ranges are not supported")));
        }
        match port.parse::<u16>() {
            Ok(0) => Err(bad("the port must be 1-65535, not 0".into())),
            Ok(port) => Ok(Exposed { port, proto }),
            Err(_) => Err(bad(format!("`{port}` is not a port number 1-65535"))),
        }
    }
}

/// `-P/--publish-all`: a spec on a free host port (0: the kernel picks it when it is bound) of every address
/// for each of `exposed` that no `explicit` `-p` already publishes (same container port and protocol, as
/// podman), each once.
pub fn publish_all(explicit: &[PortSpec], exposed: &[Exposed]) -> Vec<PortSpec> {
    let mut out: Vec<PortSpec> = Vec::new();
    for e in exposed {
        let taken = |p: &PortSpec| p.container_port == e.port && p.proto == e.proto;
        if explicit.iter().any(taken) || out.iter().any(taken) {
            continue;
        }
        out.push(PortSpec {
            host_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            host_port: 0,
            container_port: e.port,
            proto: e.proto,
        });
    }
    out
}

/// A host socket bound for one published port: a listener for TCP, a bound socket for UDP.
#[derive(Debug)]
pub enum HostSocket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Checks that no spec is repeated and that every host port can be bound right now; returns the specs with
/// the host port the kernel chose for each host port 0 (`-P`). The sockets are closed again at once: for the
/// backends that bind the ports themselves a few ms later (pasta, slirp4netns' `add_hostfwd`). A chosen port
/// could be taken by another program in between, as with podman's rootless port handlers; burrow's own
/// forwarder ([`bind_host_ports`]) has no such window.
pub fn check_host_ports(specs: &[PortSpec]) -> Result<Vec<PortSpec>, PublishError> {
    Ok(bind_host_ports(specs)?.into_iter().map(|(spec, _)| spec).collect())
}

/// Checks that no spec is repeated and binds every host port, for burrow's own forwarder: the
/// bind is the check, so there is no window in which another program can take the port. A host port 0 is
/// bound to a port the kernel chooses, which the returned spec carries. All the sockets stay bound until
/// every spec is bound, so a chosen port never clashes with another spec's.
pub fn bind_host_ports(specs: &[PortSpec]) -> Result<Vec<(PortSpec, HostSocket)>, PublishError> {
    let mut bound = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let clash = spec.host_port != 0
            && specs[..i].iter().any(|o| {
                o.proto == spec.proto
                    && o.host_port == spec.host_port
                    && (o.host_ip == spec.host_ip || o.host_ip_is_any() || spec.host_ip_is_any())
            });
        if clash {
            return Err(PublishError::Duplicate { spec: *spec });
        }
        let socket = bind_one(spec)?;
        let local = match &socket {
            HostSocket::Tcp(l) => l.local_addr(),
            HostSocket::Udp(u) => u.local_addr(),
        };
        let mut chosen = *spec;
        chosen.host_port = local.map(|a| a.port()).map_err(|e| PublishError::Bind {
            spec: *spec,
            addr: spec.host_addr(),
            proto: spec.proto.as_str(),
            errno: e.to_string(),
        })?;
        bound.push((chosen, socket));
    }
    Ok(bound)
}

fn bind_one(spec: &PortSpec) -> Result<HostSocket, PublishError> {
    let addr = spec.host_addr();
    // std sets SO_REUSEADDR on TCP listeners, so a port in TIME_WAIT counts as free (the backends
    // bind with SO_REUSEADDR too); only a live listener makes this fail. std's sockets are
    // close-on-exec: the payload never inherits them.
    let res = match spec.proto {
        Proto::Tcp => TcpListener::bind(addr).map(HostSocket::Tcp),
        Proto::Udp => UdpSocket::bind(addr).map(HostSocket::Udp),
    };
    res.map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => PublishError::Busy { spec: *spec, addr, proto: spec.proto.as_str() },
        _ => PublishError::Bind { spec: *spec, addr, proto: spec.proto.as_str(), errno: e.to_string() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<PortSpec, PublishError> {
        s.parse()
    }

    #[test]
    fn parses_the_documented_forms() {
        let a = p("8080:80").unwrap();
        assert_eq!(a.host_ip, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!((a.host_port, a.container_port, a.proto), (8080, 80, Proto::Tcp));
        let b = p("127.0.0.1:5353:53/udp").unwrap();
        assert_eq!(b.host_ip.to_string(), "127.0.0.1");
        assert_eq!((b.host_port, b.container_port, b.proto), (5353, 53, Proto::Udp));
        assert_eq!(b.to_string(), "127.0.0.1:5353:53/udp");
        assert_eq!(p("1:2/tcp").unwrap().proto, Proto::Tcp);
    }

    #[test]
    fn rejects_malformed_specs() {
        for bad in [
            "",
            "80",
            "a:80",
            "80:b",
            "0:80",
            "80:0",
            "70000:80",
            "80:80/sctp",
            "1.2.3:80:80",
            "1-5:1-5",
            "1:2:3:4",
            "[::1]:80:80",
            "[::1:80:80",
        ] {
            let e = p(bad).unwrap_err();
            assert!(matches!(e, PublishError::Malformed { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("expected [HOSTIP:]HOSTPORT"), "{e}");
        }
    }

    #[test]
    fn duplicate_host_ports_are_rejected() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let specs = [p(&format!("127.0.0.1:{port}:80")).unwrap(), p(&format!("{port}:81")).unwrap()];
        let e = check_host_ports(&specs).unwrap_err();
        assert!(matches!(e, PublishError::Duplicate { .. }), "{e}");
    }

    #[test]
    fn a_listening_port_is_busy() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let spec = p(&format!("127.0.0.1:{port}:80")).unwrap();
        let e = check_host_ports(&[spec]).unwrap_err();
        assert!(matches!(e, PublishError::Busy { .. }), "{e}");
        drop(l);
        assert_eq!(check_host_ports(&[spec]).unwrap(), vec![spec]);
    }

    fn x(s: &str) -> Result<Exposed, PublishError> {
        s.parse()
    }

    #[test]
    fn exposed_ports_parse_as_images_and_expose_write_them() {
        assert_eq!(x("80").unwrap(), Exposed { port: 80, proto: Proto::Tcp });
        assert_eq!(x("80/tcp").unwrap(), Exposed { port: 80, proto: Proto::Tcp });
        assert_eq!(x("53/udp").unwrap().to_string(), "53/udp");
        for bad in ["", "0", "x", "80/sctp", "70000", "8000-8010/tcp", "80:80", "/tcp"] {
            let e = x(bad).unwrap_err();
            assert!(matches!(e, PublishError::BadExpose { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("expected PORT[/tcp|/udp]"), "{e}");
        }
    }

    #[test]
    fn publish_all_skips_ports_published_explicitly_and_repeats() {
        let explicit = [p("8080:80").unwrap()];
        let exposed = [x("80/tcp").unwrap(), x("80/udp").unwrap(), x("443").unwrap(), x("443/tcp").unwrap()];
        let all = publish_all(&explicit, &exposed);
        let got: Vec<(u16, u16, Proto)> = all.iter().map(|s| (s.host_port, s.container_port, s.proto)).collect();
        assert_eq!(got, vec![(0, 80, Proto::Udp), (0, 443, Proto::Tcp)]);
        assert!(all.iter().all(|s| s.host_ip_is_any()));
        assert!(publish_all(&explicit, &[]).is_empty());
    }

    #[test]
    fn host_port_zero_gets_a_distinct_free_port_from_the_kernel() {
        let specs = publish_all(&[], &[x("80").unwrap(), x("81").unwrap(), x("80/udp").unwrap()]);
        let specs: Vec<PortSpec> =
            specs.into_iter().map(|s| PortSpec { host_ip: "127.0.0.1".parse().unwrap(), ..s }).collect();
        let bound = bind_host_ports(&specs).unwrap();
        assert_eq!(bound.len(), 3);
        assert!(bound.iter().all(|(s, _)| s.host_port != 0), "{bound:?}");
        assert_ne!(bound[0].0.host_port, bound[1].0.host_port);
        // Held: binding the chosen TCP port again fails until the sockets are closed.
        let tcp = bound[0].0;
        assert!(TcpListener::bind(tcp.host_addr()).is_err());
        drop(bound);
        assert!(check_host_ports(&specs).unwrap().iter().all(|s| s.host_port != 0));
    }
}
