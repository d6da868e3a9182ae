//! Published UDP ports: one flow per client address, each with a socket connected to the
//! container's port from inside its network namespace; replies go back to the client with
//! sendto(2) on the host socket. A flow idle for [`IDLE`] is dropped.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a flow lives without a datagram in either direction (conntrack's UDP default is 30 s
/// unreplied, 120 s for a stream; podman's rootlessport uses 60 s).
pub const IDLE: Duration = Duration::from_secs(60);
/// New clients beyond this many live flows are dropped (UDP may drop) until one expires.
pub const MAX_FLOWS: usize = 1024;
const STACK_SIZE: usize = 64 * 1024;
/// The largest datagram: a UDP payload over IPv4 is at most 65507 bytes.
const BUF: usize = 65536;

struct Flow {
    inside: UdpSocket,
    /// Milliseconds since `Flows::epoch` of the last datagram, either way.
    last: AtomicU64,
}

struct Flows {
    host: UdpSocket,
    target: SocketAddr,
    epoch: Instant,
    map: Mutex<HashMap<SocketAddr, Arc<Flow>>>,
}

impl Flows {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The client's flow, created (socket + reply thread) on its first datagram.
    fn flow(self: &Arc<Self>, client: SocketAddr) -> Option<Arc<Flow>> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = map.get(&client) {
            // Touched under the lock: the reply thread decides expiry under it too.
            f.last.store(self.now(), Ordering::Relaxed);
            return Some(Arc::clone(f));
        }
        if map.len() >= MAX_FLOWS {
            return None;
        }
        let inside = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
        inside.connect(self.target).ok()?;
        inside.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let flow = Arc::new(Flow { inside, last: AtomicU64::new(self.now()) });
        let (me, f) = (Arc::clone(self), Arc::clone(&flow));
        std::thread::Builder::new().stack_size(STACK_SIZE).spawn(move || me.replies(client, &f)).ok()?;
        map.insert(client, Arc::clone(&flow));
        Some(flow)
    }

    /// A flow's reply thread: container → client, until the flow is idle for IDLE.
    fn replies(&self, client: SocketAddr, flow: &Arc<Flow>) {
        let mut buf = vec![0u8; BUF];
        loop {
            match flow.inside.recv(&mut buf) {
                Ok(n) => {
                    flow.last.store(self.now(), Ordering::Relaxed);
                    let _ = self.host.send_to(&buf[..n], client);
                }
                // An ICMP port unreachable from a container port nobody listens on yet.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
                    let idle = self.now().saturating_sub(flow.last.load(Ordering::Relaxed));
                    if u128::from(idle) >= IDLE.as_millis() {
                        map.remove(&client);
                        return;
                    }
                }
                Err(_) => {
                    self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(&client);
                    return;
                }
            }
        }
    }
}

/// Receives forever on `host` (a host socket) and forwards each datagram to `target` (inside).
pub fn serve(host: UdpSocket, target: SocketAddr) {
    let flows = Arc::new(Flows { host, target, epoch: Instant::now(), map: Mutex::new(HashMap::new()) });
    let mut buf = vec![0u8; BUF];
    loop {
        let (n, client) = match flows.host.recv_from(&mut buf) {
            Ok(got) => got,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if let Some(flow) = flows.flow(client) {
            let _ = flow.inside.send(&buf[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two clients, each answered at its own address from the published socket's address.
    #[test]
    fn each_client_gets_its_own_replies() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 100];
            while let Ok((n, from)) = server.recv_from(&mut buf) {
                let mut answer = b"re:".to_vec();
                answer.extend_from_slice(&buf[..n]);
                server.send_to(&answer, from).unwrap();
            }
        });
        let published = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = published.local_addr().unwrap();
        std::thread::spawn(move || serve(published, target));
        for i in 0..2 {
            let c = UdpSocket::bind("127.0.0.1:0").unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let msg = format!("ping{i}");
            c.send_to(msg.as_bytes(), addr).unwrap();
            let mut buf = [0u8; 100];
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], format!("re:{msg}").as_bytes());
            assert_eq!(from, addr);
        }
    }
}
