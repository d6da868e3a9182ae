//! What the host offers: where cgroup2 is mounted, which controllers are still bound to cgroup v1
//! hierarchies (hybrid layout), and which cgroup this process is in.
//!
//! Only /proc is read: the cgroup2 mount point is never assumed (hybrid hosts mount it at
//! /sys/fs/cgroup/unified, containers may mount a subtree).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::limits::Controller;
use super::CgroupError;

/// One cgroup2 mount: `root` is the cgroup path (as /proc/PID/cgroup shows it) that `mount_point` shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Cgroup2Mount {
    pub mount_point: PathBuf,
    pub root: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Host {
    /// cgroup2 mounts, in mountinfo order
    pub cgroup2: Vec<Cgroup2Mount>,
    /// controllers bound to a cgroup v1 hierarchy, with its mount point
    pub v1: BTreeMap<Controller, PathBuf>,
    /// this process's cgroup v2 path, from /proc/self/cgroup
    pub own: Option<String>,
}

impl Host {
    pub fn probe() -> Result<Host, CgroupError> {
        let mountinfo = read_proc("/proc/self/mountinfo")?;
        let cgroup = read_proc("/proc/self/cgroup")?;
        Ok(Host::parse(&mountinfo, &cgroup))
    }

    pub fn parse(mountinfo: &str, proc_cgroup: &str) -> Host {
        let mut host = Host { own: cgroup2_path(proc_cgroup), ..Host::default() };
        for m in mountinfo.lines().filter_map(parse_mountinfo_line) {
            match m.fstype.as_str() {
                "cgroup2" => host.cgroup2.push(Cgroup2Mount { mount_point: m.mount_point, root: m.root }),
                "cgroup" => {
                    for opt in m.super_options.split(',') {
                        if let Some(c) = v1_controller(opt) {
                            host.v1.entry(c).or_insert_with(|| m.mount_point.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        host
    }

    /// The directory that shows cgroup `path` (as in /proc/PID/cgroup), if a cgroup2 mount reaches it.
    pub fn dir_of(&self, path: &str) -> Option<PathBuf> {
        self.cgroup2.iter().find_map(|m| {
            let rel = strip_cgroup_prefix(path, &m.root)?;
            Some(if rel.is_empty() { m.mount_point.clone() } else { m.mount_point.join(rel) })
        })
    }

    /// This process's own cgroup directory.
    pub fn own_dir(&self) -> Option<PathBuf> {
        self.own.as_deref().and_then(|p| self.dir_of(p))
    }
}

/// The cgroup v2 path of a process, from the text of /proc/PID/cgroup (the `0::PATH` line).
pub fn cgroup2_path(proc_cgroup: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let path = l.strip_prefix("0::")?;
        // A cgroup removed under a process shows " (deleted)"; it cannot be used.
        (!path.ends_with(" (deleted)")).then(|| path.to_string())
    })
}

/// The cgroup v2 path of process `pid`.
pub fn cgroup2_path_of(pid: i32) -> Result<String, CgroupError> {
    let path = format!("/proc/{pid}/cgroup");
    let text = read_proc(&path)?;
    cgroup2_path(&text).ok_or(CgroupError::NoCgroup2Line { path: path.into() })
}

/// The controllers listed in a cgroup's `cgroup.controllers` (or `cgroup.subtree_control`).
pub fn read_controllers(file: &Path) -> Result<BTreeSet<Controller>, CgroupError> {
    let text = fs::read_to_string(file).map_err(|source| CgroupError::Read { path: file.to_path_buf(), source })?;
    Ok(text.split_whitespace().filter_map(Controller::from_name).collect())
}

fn read_proc(path: &str) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read { path: path.into(), source })
}

/// `path` relative to `root` if `path` lies under `root` (component-wise).
fn strip_cgroup_prefix<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    let root = root.trim_end_matches('/');
    let rest = path.strip_prefix(root)?;
    if rest.is_empty() {
        return Some("");
    }
    rest.strip_prefix('/')
}

fn v1_controller(opt: &str) -> Option<Controller> {
    match opt {
        "blkio" => Some(Controller::Io),
        "io" => None,
        other => Controller::from_name(other),
    }
}

struct MountLine {
    root: String,
    mount_point: PathBuf,
    fstype: String,
    super_options: String,
}

/// Parses one /proc/PID/mountinfo line (see proc(5)): the optional fields end with a lone "-".
fn parse_mountinfo_line(line: &str) -> Option<MountLine> {
    let mut fields = line.split(' ');
    let root = unescape(fields.nth(3)?);
    let mount_point = PathBuf::from(unescape(fields.next()?));
    let mut rest = fields.skip_while(|f| *f != "-").skip(1);
    let fstype = rest.next()?.to_string();
    let _source = rest.next()?;
    let super_options = rest.next().unwrap_or("").to_string();
    Some(MountLine { root, mount_point, fstype, super_options })
}

/// Undoes the octal escapes of mountinfo (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 31 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:5 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 master:2 - cgroup2 cgroup2 rw
";
    const CG: &str = "9:name=systemd:/\n4:memory:/x\n0::/burrow-ci/tests\n";

    #[test]
    fn hybrid_layout() {
        let h = Host::parse(HYBRID, CG);
        assert_eq!(h.cgroup2.len(), 1);
        assert_eq!(h.cgroup2[0].mount_point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(h.own.as_deref(), Some("/burrow-ci/tests"));
        assert_eq!(h.own_dir().unwrap(), Path::new("/sys/fs/cgroup/unified/burrow-ci/tests"));
        assert_eq!(h.v1[&Controller::Memory], Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(h.v1[&Controller::Io], Path::new("/sys/fs/cgroup/blkio"));
        assert_eq!(h.v1[&Controller::Cpu], Path::new("/sys/fs/cgroup/cpu"));
        assert!(!h.v1.contains_key(&Controller::Pids));
    }

    #[test]
    fn unified_and_subtree_mounts() {
        let mi = "1 0 0:1 /user.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = Host::parse(mi, "0::/user.slice/a b.scope\n");
        assert_eq!(h.own_dir().unwrap(), Path::new("/sys/fs/cgroup/a b.scope"));
        assert_eq!(h.dir_of("/user.slice").unwrap(), Path::new("/sys/fs/cgroup"));
        assert_eq!(h.dir_of("/user.slicex"), None);
        assert_eq!(h.dir_of("/system.slice"), None);
        let root = Host::parse("1 0 0:1 / /cg rw - cgroup2 none rw\n", "0::/\n");
        assert_eq!(root.own_dir().unwrap(), Path::new("/cg"));
    }

    #[test]
    fn v1_only_and_escapes() {
        let mi = "5 1 0:5 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
                  6 1 0:6 / /mnt/with\\040space rw - cgroup2 cgroup2 rw\n";
        let h = Host::parse(mi, "1:pids:/\n");
        assert_eq!(h.own, None);
        assert_eq!(h.cgroup2[0].mount_point, Path::new("/mnt/with space"));
        assert!(h.v1.contains_key(&Controller::Pids));
        assert_eq!(cgroup2_path("0::/gone (deleted)\n"), None);
    }
}
