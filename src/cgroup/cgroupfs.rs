//! A cgroup already delegated to this user (a Slurm step, a user@.service, a directory an
//! administrator chowned): the container's cgroup is created below it directly, without systemd.
//!
//! cgroup v2's "no internal processes" rule decides where: a cgroup that holds processes (ours does:
//! burrow runs in it) cannot enable controllers for its children. So without limits the leaf goes
//! below our own cgroup; with limits it goes beside it, below the parent, if the parent is delegated
//! too (the usual shape: the delegated root, with the user's processes in a leaf below it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use nix::unistd::{access, AccessFlags};

use super::detect::{self, Host};
use super::limits::Controller;

/// Where the container's cgroup will be created, and what can be enabled there.
#[derive(Clone, Debug)]
pub struct Base {
    pub dir: PathBuf,
    /// controllers that can be enabled for the new child (the base's cgroup.controllers when it
    /// holds no process, else none)
    pub controllers: BTreeSet<Controller>,
}

fn writable(dir: &Path, files: &[&str]) -> bool {
    access(dir, AccessFlags::W_OK).is_ok() && files.iter().all(|f| access(&dir.join(f), AccessFlags::W_OK).is_ok())
}

fn has_processes(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.procs")).map_or(true, |s| !s.trim().is_empty())
}

/// Chooses the base for limits needing `needed`. `Err` carries the reason none can be used.
pub fn probe(host: &Host, needed: &BTreeSet<Controller>) -> Result<Base, String> {
    let own =
        host.own_dir().ok_or_else(|| "this process's cgroup v2 is not visible under any cgroup2 mount".to_string())?;
    let own_ok = writable(&own, &["cgroup.procs"]);
    if needed.is_empty() && own_ok {
        return Ok(Base { dir: own, controllers: BTreeSet::new() });
    }
    let parent =
        own.parent().filter(|p| host.cgroup2.iter().all(|m| m.mount_point != own) && p.join("cgroup.procs").exists());
    if let Some(parent) = parent {
        if writable(parent, &["cgroup.procs", "cgroup.subtree_control"]) && !has_processes(parent) {
            let controllers =
                detect::read_controllers(&parent.join("cgroup.controllers")).map_err(|e| e.to_string())?;
            return Ok(Base { dir: parent.to_path_buf(), controllers });
        }
    }
    if own_ok {
        // Usable for grouping and CPU accounting, but no controller can be enabled below it.
        return Ok(Base { dir: own, controllers: BTreeSet::new() });
    }
    Err(format!("this process's cgroup {} is not delegated to this user (cgroup.procs is not writable)", own.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fake cgroup2 tree in a temporary directory: root/parent/own, with burrow in `own`.
    fn tree(parent_procs: &str, parent_controllers: &str) -> (tempfile::TempDir, Host) {
        let d = tempfile::tempdir().unwrap();
        let own = d.path().join("parent/own");
        fs::create_dir_all(&own).unwrap();
        for dir in [d.path().join("parent"), own] {
            for f in ["cgroup.procs", "cgroup.subtree_control", "cgroup.controllers"] {
                fs::write(dir.join(f), "").unwrap();
            }
        }
        fs::write(d.path().join("parent/cgroup.procs"), parent_procs).unwrap();
        fs::write(d.path().join("parent/cgroup.controllers"), parent_controllers).unwrap();
        let mountinfo = format!("1 0 0:1 / {} rw - cgroup2 cgroup2 rw\n", d.path().display());
        let host = Host::parse(&mountinfo, "0::/parent/own\n");
        (d, host)
    }

    #[test]
    fn without_limits_the_leaf_goes_below_our_own_cgroup() {
        let (d, host) = tree("", "cpu memory pids");
        let base = probe(&host, &BTreeSet::new()).unwrap();
        assert_eq!(base.dir, d.path().join("parent/own"));
        assert!(base.controllers.is_empty());
    }

    #[test]
    fn with_limits_it_goes_beside_it_below_a_delegated_empty_parent() {
        let (d, host) = tree("", "cpu memory pids");
        let base = probe(&host, &[Controller::Memory].into()).unwrap();
        assert_eq!(base.dir, d.path().join("parent"));
        assert_eq!(base.controllers, [Controller::Cpu, Controller::Memory, Controller::Pids].into());
    }

    #[test]
    fn a_parent_holding_processes_cannot_enable_controllers() {
        let (d, host) = tree("1234\n", "cpu memory pids");
        let base = probe(&host, &[Controller::Memory].into()).unwrap();
        assert_eq!(base.dir, d.path().join("parent/own"));
        assert!(base.controllers.is_empty(), "the missing controller is then reported by preflight");
    }
}
