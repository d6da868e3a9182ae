//! Published spares: the keeper's next namespace, taken by a run without waking the keeper.
//!
//! Asking the keeper over its socket puts the keeper's wakeup on the run's way: on a 2-vCPU VM its answer came
//! 0.2-0.8 ms after the request (the keeper waits for the run's CPU, or for an idle vCPU to wake), longer than
//! everything else P0 does before it forks. So the keeper also publishes each spare it makes as a file
//! `spare-KIND` in its directory (KIND names the host maps the spare gives), holding its pid, the numbers of the
//! spare's descriptors in the keeper, the keeper's namespace and the maps. A run claims it by renaming the file
//! to `taken-KIND-PID` (only one rename of a name succeeds), opens the descriptors through
//! `/proc/KEEPER/fd/N` (the same namespaces; same-user read access, as for `/proc/KEEPER/ns/user`), checks
//! them as it checks a socket answer, and removes its `taken-` file. The keeper notices (inotify) that the file
//! is gone, drops its copies and makes the next spare. A run that finds no spare, or whose claim fails a check,
//! asks over the socket as before.

use super::maps;
use crate::idmap::MapLine;
use serde::{Deserialize, Serialize};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The maps a keeper's own namespace must have (all of the user's subordinate ranges).
pub type Shared = (Vec<MapLine>, Vec<MapLine>);

/// What a published spare's file says.
#[derive(Debug, Serialize, Deserialize)]
pub struct Notice {
    /// The keeper's pid.
    pub pid: i32,
    /// The spare's user namespace and the network, UTS and IPC namespaces it owns, as descriptor numbers in the
    /// keeper.
    pub user: i32,
    pub others: Vec<i32>,
    /// The keeper's own user namespace (device and inode), the spare's parent.
    pub parent: (u64, u64),
    /// The spare's maps relative to the keeper's namespace (what a process in it reads in /proc/self/*_map).
    pub uid_map: Vec<MapLine>,
    pub gid_map: Vec<MapLine>,
}

/// The name that host maps publish under: a hash of their normalized text (FNV-1a, 64 bits).
pub fn kind(uid_map: &[MapLine], gid_map: &[MapLine]) -> String {
    let text = format!("{:?}/{:?}", maps::normalize(uid_map), maps::normalize(gid_map));
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{hash:016x}")
}

fn spare_path(dir: &Path, kind: &str) -> PathBuf {
    dir.join(format!("spare-{kind}"))
}

/// Keeper side: publishes a spare (written aside, then renamed into place: a reader never sees half a file).
pub fn publish(dir: &Path, kind: &str, notice: &Notice) -> io::Result<PathBuf> {
    let path = spare_path(dir, kind);
    let fresh = dir.join(format!(".spare-{kind}.{}", std::process::id()));
    std::fs::write(&fresh, serde_json::to_vec(notice).map_err(io::Error::other)?)?;
    std::fs::rename(&fresh, &path)?;
    Ok(path)
}

/// Keeper side: takes a published spare back before handing it out over the socket. False when a run claimed
/// it first (the file is gone): that run has it, or is opening it.
pub fn withdraw(path: &Path) -> bool {
    std::fs::remove_file(path).is_ok()
}

/// Keeper side: whether a claimed spare's descriptors may be closed: its run removed its `taken-` file, or died
/// before it could (the pid in the name is gone).
pub fn released(dir: &Path, kind: &str) -> bool {
    let prefix = format!("taken-{kind}-");
    let Ok(entries) = std::fs::read_dir(dir) else { return true };
    for name in entries.flatten().map(|e| e.file_name()) {
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(&prefix)).and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok() {
            return false;
        }
        let _ = std::fs::remove_file(dir.join(&name));
    }
    true
}

/// Keeper side: removes every published or claimed file (a new keeper's start: the old keeper's are stale).
pub fn clear(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for name in entries.flatten().map(|e| e.file_name()) {
        let n = name.to_string_lossy();
        if n.starts_with("spare-") || n.starts_with("taken-") || n.starts_with(".spare-") {
            let _ = std::fs::remove_file(dir.join(&name));
        }
    }
}

/// A spare claimed by this run: the notice, and the descriptors opened from the keeper.
pub struct Claimed {
    pub notice: Notice,
    pub user: OwnedFd,
    pub others: Vec<OwnedFd>,
}

/// Run side: claims the spare published for these host maps, if any, and opens its descriptors. None when
/// there is none, another run took it first, or anything about it is not what it must be (the caller then
/// asks over the socket, where a stale or foreign keeper is handled).
pub fn claim(dir: &Path, (uid_map, gid_map): (&[MapLine], &[MapLine]), shared: &Shared) -> Option<Claimed> {
    let kind = kind(uid_map, gid_map);
    let taken = dir.join(format!("taken-{kind}-{}", std::process::id()));
    std::fs::rename(spare_path(dir, &kind), &taken).ok()?;
    let claimed = open(&taken);
    // Opened or not, the claim ends here: the keeper then drops its copies and makes the next spare.
    let _ = std::fs::remove_file(&taken);
    let claimed = claimed?;
    // What the notice says the spare maps to must be what this run planned: the keeper's own maps (host IDs,
    // read from outside) composed with the spare's.
    let keeper_map = |f: &str| maps::parse(&crate::sys::read_proc(&format!("/proc/{}/{f}", claimed.notice.pid)).ok()?);
    let (ku, kg) = (keeper_map("uid_map")?, keeper_map("gid_map")?);
    // A keeper whose maps are no longer what /etc/subuid and /etc/subgid give is replaced over the socket.
    if !maps::same(&ku, &shared.0) || !maps::same(&kg, &shared.1) {
        return None;
    }
    let host_uid = maps::compose(&claimed.notice.uid_map, &ku)?;
    let host_gid = maps::compose(&claimed.notice.gid_map, &kg)?;
    (maps::same(&host_uid, uid_map) && maps::same(&host_gid, gid_map)).then_some(claimed)
}

fn open(taken: &Path) -> Option<Claimed> {
    use std::os::unix::fs::MetadataExt;
    let notice: Notice = serde_json::from_slice(&std::fs::read(taken).ok()?).ok()?;
    let pid = notice.pid;
    // The keeper is alive, runs this burrow's binary, and its namespace is the spare's parent.
    let ns = std::fs::metadata(format!("/proc/{pid}/ns/user")).ok()?;
    if !super::client::same_binary(pid).ok()? || (ns.dev(), ns.ino()) != notice.parent {
        return None;
    }
    let fd = |n: i32| std::fs::File::open(format!("/proc/{pid}/fd/{n}")).ok().map(OwnedFd::from);
    let user = fd(notice.user)?;
    let others = notice.others.iter().map(|n| fd(*n)).collect::<Option<Vec<_>>>()?;
    super::client::check_handed(user.as_fd(), &others, notice.parent).ok()?;
    Some(Claimed { notice, user, others })
}
