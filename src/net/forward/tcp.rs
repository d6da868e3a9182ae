//! Published TCP ports: accept on the host listener, connect a new socket inside the container's
//! network namespace, and relay both directions with splice(2) through a pipe, so that the bytes
//! never enter user space.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};

/// At most this many connections are relayed at once (two threads each); more wait in the
/// listener's backlog until one ends.
pub const MAX_CONNECTIONS: usize = 256;
/// Each direction's pipe: 256 KiB moves a full TCP window per splice at loopback speed while
/// staying well inside the per-user pipe memory limit (fs.pipe-user-pages-soft, 64 MiB) at
/// MAX_CONNECTIONS.
const PIPE_SIZE: i32 = 256 * 1024;
/// The relay threads run no Rust code deeper than a few frames: a small stack keeps 512 of them cheap.
const STACK_SIZE: usize = 64 * 1024;
/// A local connect is answered at once; this only bounds a wedged namespace.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Container → host directions still relaying, in all listeners: what [`drain`] waits for.
static DOWNSTREAM: Slots = Slots { used: Mutex::new(0), freed: Condvar::new() };

/// Counts live connections and lets the accept loop wait for a free slot.
struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    fn take(&self) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= MAX_CONNECTIONS {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
    }

    fn give_back(&self) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        *used -= 1;
        self.freed.notify_all();
    }
}

/// Once the container has ended: waits (at most `limit`) until every container → host direction has
/// passed on what the container sent before it died. Its sockets are closed, so each of these ends
/// as soon as its data is out.
pub fn drain(limit: Duration) {
    let used = DOWNSTREAM.used.lock().unwrap_or_else(|e| e.into_inner());
    let _ = DOWNSTREAM.freed.wait_timeout_while(used, limit, |n| *n > 0);
}

/// Accepts forever on `listener` (a host socket) and relays each connection to `target` (inside).
pub fn serve(listener: TcpListener, target: SocketAddr) {
    let slots = Arc::new(Slots { used: Mutex::new(0), freed: Condvar::new() });
    loop {
        slots.take();
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(_) => {
                slots.give_back();
                // EMFILE and the like: back off instead of spinning; the connection stays queued.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let s = Arc::clone(&slots);
        let spawned = std::thread::Builder::new().stack_size(STACK_SIZE).spawn(move || {
            connection(client, target);
            s.give_back();
        });
        if spawned.is_err() {
            slots.give_back();
        }
    }
}

/// One connection: connect inside, then relay. A refused connect closes the client's connection,
/// as a server that is not listening would.
fn connection(client: TcpStream, target: SocketAddr) {
    let Ok(server) = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let upstream = std::thread::Builder::new().stack_size(STACK_SIZE).spawn(move || pump(&client2, &server2));
    *DOWNSTREAM.used.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    pump(&server, &client);
    DOWNSTREAM.give_back();
    if let Ok(t) = upstream {
        let _ = t.join();
    }
}

/// Relays `from` → `to` until `from` ends. End of stream is passed on as a half-close, so a
/// client may shut its write side and still read the answer; an error closes both sockets, which
/// also ends the other direction.
fn pump(from: &TcpStream, to: &TcpStream) {
    match relay(from, to) {
        Ok(()) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        Err(_) => {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        }
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // Best effort: a user over the pipe memory limit gets the default 64 KiB, which still works.
    let _ = fcntl(&w, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
    Ok((r, w))
}

fn retry<T>(mut f: impl FnMut() -> nix::Result<T>) -> nix::Result<T> {
    loop {
        match f() {
            Err(nix::Error::EINTR) => continue,
            other => return other,
        }
    }
}

/// Socket → pipe → socket until end of stream (Ok) or an error.
pub fn relay(from: &TcpStream, to: &TcpStream) -> io::Result<()> {
    let (r, w) = pipe()?;
    // No SPLICE_F_MORE: like MSG_MORE it would hold back the last bytes of an interactive reply.
    let flags = SpliceFFlags::SPLICE_F_MOVE;
    loop {
        let n = retry(|| splice(from, None, &w, None, PIPE_SIZE as usize, flags))?;
        if n == 0 {
            return Ok(());
        }
        let mut left = n;
        while left > 0 {
            let m = retry(|| splice(&r, None, to, None, left, flags))?;
            if m == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            left -= m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The relay on the host's loopback (both ends in one namespace): the bytes arrive whole, the
    /// client's half-close reaches the server, and the answer sent after it comes back.
    #[test]
    fn relays_both_ways_with_half_close() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut c in server.incoming().flatten() {
                let mut got = Vec::new();
                c.read_to_end(&mut got).unwrap();
                let answer: Vec<u8> = got.iter().rev().copied().collect();
                c.write_all(&answer).unwrap();
            }
        });
        let published = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = published.local_addr().unwrap().port();
        std::thread::spawn(move || serve(published, target));
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = c.try_clone().unwrap();
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            w.write_all(&sent).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        writer.join().unwrap();
        assert_eq!(back.len(), data.len());
        assert!(back.iter().eq(data.iter().rev()));
    }

    #[test]
    fn a_refused_connect_closes_the_client() {
        let gone = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = gone.local_addr().unwrap();
        drop(gone);
        let published = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = published.local_addr().unwrap().port();
        std::thread::spawn(move || serve(published, target));
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 8];
        assert!(matches!(c.read(&mut buf), Ok(0) | Err(_)));
    }
}
