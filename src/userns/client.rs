//! A run's side of the keeper's socket: find the keeper without trusting a pid, check what it holds, and take
//! a nested namespace from it (or tell it to stop).
//!
//! The socket lives in the caller's private runtime directory. The peer's credentials (`SO_PEERCRED`, filled in
//! by the kernel at connect time) give its uid, which must be ours, and its pid, through which its namespace's
//! maps and identity are read; the namespace handed over must be a user namespace owned by us whose parent is
//! exactly that namespace (`NS_GET_PARENT`), so a recycled pid cannot pass for the keeper.

use super::proto::{self, Reply, Request, SOCKET};
use crate::idmap::MapLine;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// How long a keeper may take to answer (it serves one client at a time; creating a namespace takes a
/// fraction of a millisecond).
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no keeper is running")]
    NotRunning,
    #[error("keeper socket {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("keeper socket {path}: {why}")]
    Bad { path: String, why: String },
}

impl ClientError {
    /// The keeper closed the connection without answering: it exited (idle, stopped, killed) meanwhile.
    pub fn keeper_gone(&self) -> bool {
        use std::io::ErrorKind::{ConnectionReset, UnexpectedEof};
        matches!(self, ClientError::NotRunning)
            || matches!(self, ClientError::Io { source, .. } if matches!(source.kind(), UnexpectedEof | ConnectionReset))
    }
}

/// What [`Conn::namespace`] hands over: the user namespace, the others it owns, the keeper's timings (µs).
pub type Namespaces = (OwnedFd, Vec<OwnedFd>, (u64, u64));

/// A connection to a live keeper, with what its namespace maps (host IDs, as this process sees them).
pub struct Conn {
    sock: OwnedFd,
    path: String,
    pub pid: i32,
    ns: (u64, u64),
    pub uid_map: Vec<MapLine>,
    pub gid_map: Vec<MapLine>,
    /// The keeper runs the same burrow binary (file) as this process.
    pub same_binary: bool,
}

pub fn connect(dir: &Path) -> Result<Conn, ClientError> {
    use nix::sys::socket::{connect, getsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
    let path = dir.join(SOCKET);
    let name = path.display().to_string();
    let io = |source: std::io::Error| ClientError::Io { path: name.clone(), source };
    let bad = |why: String| ClientError::Bad { path: name.clone(), why };
    let sock =
        socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).map_err(|e| io(e.into()))?;
    let addr = UnixAddr::new(&path).map_err(|e| io(e.into()))?;
    match connect(sock.as_raw_fd(), &addr) {
        Ok(()) => {}
        Err(nix::Error::ENOENT | nix::Error::ECONNREFUSED) => return Err(ClientError::NotRunning),
        Err(e) => return Err(io(e.into())),
    }
    proto::set_timeout(sock.as_fd(), ANSWER_WITHIN).map_err(io)?;
    let cred = getsockopt(&sock, sockopt::PeerCredentials).map_err(|e| io(e.into()))?;
    let uid = nix::unistd::getuid().as_raw();
    if cred.uid() != uid {
        return Err(bad(format!("its listener runs as uid {}, not {uid}", cred.uid())));
    }
    let pid = cred.pid();
    let proc_file = |f: &str| crate::sys::read_proc(&format!("/proc/{pid}/{f}")).map_err(&io);
    let ns_meta = std::fs::metadata(format!("/proc/{pid}/ns/user")).map_err(&io)?;
    let ours = std::fs::metadata("/proc/self/ns/user").map_err(&io)?;
    if (ns_meta.dev(), ns_meta.ino()) == (ours.dev(), ours.ino()) {
        return Err(bad(format!("its listener (pid {pid}) is not in a user namespace of its own")));
    }
    let map = |f: &str| {
        let text = proc_file(f)?;
        super::maps::parse(&text).ok_or_else(|| bad(format!("unreadable /proc/{pid}/{f}: {text:?}")))
    };
    let (uid_map, gid_map) = (map("uid_map")?, map("gid_map")?);
    let same_binary = same_binary(pid).map_err(&io)?;
    Ok(Conn { sock, path: name.clone(), pid, ns: (ns_meta.dev(), ns_meta.ino()), uid_map, gid_map, same_binary })
}

impl Conn {
    fn io(&self, source: std::io::Error) -> ClientError {
        ClientError::Io { path: self.path.clone(), source }
    }

    fn bad(&self, why: String) -> ClientError {
        ClientError::Bad { path: self.path.clone(), why }
    }

    /// Asks the keeper to exit, and waits until its socket and lock are released.
    pub fn stop(self) -> Result<(), ClientError> {
        proto::send(self.sock.as_fd(), &Request::Stop, &[]).map_err(|e| self.io(e))?;
        match proto::recv::<Reply>(self.sock.as_fd()).map_err(|e| self.io(e))? {
            (Reply::Stopped, _) => Ok(()),
            (other, _) => Err(self.bad(format!("answered Stop with {other:?}"))),
        }
    }

    /// Asks for a namespace nested in the keeper's with these maps (relative to the keeper's namespace); the
    /// answer is taken with [`Asked::receive`]. Sent early, so that the keeper's round trip overlaps the
    /// run's remaining checks.
    pub fn ask(self, uid_map: Vec<MapLine>, gid_map: Vec<MapLine>) -> Result<Asked, ClientError> {
        proto::send(self.sock.as_fd(), &Request::Namespace { uid_map, gid_map }, &[]).map_err(|e| self.io(e))?;
        Ok(Asked(self))
    }
}

/// A connection whose namespace request is on its way to the keeper.
pub struct Asked(Conn);

impl Asked {
    /// Takes the answer to [`Conn::ask`] and checks it. Returns the namespace's descriptor, those of the network,
    /// UTS and IPC namespaces it owns that came with it, and how long the keeper took to make it and to write its
    /// maps (µs).
    pub fn receive(self) -> Result<Namespaces, ClientError> {
        let conn = &self.0;
        let (reply, fds) = proto::recv::<Reply>(conn.sock.as_fd()).map_err(|e| conn.io(e))?;
        let took = match reply {
            Reply::Namespace { prepared_us, maps_us } => (prepared_us, maps_us),
            Reply::Refused { reason } => return Err(conn.bad(format!("refused: {reason}"))),
            other => return Err(conn.bad(format!("unexpected answer {other:?}"))),
        };
        let mut fds = fds.into_iter();
        let fd = fds.next().ok_or_else(|| conn.bad("no namespace descriptor came with the answer".into()))?;
        let others: Vec<OwnedFd> = fds.collect();
        check_handed(fd.as_fd(), &others, conn.ns).map_err(|why| conn.bad(format!("{why} (pid {})", conn.pid)))?;
        Ok((fd, others, took))
    }
}

/// Whether process `pid` runs the same burrow binary (file) as this one. An older burrow (upgraded since, its
/// file replaced) keeps its own code and protocol: a run replaces such a keeper rather than trust it.
pub(super) fn same_binary(pid: i32) -> std::io::Result<bool> {
    let theirs = std::fs::metadata(format!("/proc/{pid}/exe"))?;
    let ours = std::fs::metadata("/proc/self/exe")?;
    Ok((theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()))
}

/// Checks what a keeper handed over (over its socket or published): `user` is a user namespace created by us
/// whose parent is the keeper's namespace `parent` (device, inode), and `others` are a network, a UTS and an IPC
/// namespace (each at most once) that `user` owns. The error says what is wrong.
pub fn check_handed(user: BorrowedFd<'_>, others: &[OwnedFd], parent: (u64, u64)) -> Result<(), String> {
    use crate::sys::ns;
    let io = |e: std::io::Error| e.to_string();
    let kind = ns::ns_type(user).map_err(io)?;
    if kind != libc::CLONE_NEWUSER {
        return Err(format!("handed over a namespace of type {kind:#x}, not a user namespace"));
    }
    let owner = ns::ns_owner_uid(user).map_err(io)?;
    let uid = nix::unistd::getuid().as_raw();
    if owner != uid {
        return Err(format!("handed over a user namespace owned by uid {owner}, not {uid}"));
    }
    let theirs = ns::ns_parent(user).map_err(io)?;
    if ns::ns_id(theirs.as_fd()).map_err(io)? != parent {
        return Err("handed over a namespace that is not nested in the keeper's".into());
    }
    let mut seen = Vec::new();
    for fd in others {
        let kind = ns::ns_type(fd.as_fd()).map_err(io)?;
        let allowed = [libc::CLONE_NEWNET, libc::CLONE_NEWUTS, libc::CLONE_NEWIPC].contains(&kind);
        if !allowed || seen.contains(&kind) {
            return Err(format!("handed over an unexpected namespace of type {kind:#x}"));
        }
        seen.push(kind);
        if !ns::owned_by(fd.as_fd(), user).map_err(io)? {
            return Err(format!("handed over a namespace of type {kind:#x} that its user namespace does not own"));
        }
    }
    Ok(())
}
