//! The keeper process (`burrow __keeper`, started by a run that mapped its IDs with the setuid helpers).
//!
//! Its whole job, in order:
//! 1. close what it inherited, clear its signal mask, leave the caller's session, fork once so that it is
//!    nobody's child, move to `/` (it never holds a container's cwd, mount or descriptor);
//! 2. take `keeper-1.lock` (a second keeper started at the same time says `busy` and exits);
//! 3. unshare a user namespace and wait until burrow has mapped it with newuidmap/newgidmap;
//! 4. prepare a spare namespace nested in it, bind `keeper-1.sock` (atomically, by rename), say `listening`;
//! 5. serve: each client gets a fresh nested namespace's descriptor (the spare, then a new spare is made);
//! 6. exit when idle for the configured time, when asked to (`Stop`), when the system's policy file forbids
//!    keepers, or when its socket was removed or replaced (a run whose user config forbids keepers stops it). Killing it at any time is safe: the next run maps again.

use super::config;
use super::proto::{self, Reply, Request, LOCK, SOCKET};
use crate::idmap::MapLine;
use crate::sys::{fork, Forked};
use nix::fcntl::{Flock, FlockArg};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io::{BufRead, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct KeeperError {
    what: String,
    source: std::io::Error,
}

trait Ctx<T> {
    fn ctx(self, what: impl Into<String>) -> Result<T, KeeperError>;
}

impl<T, E: Into<std::io::Error>> Ctx<T> for Result<T, E> {
    fn ctx(self, what: impl Into<String>) -> Result<T, KeeperError> {
        self.map_err(|e| KeeperError { what: what.into(), source: e.into() })
    }
}

/// The keeper's command line (built by [`super::Start`]).
pub struct Settings {
    pub dir: PathBuf,
    pub idle: Duration,
}

/// One line to the starting burrow (stdout is its pipe until `listening`).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub fn main(settings: &Settings) -> i32 {
    // Inherited descriptors other than stdio (a caller's pipes) must not stay open for minutes.
    let _ = crate::sys::ns::close_inherited_from(3);
    let empty = nix::sys::signal::SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&empty), None);
    let _ = nix::unistd::setsid();
    match fork() {
        Ok(Forked::Parent(_)) => crate::sys::exit_now(0),
        Ok(Forked::Child) => {}
        Err(e) => {
            say(&format!("error fork: {e}"));
            return 1;
        }
    }
    match run(settings) {
        Ok(()) => 0,
        Err(e) => {
            say(&format!("error {e}"));
            1
        }
    }
}

fn run(settings: &Settings) -> Result<(), KeeperError> {
    nix::unistd::chdir("/").ctx("chdir /")?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let lock_path = settings.dir.join(LOCK);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .ctx(format!("open {}", lock_path.display()))?;
    let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, nix::Error::EWOULDBLOCK)) => {
            say("busy");
            return Ok(());
        }
        Err((_, e)) => return Err(e).ctx(format!("lock {}", lock_path.display())),
    };
    unshare(CloneFlags::CLONE_NEWUSER).ctx("unshare(user)")?;
    say(&format!("unshared {}", std::process::id()));
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ctx("read from burrow")?;
    if line.trim() != "mapped" {
        return Err(std::io::Error::other("burrow did not map the namespace")).ctx("wait for the maps");
    }
    let host_maps = (own_map("uid_map")?, own_map("gid_map")?);
    let (uid_map, gid_map) = (identity(&host_maps.0), identity(&host_maps.1));
    // The keeper's own namespace, which every spare's notice names as the spare's parent.
    let own_ns = std::fs::File::open("/proc/self/ns/user").and_then(|f| crate::sys::ns::ns_id(f.as_fd())).ok();
    // Files a previous keeper published are stale: this one holds the lock now.
    super::published::clear(&settings.dir);
    let spare = Spare::new(&uid_map, &gid_map)?;
    let listener = Listener::bind(&settings.dir)?;
    say("listening");
    let null = std::fs::File::options().read(true).write(true).open("/dev/null").ctx("open /dev/null")?;
    let _ = nix::unistd::dup2_stdin(&null);
    let _ = nix::unistd::dup2_stdout(&null);
    drop(null);
    let watch = watch(&settings.dir);
    let mut keeper = Keeper { settings, listener, lock: Some(lock), spares: vec![spare], host_maps, own_ns, watch };
    keeper.publish_last();
    keeper.serve();
    Ok(())
}

/// This process's namespace's map as its parent (the host) sees it.
fn own_map(file: &str) -> Result<Vec<MapLine>, KeeperError> {
    let path = format!("/proc/self/{file}");
    let text = std::fs::read_to_string(&path).ctx(format!("read {path}"))?;
    let lines = super::maps::parse(&text).unwrap_or_default();
    if lines.is_empty() {
        return Err(std::io::Error::other("empty map")).ctx(format!("read {path}"));
    }
    Ok(lines)
}

/// Watches the keeper's directory for removed files (a run that took a published spare removes its claim).
fn watch(dir: &Path) -> Option<nix::sys::inotify::Inotify> {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let watch = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
    watch.add_watch(dir, AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM).ok()?;
    Some(watch)
}

/// The identity map of the keeper's namespace, one line per line of its own map `own` (a nested map must not
/// span two lines of its parent's).
fn identity(own: &[MapLine]) -> Vec<MapLine> {
    own.iter().map(|l| MapLine { inside: l.inside, outside: l.inside, count: l.count }).collect()
}

/// The listening socket, with the identity of the file it bound, to notice when it is removed or replaced.
struct Listener {
    sock: OwnedFd,
    path: PathBuf,
    ident: (u64, u64),
}

impl Listener {
    fn bind(dir: &Path) -> Result<Listener, KeeperError> {
        use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
        let path = dir.join(SOCKET);
        let fresh = dir.join(format!("{SOCKET}.{}", std::process::id()));
        let sock = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).ctx("socket")?;
        let _ = std::fs::remove_file(&fresh);
        let addr = UnixAddr::new(&fresh).ctx(format!("socket address {}", fresh.display()))?;
        bind(sock.as_raw_fd(), &addr).ctx(format!("bind {}", fresh.display()))?;
        listen(&sock, Backlog::new(64).unwrap_or(Backlog::MAXCONN)).ctx("listen")?;
        // Atomic: a client sees the old socket (refused: its keeper is gone) or this one, never no socket.
        std::fs::rename(&fresh, &path).ctx(format!("rename to {}", path.display()))?;
        let m = std::fs::symlink_metadata(&path).ctx(format!("stat {}", path.display()))?;
        Ok(Listener { sock, path, ident: (m.dev(), m.ino()) })
    }

    fn still_ours(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.ident)
    }
}

/// A nested user namespace prepared ahead of the next client.
struct Spare {
    uid_map: Vec<MapLine>,
    gid_map: Vec<MapLine>,
    fd: OwnedFd,
    /// The network, UTS and IPC namespaces made with it (none if they could not be made).
    others: Vec<OwnedFd>,
    took: Duration,
    /// The part of `took` spent writing the maps.
    maps: Duration,
    /// Its file, while it is published for a run to take (see `super::published`).
    published: Option<PathBuf>,
}

/// The network, UTS and IPC namespaces of process `pid` that the user namespace `user` owns: only those are
/// handed over (a process that could not unshare them is still in the keeper's own).
fn owned_by(user: &OwnedFd, pid: Pid) -> Vec<OwnedFd> {
    ["net", "uts", "ipc"]
        .iter()
        .filter_map(|kind| std::fs::File::open(format!("/proc/{pid}/ns/{kind}")).ok().map(OwnedFd::from))
        .filter(|fd| crate::sys::ns::owned_by(fd.as_fd(), user.as_fd()).unwrap_or(false))
        .collect()
}

/// Kills and reaps the short-lived process that created a nested namespace.
struct Reap(Pid);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGKILL);
        let _ = waitpid(self.0, None);
    }
}

impl Spare {
    /// Creates a user namespace nested in the keeper's and writes its maps. A child unshares it and stops
    /// itself; the keeper, which has every capability in its own namespace (the parent of the new one), writes
    /// the maps (user_namespaces(7): CAP_SETUID/CAP_SETGID in the parent namespace allow any map within it),
    /// keeps a descriptor of the namespace, and kills the child: the descriptor alone keeps it alive.
    fn new(uid_map: &[MapLine], gid_map: &[MapLine]) -> Result<Spare, KeeperError> {
        let start = Instant::now();
        let pid = match fork().ctx("fork")? {
            Forked::Child => {
                let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
                // The container's network, UTS and IPC namespaces too, owned by the new user namespace: made here,
                // while no run waits, they spare each run ~0.5 ms of its start (a network namespace alone is
                // ~0.35 ms). Without them (a namespace limit), the user namespace alone, as before.
                let others = CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
                let with_others = unshare(CloneFlags::CLONE_NEWUSER | others);
                if with_others.is_ok() {
                    // lo up now, while no run waits: a run's init then finds it up (the first IFF_UP of a
                    // device wakes a kworker; ~0.09 ms of init's start). Any error leaves it to init.
                    let _ = crate::sys::loopback_up();
                }
                let ok = with_others.or_else(|_| unshare(CloneFlags::CLONE_NEWUSER)).is_ok();
                if ok {
                    let _ = kill(Pid::this(), Signal::SIGSTOP);
                }
                crate::sys::exit_now(if ok { 0 } else { 1 })
            }
            Forked::Parent(pid) => Reap(pid),
        };
        match waitpid(pid.0, Some(WaitPidFlag::WUNTRACED)) {
            Ok(WaitStatus::Stopped(..)) => {}
            other => {
                let e = std::io::Error::other(format!("its process ended: {other:?}"));
                return Err(e).ctx("unshare a nested user namespace");
            }
        }
        let write = |file: &str, map: &[MapLine]| {
            let path = format!("/proc/{}/{file}", pid.0);
            let text: String = map.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(&path, text).ctx(format!("write {path}"))
        };
        let maps_start = Instant::now();
        write("uid_map", uid_map)?;
        write("gid_map", gid_map)?;
        let maps = maps_start.elapsed();
        let ns = format!("/proc/{}/ns/user", pid.0);
        let fd = OwnedFd::from(std::fs::File::open(&ns).ctx(format!("open {ns}"))?);
        let others = owned_by(&fd, pid.0);
        drop(pid);
        let (uid_map, gid_map) = (uid_map.to_vec(), gid_map.to_vec());
        Ok(Spare { uid_map, gid_map, fd, others, took: start.elapsed(), maps, published: None })
    }
}

struct Keeper<'a> {
    settings: &'a Settings,
    listener: Listener,
    lock: Option<Flock<std::fs::File>>,
    /// Namespaces prepared for the next clients: one for each of the last [`SPARE_KINDS`] different maps asked
    /// for (`--userns=auto` and `keep-id` ask for different ones), most recent last.
    spares: Vec<Spare>,
    /// This keeper's own maps as the host sees them (to name a spare by the host IDs it gives).
    host_maps: (Vec<MapLine>, Vec<MapLine>),
    /// This keeper's own user namespace (device, inode); without it nothing is published.
    own_ns: Option<(u64, u64)>,
    /// Deletions in the keeper's directory: a run removing the file of a spare it took.
    watch: Option<nix::sys::inotify::Inotify>,
}

const SPARE_KINDS: usize = 2;

/// How long after an answer the next spare is made: the run just answered is then past its start. Made at once,
/// the spare's fork and unshares (0.5-0.9 ms of CPU) competed with that run's P0, P1 and init for the CPU on a
/// busy machine, preempting them (docs/benchmarks.md); a run that comes sooner gets its namespace made for it.
const SPARE_DELAY: Duration = Duration::from_millis(5);

impl Keeper<'_> {
    fn serve(&mut self) {
        let mut last = Instant::now();
        // The maps of the spare to make once SPARE_DELAY has passed since the last answer.
        let mut owed: Option<(Vec<MapLine>, Vec<MapLine>)> = None;
        loop {
            let left = self.settings.idle.saturating_sub(last.elapsed());
            if left.is_zero() {
                break;
            }
            // Wake at least once a minute to notice a changed policy or a removed runtime directory.
            let mut tick = left.min(Duration::from_secs(60));
            if owed.is_some() {
                tick = tick.min(SPARE_DELAY.saturating_sub(last.elapsed()));
                if tick.is_zero() {
                    let (uid_map, gid_map) = owed.take().expect("checked");
                    self.prepare(&uid_map, &gid_map);
                    continue;
                }
            }
            let ms = u16::try_from(tick.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = vec![nix::poll::PollFd::new(self.listener.sock.as_fd(), nix::poll::PollFlags::POLLIN)];
            if let Some(w) = &self.watch {
                fds.push(nix::poll::PollFd::new(w.as_fd(), nix::poll::PollFlags::POLLIN));
            }
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
            let readable = |f: &nix::poll::PollFd| f.revents().is_some_and(|r| !r.is_empty());
            let (ready, removed) = (readable(&fds[0]), fds.get(1).is_some_and(readable));
            drop(fds);
            if config::forbids(Path::new(config::SYSTEM_CONFIG)) || !self.listener.still_ours() {
                break;
            }
            // A run took a published spare (or, once a minute, one that died while taking it is noticed).
            if removed || !ready {
                if let Some(w) = &self.watch {
                    while let Ok(events) = w.read_events() {
                        if events.is_empty() {
                            break;
                        }
                    }
                }
                if let Some(maps) = self.drop_taken() {
                    last = Instant::now();
                    if let Some((u, g)) = owed.replace(maps) {
                        self.prepare(&u, &g);
                    }
                }
            }
            if !ready {
                continue;
            }
            let Ok(conn) = crate::sys::ns::accept(self.listener.sock.as_fd()) else { continue };
            match self.client(&conn) {
                Some(Request::Stop) => {
                    self.release();
                    let _ = proto::send(conn.as_fd(), &Reply::Stopped, &[]);
                    return;
                }
                Some(Request::Namespace { uid_map, gid_map }) => {
                    last = Instant::now();
                    // The next client's namespace, made while nobody waits for it (SPARE_DELAY from now).
                    if let Some((u, g)) = owed.replace((uid_map, gid_map)) {
                        self.prepare(&u, &g);
                    }
                }
                None => {}
            }
        }
        self.release();
    }

    /// Makes a spare namespace with these maps for a later client; the oldest kind is dropped beyond
    /// [`SPARE_KINDS`].
    fn prepare(&mut self, uid_map: &[MapLine], gid_map: &[MapLine]) {
        if self.spares.iter().any(|s| s.uid_map == uid_map && s.gid_map == gid_map) {
            return;
        }
        if let Ok(spare) = Spare::new(uid_map, gid_map) {
            self.spares.push(spare);
            self.publish_last();
            if self.spares.len() > SPARE_KINDS {
                let old = self.spares.remove(0);
                if let Some(path) = &old.published {
                    super::published::withdraw(path);
                }
            }
        }
    }

    /// Publishes the newest spare for runs to take without a request (see `super::published`).
    fn publish_last(&mut self) {
        let host = &self.host_maps;
        let Some(spare) = self.spares.last_mut() else { return };
        let (Some(uid), Some(gid)) =
            (super::maps::compose(&spare.uid_map, &host.0), super::maps::compose(&spare.gid_map, &host.1))
        else {
            return;
        };
        let Some(parent) = self.own_ns else { return };
        let notice = super::published::Notice {
            pid: std::process::id() as i32,
            user: spare.fd.as_raw_fd(),
            others: spare.others.iter().map(|f| f.as_raw_fd()).collect(),
            parent,
            uid_map: spare.uid_map.clone(),
            gid_map: spare.gid_map.clone(),
        };
        let kind = super::published::kind(&uid, &gid);
        spare.published = super::published::publish(&self.settings.dir, &kind, &notice).ok();
    }

    /// Drops the spares that runs took and are done with (their file is gone and no live run holds its claim);
    /// returns the maps of one, to make its successor.
    fn drop_taken(&mut self) -> Option<(Vec<MapLine>, Vec<MapLine>)> {
        let dir = self.settings.dir.clone();
        let mut maps = None;
        self.spares.retain(|s| {
            let Some(path) = &s.published else { return true };
            let kind = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("spare-"));
            let done = !path.exists() && kind.is_some_and(|k| super::published::released(&dir, k));
            if done {
                maps = Some((s.uid_map.clone(), s.gid_map.clone()));
            }
            !done
        });
        maps
    }

    /// Serves one connection; returns the request it carried.
    fn client(&mut self, conn: &OwnedFd) -> Option<Request> {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let _ = proto::set_timeout(conn.as_fd(), Duration::from_secs(2));
        let cred = getsockopt(conn, PeerCredentials).ok()?;
        if cred.uid() != nix::unistd::getuid().as_raw() {
            return None; // the runtime directory is private; refuse anyone else all the same
        }
        let (req, _) = proto::recv::<Request>(conn.as_fd()).ok()?;
        if let Request::Namespace { uid_map, gid_map } = &req {
            let ready = self.spares.iter().position(|s| s.uid_map == *uid_map && s.gid_map == *gid_map);
            // A published spare is taken back first; a run may have claimed it a moment ago (then it stays
            // until that run is done with it, and this client gets a new one).
            let ready = ready.filter(|i| self.spares[*i].published.as_deref().is_none_or(super::published::withdraw));
            let spare = match ready {
                Some(i) => Ok(self.spares.remove(i)),
                None => Spare::new(uid_map, gid_map),
            };
            let _ = match spare {
                Ok(s) => {
                    let (prepared_us, maps_us) = (s.took.as_micros() as u64, s.maps.as_micros() as u64);
                    let reply = Reply::Namespace { prepared_us, maps_us };
                    let fds: Vec<_> = std::iter::once(&s.fd).chain(&s.others).map(|f| f.as_fd()).collect();
                    proto::send(conn.as_fd(), &reply, &fds)
                }
                Err(e) => proto::send(conn.as_fd(), &Reply::Refused { reason: e.to_string() }, &[]),
            };
        }
        Some(req)
    }

    /// Removes the socket (if it is still this keeper's) and releases the lock, so that a new keeper can start.
    fn release(&mut self) {
        if self.listener.still_ours() {
            let _ = std::fs::remove_file(&self.listener.path);
        }
        super::published::clear(&self.settings.dir);
        self.lock.take();
        self.spares.clear();
    }
}
