//! The per-user user-namespace keeper: starts that skip the setuid helpers.
//!
//! Mapping subordinate IDs needs `newuidmap` and `newgidmap`, two setuid execs that cost about a third of a
//! start. The first run that uses them also starts a keeper ([`keeper`]), a small burrow process that holds a
//! user namespace mapped with the caller's whole subordinate ranges. Later runs connect to its socket
//! ([`client`]) and receive a fresh user namespace nested in it, already mapped with the run's own layout
//! ([`maps`]); P1 joins it with `setns` instead of unsharing one. Each container thus still has a user
//! namespace of its own: none has a capability over another's namespaces or shares its keyrings.
//! docs/design/launch-sequence.md and docs/security.md ("The user-namespace keeper") explain the choices.

pub mod client;
pub mod config;
pub mod keeper;
pub mod maps;
pub mod proto;
mod published;

use crate::idmap::{self, IdPlan, MapLine, UsernsMode};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("user namespace from the keeper (pid {keeper}): /proc/{pid}/{file} is {got:?}, expected {want:?}; stop the keeper (kill {keeper}) and run again")]
    Mismatch { keeper: i32, pid: i32, file: &'static str, got: Vec<MapLine>, want: Vec<MapLine> },
    #[error("cannot read /proc/{pid}/{file}: {source}")]
    Read { pid: i32, file: &'static str, source: std::io::Error },
    #[error("starting a user-namespace keeper: {0}")]
    Start(String),
}

/// How this run gets its user namespace.
pub enum Source {
    /// P1 unshares one of its own and P0 maps it (helpers or a single-ID map), as without a keeper. `start`:
    /// P0 starts a keeper once the container runs.
    Own { start: Option<Start> },
    /// P1 joins this namespace from the keeper.
    Join(Joined),
}

/// A namespace received from the keeper.
pub struct Joined {
    pub fd: OwnedFd,
    /// The network, UTS and IPC namespaces the keeper made with it (owned by it), for P1 to join instead of
    /// unsharing new ones.
    pub others: Vec<OwnedFd>,
    pub keeper: i32,
    /// The maps asked for, relative to the keeper's namespace: what a process in the namespace reads in its own
    /// `/proc/self/{uid,gid}_map` (the kernel shows a namespace's map relative to its parent to its members).
    pub nested: (Vec<MapLine>, Vec<MapLine>),
}

impl Source {
    /// The descriptor P1 joins, if any.
    pub fn join_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match self {
            Source::Join(j) => Some(j.fd.as_fd()),
            Source::Own { .. } => None,
        }
    }

    /// The other namespaces P1 joins after the user namespace (see [`Joined::others`]).
    pub fn join_others(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        match self {
            Source::Join(j) => j.others.iter().map(|f| f.as_fd()).collect(),
            Source::Own { .. } => Vec::new(),
        }
    }
}

/// Where this run's user namespace comes from, decided or waiting for the keeper's answer.
pub enum Choice {
    Decided(Source),
    /// The request is on its way: the keeper makes its answer while P0 checks the rest of the run.
    Asked {
        asked: client::Asked,
        keeper: i32,
        nested: (Vec<MapLine>, Vec<MapLine>),
        start: Start,
        begun: Instant,
    },
}

/// Decides where this run's user namespace comes from; talks to a running keeper when there is one, and sends
/// it the request at once (its answer is taken by [`Choice::finish`]). Never fails: whatever goes wrong with a
/// keeper, the run maps its own namespace as before (said with --verbose).
pub fn ask(mode: UsernsMode, ids: &IdPlan, policy: &config::Policy, say: &mut dyn FnMut(String)) -> Choice {
    let own = Choice::Decided(Source::Own { start: None });
    // A single-ID map costs no helper: nothing to save, nothing to keep.
    if !ids.via_helpers {
        return own;
    }
    let Ok(dir) = crate::state::base_dir() else { return own };
    if let Some(file) = &policy.forbidden_by {
        // A policy that forbids keepers also ends one started before it was set.
        if let Ok(conn) = client::connect(&dir) {
            let pid = conn.pid;
            if conn.stop().is_ok() {
                say(format!("stopped the user-namespace keeper (pid {pid}): {} forbids it", file.display()));
            }
        }
        say(format!("user namespace: mapped with newuidmap/newgidmap (keeper forbidden by {})", file.display()));
        return own;
    }
    if mode == UsernsMode::Private || !policy.enabled {
        let why = if mode == UsernsMode::Private { "--userns=private" } else { "--userns-keeper=off" };
        say(format!("user namespace: mapped with newuidmap/newgidmap ({why})"));
        return own;
    }
    let begun = Instant::now();
    let shared = ids.shared_maps();
    // The keeper's published spare, taken without waking the keeper (see `published`).
    if let Some(c) = published::claim(&dir, (&ids.uid_map, &ids.gid_map), &shared) {
        let keeper = c.notice.pid;
        say(format!(
            "user namespace: joined the keeper (pid {keeper}): took its published namespace in {} µs",
            begun.elapsed().as_micros()
        ));
        let nested = (c.notice.uid_map, c.notice.gid_map);
        return Choice::Decided(Source::Join(Joined { fd: c.user, others: c.others, keeper, nested }));
    }
    let start = Start { dir: dir.clone(), maps: shared, policy: policy.clone() };
    match join(&dir, ids, &start.maps) {
        Ok((asked, keeper, nested)) => Choice::Asked { asked, keeper, nested, start, begun },
        Err(unjoined) => Choice::Decided(unjoined.source(start, say)),
    }
}

impl Choice {
    /// The source of the run's user namespace: the keeper's answer, taken and checked, or the decision made.
    pub fn finish(self, say: &mut dyn FnMut(String)) -> Source {
        let (asked, keeper, nested, start, begun) = match self {
            Choice::Decided(source) => return source,
            Choice::Asked { asked, keeper, nested, start, begun } => (asked, keeper, nested, start, begun),
        };
        match asked.receive().map_err(Unjoined::from_client) {
            Ok((fd, others, (prepared_us, maps_us))) => {
                say(format!(
                    "user namespace: joined the keeper (pid {keeper}): nested namespace prepared in {prepared_us} µs (maps written in {maps_us} µs), received and checked in {} µs after it was asked",
                    begun.elapsed().as_micros()
                ));
                Source::Join(Joined { fd, others, keeper, nested })
            }
            Err(unjoined) => unjoined.source(start, say),
        }
    }
}

/// Why a run did not join a keeper, and whether it should start one.
struct Unjoined {
    why: String,
    start: bool,
}

impl Unjoined {
    fn start(why: impl ToString) -> Unjoined {
        Unjoined { why: why.to_string(), start: true }
    }

    fn keep(why: impl ToString) -> Unjoined {
        Unjoined { why: why.to_string(), start: false }
    }

    /// A keeper that failed to answer: one that exited (idle) while this run talked to it is gone, so a new one is
    /// started; one that refused or answered wrongly stays.
    fn from_client(e: client::ClientError) -> Unjoined {
        if e.keeper_gone() {
            Unjoined::start(e)
        } else {
            Unjoined::keep(e)
        }
    }

    /// The run maps its own namespace; it starts a keeper unless a live one could not serve it (starting another
    /// would only find its lock held).
    fn source(self, start: Start, say: &mut dyn FnMut(String)) -> Source {
        let Unjoined { why, start: starts } = self;
        let and = if starts { "; starting a keeper" } else { "" };
        say(format!("user namespace: mapped with newuidmap/newgidmap ({why}){and}"));
        Source::Own { start: starts.then_some(start) }
    }
}

/// For `burrow doctor`: the keeper's state in one line; Err when something needs the user's attention.
pub fn status(ids: &IdPlan, policy: &config::Policy) -> Result<String, String> {
    if let Some(file) = &policy.forbidden_by {
        return Ok(format!("disabled by {}", file.display()));
    }
    if !ids.via_helpers {
        return Ok("not needed: single-ID maps use no setuid helper".into());
    }
    let dir = crate::state::base_dir().map_err(|e| e.to_string())?;
    match client::connect(&dir) {
        Err(client::ClientError::NotRunning) => {
            Ok("not running: the next run that maps subordinate IDs starts one".into())
        }
        Err(e) => Err(format!("{e}: the next run maps with the helpers and replaces it")),
        Ok(conn) => {
            let shared = ids.shared_maps();
            let current = maps::normalize(&conn.uid_map) == maps::normalize(&shared.0)
                && maps::normalize(&conn.gid_map) == maps::normalize(&shared.1);
            match current {
                true => Ok(format!("running (pid {}), its maps match /etc/subuid and /etc/subgid", conn.pid)),
                false => Err(format!("running (pid {}) with outdated maps: the next run replaces it", conn.pid)),
            }
        }
    }
}

/// Connects to the keeper and asks for a namespace; replaces one whose maps are not today's plan.
type Nested = (Vec<MapLine>, Vec<MapLine>);

fn join(
    dir: &Path,
    ids: &IdPlan,
    shared: &(Vec<MapLine>, Vec<MapLine>),
) -> Result<(client::Asked, i32, Nested), Unjoined> {
    // No keeper, a dead one's socket, or something else listening there: a new keeper takes its place.
    let conn = client::connect(dir).map_err(Unjoined::start)?;
    let keeper = conn.pid;
    if !conn.same_binary {
        let stopped = conn.stop().map(|_| "stopped it").unwrap_or("could not stop it");
        return Err(Unjoined::start(format!("the keeper (pid {keeper}) runs another burrow binary: {stopped}")));
    }
    if !maps::same(&conn.uid_map, &shared.0) || !maps::same(&conn.gid_map, &shared.1) {
        let stopped = conn.stop().map(|_| "stopped it").unwrap_or("could not stop it");
        let (subuid, subgid) = idmap::subid_files();
        return Err(Unjoined::start(format!(
            "the keeper (pid {keeper}) maps other IDs than {} and {} now give: {stopped}",
            subuid.display(),
            subgid.display()
        )));
    }
    let nested = |want: &[MapLine], parent: &[MapLine]| {
        let lacks = || Unjoined::keep(format!("the keeper (pid {keeper}) lacks IDs of this plan"));
        maps::relative_to(want, parent).ok_or_else(lacks)
    };
    let (uid_map, gid_map) = (nested(&ids.uid_map, &conn.uid_map)?, nested(&ids.gid_map, &conn.gid_map)?);
    let nested = (uid_map.clone(), gid_map.clone());
    Ok((conn.ask(uid_map, gid_map).map_err(Unjoined::from_client)?, keeper, nested))
}

/// Checks, after P1 joined the keeper's namespace, that P1's maps are the plan's (as the kernel composes
/// them); returns whether setgroups(2) is allowed in it.
pub fn check_joined(pid: i32, keeper: i32, ids: &IdPlan) -> Result<bool, UsernsError> {
    check_maps(&pid.to_string(), pid, keeper, (&ids.uid_map, &ids.gid_map))
}

/// The same check made by P1 itself, inside the namespace it joined, where its maps read relative to the
/// keeper's namespace: they must be the maps that were asked for.
pub fn check_self(joined: &Joined) -> Result<bool, UsernsError> {
    let me = std::process::id() as i32;
    check_maps("self", me, joined.keeper, (&joined.nested.0, &joined.nested.1))
}

fn check_maps(proc: &str, pid: i32, keeper: i32, want: (&[MapLine], &[MapLine])) -> Result<bool, UsernsError> {
    let read = |file: &'static str| {
        crate::sys::read_proc(&format!("/proc/{proc}/{file}")).map_err(|source| UsernsError::Read { pid, file, source })
    };
    for (file, want) in [("uid_map", want.0), ("gid_map", want.1)] {
        let got = maps::normalize(&maps::parse(&read(file)?).unwrap_or_default());
        let want = maps::normalize(want);
        if got != want {
            return Err(UsernsError::Mismatch { keeper, pid, file, got, want });
        }
    }
    Ok(read("setgroups")?.trim() == "allow")
}

/// What P0 needs to start a keeper.
pub struct Start {
    dir: PathBuf,
    maps: (Vec<MapLine>, Vec<MapLine>),
    policy: config::Policy,
}

/// How long a starting keeper may take to say each of its lines.
const START_STEP: Duration = Duration::from_secs(5);

impl Start {
    /// Starts a keeper and maps its namespace with the helpers; returns its pid (None: another keeper was
    /// starting at the same moment and holds the lock).
    pub fn run(&self) -> Result<Option<i32>, UsernsError> {
        let err = |what: String| UsernsError::Start(what);
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg("__keeper").arg("--dir").arg(&self.dir).arg("--idle").arg(self.policy.idle.as_secs().to_string());
        // Nothing of the run's: no environment, no terminal, no working directory.
        cmd.env_clear().current_dir("/").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| err(format!("spawn burrow __keeper: {e}")))?;
        let mut out = Lines { pipe: child.stdout.take().expect("piped"), buf: Vec::new() };
        let mut stdin = child.stdin.take();
        let result = (|| {
            let line = out.next()?;
            if line == "busy" {
                return Ok(None);
            }
            let pid: i32 = match line.strip_prefix("unshared ").map(str::parse) {
                Some(Ok(pid)) => pid,
                _ => return Err(err(format!("it said {line:?}"))),
            };
            let plan = IdPlan {
                uid_map: self.maps.0.clone(),
                gid_map: self.maps.1.clone(),
                via_helpers: true,
                fallback_reason: None,
                inside: (0, 0),
                host: (0, 0),
                sub_ranges: (Vec::new(), Vec::new()),
            };
            idmap::start_helpers(&plan, pid).finish().map_err(|e| err(e.to_string()))?;
            let told = stdin.as_mut().map(|s| s.write_all(b"mapped\n"));
            told.transpose().map_err(|e| err(format!("tell pid {pid}: {e}")))?;
            match out.next()?.as_str() {
                "listening" => Ok(Some(pid)),
                other => Err(err(format!("pid {pid} said {other:?}"))),
            }
        })();
        // EOF for a keeper still waiting for its maps: it gives up. The process spawned exits right after its
        // fork (the keeper is its child, adopted by init): reap it.
        drop(stdin);
        let _ = child.wait();
        result
    }
}

/// Lines from the starting keeper, each within [`START_STEP`].
struct Lines {
    pipe: std::process::ChildStdout,
    buf: Vec<u8>,
}

impl Lines {
    fn next(&mut self) -> Result<String, UsernsError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let deadline = Instant::now() + START_STEP;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line).trim().to_string();
                return match text.strip_prefix("error ") {
                    Some(e) => Err(UsernsError::Start(e.to_string())),
                    None => Ok(text),
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(UsernsError::Start(format!("no answer within {START_STEP:?}")));
            }
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.pipe.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) | Err(nix::Error::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(UsernsError::Start(format!("poll: {e}"))),
            }
            let mut chunk = [0u8; 256];
            match self.pipe.read(&mut chunk) {
                Ok(0) => return Err(UsernsError::Start("it exited".into())),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(UsernsError::Start(format!("read: {e}"))),
            }
        }
    }
}
