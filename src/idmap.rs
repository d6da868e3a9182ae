//! User namespace ID mapping: /etc/subuid and /etc/subgid, the map layout, and writing it.
//!
//! With subordinate IDs the maps are written by the setuid helpers `newuidmap`/`newgidmap` (the kernel lets an
//! unprivileged process write only a one-line map of its own ID). Without them burrow falls back to a single-ID
//! map, which needs `setgroups` set to `deny` first (CVE-2014-8989: otherwise the mapped user could drop
//! supplementary groups that deny access).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum IdmapError {
    #[error("{file}:{line}: malformed entry for {user} ({text:?}): expected NAME:START:COUNT with numbers; fix the line or run with --userns=single")]
    MalformedOwnEntry { file: PathBuf, line: usize, user: String, text: String },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path} for pid {pid}: {source}")]
    Write { path: String, pid: i32, source: std::io::Error },
    #[error("{helper} is not installed: install the uidmap package (it provides newuidmap and newgidmap)")]
    HelperMissing { helper: &'static str },
    #[error("{helper} failed for pid {pid} ({status}): {stderr}")]
    HelperFailed { helper: &'static str, pid: i32, status: String, stderr: String },
}

/// How the container's IDs relate to the caller's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum UsernsMode {
    /// Container root is the caller, container IDs 1.. come from the caller's subordinate ranges.
    Auto,
    /// Only the caller's own ID is mapped (to root); no helper is used.
    Single,
    /// The caller keeps its own uid and gid inside; the other IDs come from the subordinate ranges.
    KeepId,
    /// As `auto`, in a user namespace of the container's own, mapped by newuidmap/newgidmap for this run alone
    /// (no user-namespace keeper is used or started).
    Private,
}

/// A contiguous range of host IDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    pub start: u32,
    pub count: u32,
}

/// One line of a uid_map/gid_map: `inside outside count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MapLine {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The caller's subordinate ranges from one file, plus warnings for lines that were skipped.
#[derive(Debug, Default)]
pub struct SubIds {
    pub ranges: Vec<IdRange>,
    pub warnings: Vec<String>,
}

/// Parses the content of /etc/subuid or /etc/subgid, keeping the ranges of `user` (matched by name or by
/// numeric ID). Malformed lines of other users are skipped with a warning; a malformed line of this user is an
/// error, since it means the administrator's intent cannot be honoured.
pub fn parse_subids(content: &str, file: &Path, user: &str, id: u32) -> Result<SubIds, IdmapError> {
    let mut out = SubIds::default();
    let id_text = id.to_string();
    for (index, raw) in content.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(':');
        let owner = fields.next().unwrap_or_default();
        let parsed = match (fields.next(), fields.next(), fields.next()) {
            (Some(start), Some(count), None) => start.parse::<u32>().ok().zip(count.parse::<u32>().ok()),
            _ => None,
        };
        let mine = owner == user || owner == id_text;
        match parsed {
            Some((start, count)) if count > 0 && start.checked_add(count).is_some() => {
                if mine {
                    out.ranges.push(IdRange { start, count });
                }
            }
            _ if mine => {
                return Err(IdmapError::MalformedOwnEntry {
                    file: file.to_path_buf(),
                    line: index + 1,
                    user: user.to_string(),
                    text: line.to_string(),
                })
            }
            _ => out.warnings.push(format!("{}:{}: malformed line ignored", file.display(), index + 1)),
        }
    }
    Ok(out)
}

/// Reads and parses a subid file; a missing file means no ranges.
pub fn read_subids(file: &Path, user: &str, id: u32) -> Result<SubIds, IdmapError> {
    match std::fs::read_to_string(file) {
        Ok(content) => parse_subids(&content, file, user, id),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SubIds::default()),
        Err(source) => Err(IdmapError::Read { path: file.to_path_buf(), source }),
    }
}

/// Lays out a map: container ID `keep_inside` is the caller's `host` ID, and the subordinate ranges fill the
/// container IDs from 0 upwards, skipping `keep_inside`.
pub fn layout(keep_inside: u32, host: u32, subs: &[IdRange]) -> Vec<MapLine> {
    let mut lines = vec![MapLine { inside: keep_inside, outside: host, count: 1 }];
    let mut next = 0u32;
    for range in subs {
        let (mut outside, mut count) = (range.start, range.count);
        while count > 0 {
            if next == keep_inside {
                next += 1;
                continue;
            }
            // Stop this chunk just before the kept ID.
            let room = if next < keep_inside { keep_inside - next } else { u32::MAX - next };
            let take = count.min(room);
            if take == 0 {
                break;
            }
            lines.push(MapLine { inside: next, outside, count: take });
            next += take;
            outside += take;
            count -= take;
        }
    }
    lines.sort_by_key(|l| l.inside);
    lines
}

/// The maps to write and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdPlan {
    pub uid_map: Vec<MapLine>,
    pub gid_map: Vec<MapLine>,
    /// Written by newuidmap/newgidmap (true) or directly as a single-ID map with setgroups=deny (false).
    pub via_helpers: bool,
    /// Why the single-ID fallback was taken, to tell the user (None when asked for or not needed).
    pub fallback_reason: Option<String>,
    /// The caller's uid and gid inside the container.
    pub inside: (u32, u32),
    /// The caller's uid and gid on the host.
    pub host: (u32, u32),
    /// The caller's subordinate uid and gid ranges, in file order (empty for a single-ID plan): what a shared
    /// user namespace (the keeper's) maps.
    pub sub_ranges: (Vec<IdRange>, Vec<IdRange>),
}

impl IdPlan {
    /// A single-ID plan mapping the caller to `uid`/`gid` inside.
    pub fn single(inside_uid: u32, inside_gid: u32, uid: u32, gid: u32, reason: Option<String>) -> IdPlan {
        IdPlan {
            uid_map: vec![MapLine { inside: inside_uid, outside: uid, count: 1 }],
            gid_map: vec![MapLine { inside: inside_gid, outside: gid, count: 1 }],
            via_helpers: false,
            fallback_reason: reason,
            inside: (inside_uid, inside_gid),
            host: (uid, gid),
            sub_ranges: (Vec::new(), Vec::new()),
        }
    }

    /// The maps of the user namespace a user-namespace keeper holds for this caller: the caller is root and the
    /// subordinate ranges follow from 1, whatever this run's mode (a run's own layout is nested inside it).
    pub fn shared_maps(&self) -> (Vec<MapLine>, Vec<MapLine>) {
        (layout(0, self.host.0, &self.sub_ranges.0), layout(0, self.host.1, &self.sub_ranges.1))
    }

    /// The container ID that the caller's uid and gid have.
    pub fn caller_inside(&self) -> (u32, u32) {
        self.inside
    }

    /// The one-line notice printed when the fallback was taken.
    pub fn notice(&self) -> Option<String> {
        self.fallback_reason.as_ref().map(|why| {
            format!("burrow: notice: {why}; using a single-ID map: only your own ID exists inside, so `chown` to other IDs will fail (add ranges to /etc/subuid and /etc/subgid, or pass --userns=single to silence this)")
        })
    }
}

/// Where the subid files are. `BURROW_SUBUID_FILE`/`BURROW_SUBGID_FILE` override them for diagnostics and tests;
/// the setuid helpers always read the real files, so an override can only lead to the single-ID fallback.
pub fn subid_files() -> (PathBuf, PathBuf) {
    let get = |var: &str, default: &str| std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| default.into());
    (get("BURROW_SUBUID_FILE", "/etc/subuid"), get("BURROW_SUBGID_FILE", "/etc/subgid"))
}

/// The caller's identity.
#[derive(Clone, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
}

/// Decides the maps for `mode`. Warnings about skipped lines go to `warn`.
pub fn plan(mode: UsernsMode, caller: &Caller, warn: &mut dyn FnMut(String)) -> Result<IdPlan, IdmapError> {
    let (uid, gid) = (caller.uid, caller.gid);
    let (keep_uid, keep_gid) = if mode == UsernsMode::KeepId { (uid, gid) } else { (0, 0) };
    if mode == UsernsMode::Single {
        return Ok(IdPlan::single(0, 0, uid, gid, None));
    }
    let (subuid_file, subgid_file) = subid_files();
    let subuid = read_subids(&subuid_file, &caller.name, uid)?;
    let subgid = read_subids(&subgid_file, &caller.name, uid)?;
    subuid.warnings.into_iter().chain(subgid.warnings).for_each(&mut *warn);
    let fallback = |why: String| Ok(IdPlan::single(keep_uid, keep_gid, uid, gid, Some(why)));
    if subuid.ranges.is_empty() || subgid.ranges.is_empty() {
        let file = if subuid.ranges.is_empty() { &subuid_file } else { &subgid_file };
        return fallback(format!("no subordinate IDs for {} in {}", caller.name, file.display()));
    }
    if let Some(helper) = ["newuidmap", "newgidmap"].into_iter().find(|h| find_helper(h).is_none()) {
        return fallback(format!("{helper} not found (install the uidmap package)"));
    }
    Ok(IdPlan {
        uid_map: layout(keep_uid, uid, &subuid.ranges),
        gid_map: layout(keep_gid, gid, &subgid.ranges),
        via_helpers: true,
        fallback_reason: None,
        inside: (keep_uid, keep_gid),
        host: (uid, gid),
        sub_ranges: (subuid.ranges, subgid.ranges),
    })
}

/// Finds a helper in the usual system directories (the caller's PATH may not include sbin).
pub fn find_helper(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists())
}

impl fmt::Display for MapLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.inside, self.outside, self.count)
    }
}

/// The helpers, started and not yet waited for (the caller does other work meanwhile).
pub struct Helpers {
    pid: i32,
    uid: Result<std::process::Child, IdmapError>,
    gid: Result<std::process::Child, IdmapError>,
}

impl Helpers {
    /// Waits for both helpers; the first failure wins.
    pub fn finish(self) -> Result<(), IdmapError> {
        let uid_result = self.uid.and_then(|c| finish("newuidmap", self.pid, c));
        let gid_result = self.gid.and_then(|c| finish("newgidmap", self.pid, c));
        uid_result.and(gid_result)
    }
}

/// Starts `newuidmap` and `newgidmap` for `pid` at once. If either fails, [`Helpers::finish`] returns an error
/// carrying its stderr, and the caller may fall back to [`write_single`].
pub fn start_helpers(plan: &IdPlan, pid: i32) -> Helpers {
    let spawn = |helper: &'static str, lines: &[MapLine]| {
        let path = find_helper(helper).ok_or(IdmapError::HelperMissing { helper })?;
        let mut cmd = Command::new(path);
        cmd.arg(pid.to_string());
        for l in lines {
            cmd.args([l.inside.to_string(), l.outside.to_string(), l.count.to_string()]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd.spawn().map_err(|e| IdmapError::HelperFailed {
            helper,
            pid,
            status: "spawn failed".into(),
            stderr: e.to_string(),
        })
    };
    Helpers { pid, uid: spawn("newuidmap", &plan.uid_map), gid: spawn("newgidmap", &plan.gid_map) }
}

fn finish(helper: &'static str, pid: i32, child: std::process::Child) -> Result<(), IdmapError> {
    let out = child.wait_with_output().map_err(|e| IdmapError::HelperFailed {
        helper,
        pid,
        status: "wait failed".into(),
        stderr: e.to_string(),
    })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().replace('\n', "; ");
    Err(IdmapError::HelperFailed { helper, pid, status: out.status.to_string(), stderr })
}

/// Writes a single-ID map directly: `setgroups` = deny first, as the kernel requires for an unprivileged
/// gid_map.
pub fn write_single(plan: &IdPlan, pid: i32) -> Result<(), IdmapError> {
    let write = |name: &str, content: String| {
        let path = format!("/proc/{pid}/{name}");
        std::fs::write(&path, content).map_err(|source| IdmapError::Write { path, pid, source })
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("{}\n", MapLine { inside: plan.inside.0, outside: plan.host.0, count: 1 }))?;
    write("gid_map", format!("{}\n", MapLine { inside: plan.inside.1, outside: plan.host.1, count: 1 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(content: &str) -> Result<SubIds, IdmapError> {
        parse_subids(content, Path::new("/etc/subuid"), "alice", 1000)
    }

    #[test]
    fn parses_name_and_numeric_entries_and_several_ranges() {
        let s = parse("# comment\n\nalice:100000:65536\nbob:165536:65536\n1000:300000:10\n").unwrap();
        assert_eq!(s.ranges, vec![IdRange { start: 100000, count: 65536 }, IdRange { start: 300000, count: 10 }]);
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn malformed_lines_of_others_are_warnings_with_file_and_line() {
        let s = parse("bob:x:1\nalice:100000:65536\ncarol\n").unwrap();
        assert_eq!(s.ranges.len(), 1);
        assert_eq!(s.warnings, vec!["/etc/subuid:1: malformed line ignored", "/etc/subuid:3: malformed line ignored"]);
    }

    #[test]
    fn malformed_own_line_is_an_error() {
        for bad in ["alice:100000", "alice:abc:65536", "alice:1:0", "alice:4294967295:2", "1000:1:2:3"] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("/etc/subuid:1: malformed entry for alice"), "{bad}: {err}");
        }
    }

    #[test]
    fn auto_layout_maps_root_to_caller_then_ranges() {
        let m = layout(0, 1000, &[IdRange { start: 100000, count: 65536 }]);
        assert_eq!(
            m,
            vec![MapLine { inside: 0, outside: 1000, count: 1 }, MapLine { inside: 1, outside: 100000, count: 65536 }]
        );
    }

    #[test]
    fn keep_id_layout_skips_the_kept_id() {
        let m = layout(1000, 1000, &[IdRange { start: 100000, count: 600 }, IdRange { start: 200000, count: 65536 }]);
        assert_eq!(
            m,
            vec![
                MapLine { inside: 0, outside: 100000, count: 600 },
                MapLine { inside: 600, outside: 200000, count: 400 },
                MapLine { inside: 1000, outside: 1000, count: 1 },
                MapLine { inside: 1001, outside: 200400, count: 65136 },
            ]
        );
    }

    #[test]
    fn fallback_notice_says_why_and_what_chown_does() {
        let p = IdPlan::single(0, 0, 1000, 1000, Some("no subordinate IDs for alice in /etc/subuid".into()));
        let n = p.notice().unwrap();
        assert!(n.contains("no subordinate IDs") && n.contains("chown"));
        assert!(IdPlan::single(0, 0, 1, 1, None).notice().is_none());
    }
}
