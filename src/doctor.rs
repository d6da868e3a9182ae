//! `burrow doctor`: one line per check, the exact fix for what fails. Exit status 0 when everything burrow
//! needs works (user namespaces); optional parts that are missing are warnings, since burrow falls back.

use crate::cli::DoctorArgs;
use crate::idmap::{self, IdRange};
use std::path::Path;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Level {
    Ok,
    /// Optional part missing: burrow falls back.
    Warn,
    /// Needed part missing.
    Fail,
}

pub struct Check {
    pub level: Level,
    pub name: &'static str,
    pub detail: String,
    pub fix: Option<String>,
}

fn check(level: Level, name: &'static str, detail: impl Into<String>, fix: Option<String>) -> Check {
    Check { level, name, detail: detail.into(), fix }
}

pub fn run(args: &DoctorArgs) -> i32 {
    let checks = all();
    for c in &checks {
        if args.quiet && c.level == Level::Ok {
            continue;
        }
        let tag = match c.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        match &c.fix {
            Some(fix) => println!("{tag} {}: {} — fix: {fix}", c.name, c.detail),
            None => println!("{tag} {}: {}", c.name, c.detail),
        }
    }
    i32::from(checks.iter().any(|c| c.level == Level::Fail))
}

pub fn all() -> Vec<Check> {
    let caller = crate::run::caller();
    let mut v = vec![userns()];
    v.extend(helpers());
    v.extend(subids(&caller));
    v.push(device(
        "/dev/fuse",
        "FUSE overlay",
        "a FUSE overlay root",
        "chmod 0666 /dev/fuse (as root; distributions ship it 0666)",
    ));
    v.push(device("/dev/net/tun", "tun device", "slirp4netns/pasta", "chmod 0666 /dev/net/tun (as root)"));
    v.push(kernel_overlay());
    v.push(network_helpers());
    v.push(cgroup());
    v.push(runtime_dir());
    v.push(image_store(&caller));
    v
}

fn read_num(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn userns() -> Check {
    let name = "user namespaces";
    if read_num("/proc/sys/user/max_user_namespaces") == Some(0) {
        return check(
            Level::Fail,
            name,
            "user.max_user_namespaces is 0",
            Some("sysctl -w user.max_user_namespaces=28633 (as root; persist it in /etc/sysctl.d/)".into()),
        );
    }
    if read_num("/proc/sys/kernel/unprivileged_userns_clone") == Some(0) {
        return check(
            Level::Fail,
            name,
            "kernel.unprivileged_userns_clone is 0",
            Some("sysctl -w kernel.unprivileged_userns_clone=1 (as root)".into()),
        );
    }
    if read_num("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == Some(1) {
        return check(Level::Fail, name, "AppArmor restricts unprivileged user namespaces", Some("add an AppArmor profile allowing `userns` for burrow, or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0".into()));
    }
    match probe_in_userns(false) {
        Ok(()) => check(Level::Ok, name, "an unprivileged user namespace can be created", None),
        Err(e) => check(
            Level::Fail,
            name,
            format!("unshare(CLONE_NEWUSER) failed: {e}"),
            Some("check the sysctls above and any seccomp/LSM policy of this session".into()),
        ),
    }
}

fn helpers() -> Vec<Check> {
    ["newuidmap", "newgidmap"]
        .into_iter()
        .map(|h| match idmap::find_helper(h) {
            None => check(
                Level::Warn,
                "id-map helpers",
                format!("{h} not found: single-ID maps only"),
                Some("install the uidmap package".into()),
            ),
            Some(p) => {
                use std::os::unix::fs::PermissionsExt;
                let setuid = std::fs::metadata(&p).map(|m| m.permissions().mode() & 0o4000 != 0).unwrap_or(false);
                let fcaps = rustix::fs::getxattr(&p, "security.capability", &mut [0u8; 64]).is_ok();
                if setuid || fcaps {
                    check(
                        Level::Ok,
                        "id-map helpers",
                        format!("{} ({})", p.display(), if setuid { "setuid" } else { "file capabilities" }),
                        None,
                    )
                } else {
                    check(
                        Level::Warn,
                        "id-map helpers",
                        format!("{} has neither the setuid bit nor file capabilities", p.display()),
                        Some(format!("chmod u+s {} (as root) or reinstall uidmap", p.display())),
                    )
                }
            }
        })
        .collect()
}

/// All ranges of every user in a subid file, for the overlap check.
fn all_ranges(content: &str) -> Vec<(String, IdRange)> {
    content
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (owner, start, count) = (f.next()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?);
            Some((owner.to_string(), IdRange { start, count }))
        })
        .collect()
}

fn subids(caller: &idmap::Caller) -> Vec<Check> {
    let (uid_file, gid_file) = idmap::subid_files();
    [("subordinate uids", uid_file), ("subordinate gids", gid_file)]
        .into_iter()
        .map(|(name, file)| {
            let fix = Some(format!("usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {} (as root, with a range no other user has)", caller.name));
            let mine = match idmap::read_subids(&file, &caller.name, caller.uid) {
                Err(e) => return check(Level::Warn, name, e.to_string(), fix),
                Ok(s) => s.ranges,
            };
            let total: u64 = mine.iter().map(|r| u64::from(r.count)).sum();
            if mine.is_empty() {
                return check(Level::Warn, name, format!("none for {} in {}: single-ID maps only", caller.name, file.display()), fix);
            }
            let others = all_ranges(&std::fs::read_to_string(&file).unwrap_or_default());
            let me = [caller.name.clone(), caller.uid.to_string()];
            let overlap = others.iter().filter(|(o, _)| !me.contains(o)).find(|(_, r)| {
                mine.iter().any(|m| u64::from(m.start) < u64::from(r.start) + u64::from(r.count) && u64::from(r.start) < u64::from(m.start) + u64::from(m.count))
            });
            match overlap {
                Some((o, _)) => check(Level::Warn, name, format!("{} overlaps a range of {o}: their files would be shared", file.display()), fix),
                None if total < 65536 => check(Level::Warn, name, format!("{total} IDs in {}: images need 65536", file.display()), fix),
                None => check(Level::Ok, name, format!("{total} IDs in {}", file.display()), None),
            }
        })
        .collect()
}

/// Where images are stored, whether that filesystem suits them, and what a single-ID map costs images.
fn image_store(caller: &idmap::Caller) -> Check {
    let name = "image store";
    let path = match crate::image::Store::default_path(None) {
        Ok(p) => p,
        Err(e) => return check(Level::Warn, name, e.to_string(), Some("set BURROW_STORE or HOME".into())),
    };
    let existing = path.ancestors().find(|p| p.exists()).unwrap_or(std::path::Path::new("/"));
    #[allow(clippy::unnecessary_cast)]
    let network = rustix::fs::statfs(existing).ok().and_then(|st| crate::image::store::network_fs(st.f_type as i64));
    if let Some(kind) = network {
        return check(
            Level::Warn,
            name,
            format!("{} is on {kind}: slower, and locking needs a lock daemon", path.display()),
            Some("BURROW_STORE=/local/disk/burrow (or --store) on a local filesystem".into()),
        );
    }
    let (uid_file, gid_file) = idmap::subid_files();
    let has = |f: &std::path::Path| {
        idmap::read_subids(f, &caller.name, caller.uid).map(|s| !s.ranges.is_empty()).unwrap_or(false)
    };
    if !(has(&uid_file) && has(&gid_file)) {
        return check(
            Level::Warn,
            name,
            format!(
                "{}: without subordinate IDs every file of an image becomes yours, so images that run as another \
                 user (their USER) cannot start and chown to other IDs fails inside",
                path.display()
            ),
            Some("add subordinate IDs (above), then `burrow rmi` and import or pull the images again".into()),
        );
    }
    check(Level::Ok, name, format!("{} (layers keep their owners through the subordinate IDs)", path.display()), None)
}

fn device(path: &str, name: &'static str, what: &str, fix: &str) -> Check {
    match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(_) => check(Level::Ok, name, format!("{path} is usable"), None),
        Err(e) => check(Level::Warn, name, format!("cannot open {path} ({e}): no {what}"), Some(fix.into())),
    }
}

fn kernel_overlay() -> Check {
    match probe_in_userns(true) {
        Ok(()) => check(Level::Ok, "kernel overlayfs", "mounts in a user namespace", None),
        Err(e) => check(
            Level::Warn,
            "kernel overlayfs",
            format!("not usable in a user namespace ({e}): the FUSE overlay is used"),
            Some("Linux 5.11 or newer with the overlay module".into()),
        ),
    }
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file())).unwrap_or(false)
        || idmap::find_helper(name).is_some()
}

fn network_helpers() -> Check {
    let found: Vec<&str> = ["slirp4netns", "pasta"].into_iter().filter(|h| on_path(h)).collect();
    if found.is_empty() {
        check(
            Level::Warn,
            "user-mode networking",
            "neither slirp4netns nor pasta found: --network none|host only",
            Some("install the slirp4netns or passt package".into()),
        )
    } else {
        check(Level::Ok, "user-mode networking", found.join(", "), None)
    }
}

/// Asks the cgroup stage itself what a run with memory, pids and cpu limits would get (best-effort, so that
/// it answers instead of failing): the manager it would use and each limit it could not enforce.
fn cgroup() -> Check {
    use crate::cgroup::{preflight, Limits, ManagerKind, Request};
    let name = "cgroup v2 limits";
    let limits = Limits { memory: Some(1 << 30), pids: Some(1024), cpus: Some(1.0), ..Limits::default() };
    let req = Request { manager: ManagerKind::Auto, limits, best_effort: true, want_stats: false };
    match preflight(&req) {
        Err(e) => check(Level::Warn, name, e.to_string(), None),
        Ok(plan) if plan.warnings().is_empty() => check(
            Level::Ok,
            name,
            format!("memory, pids and cpu enforceable through the {} manager", plan.manager_name()),
            None,
        ),
        Ok(plan) => check(
            Level::Warn,
            name,
            format!("manager {}: {}", plan.manager_name(), plan.warnings().join("; ")),
            Some("see docs/cgroups.md (a Delegate= drop-in for user@.service, or a unified cgroup v2 host)".into()),
        ),
    }
}

fn runtime_dir() -> Check {
    let name = "XDG_RUNTIME_DIR";
    let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") else {
        return check(Level::Ok, name, "unset: burrow keeps its state in a private 0700 directory under /tmp", None);
    };
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(&dir) {
        Ok(m) if m.uid() == nix::unistd::getuid().as_raw() && m.mode() & 0o077 == 0 => {
            check(Level::Ok, name, format!("{}", Path::new(&dir).display()), None)
        }
        Ok(_) => check(
            Level::Warn,
            name,
            format!("{} is not a 0700 directory of yours", Path::new(&dir).display()),
            Some("unset XDG_RUNTIME_DIR or log in through a session manager".into()),
        ),
        Err(e) => check(
            Level::Warn,
            name,
            format!("{}: {e}", Path::new(&dir).display()),
            Some("unset XDG_RUNTIME_DIR or create it 0700".into()),
        ),
    }
}

/// Forks a child that creates a user namespace (and, with `overlay`, mounts a kernel overlay in it).
fn probe_in_userns(overlay: bool) -> Result<(), String> {
    use crate::sys::{fork, Forked};
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    match fork().map_err(|e| e.to_string())? {
        Forked::Child => {
            let ok = probe_child(overlay, uid.as_raw(), gid.as_raw()).is_ok();
            crate::sys::exit_now(if ok { 0 } else { 1 })
        }
        Forked::Parent(pid) => match nix::sys::wait::waitpid(pid, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(_) => Err(if overlay { "mount -t overlay failed".into() } else { "unshare failed".into() }),
            Err(e) => Err(e.to_string()),
        },
    }
}

fn probe_child(overlay: bool, uid: u32, gid: u32) -> std::io::Result<()> {
    use nix::sched::CloneFlags;
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)?;
    if !overlay {
        return Ok(());
    }
    std::fs::write("/proc/self/setgroups", "deny")?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    use nix::mount::{mount, MsFlags};
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)?;
    mount(Some("tmpfs"), "/tmp", Some("tmpfs"), MsFlags::empty(), None::<&str>)?;
    for d in ["l", "u", "w", "m"] {
        std::fs::create_dir(format!("/tmp/{d}"))?;
    }
    mount(
        Some("overlay"),
        "/tmp/m",
        Some("overlay"),
        MsFlags::empty(),
        Some("lowerdir=/tmp/l,upperdir=/tmp/u,workdir=/tmp/w,userxattr"),
    )?;
    Ok(())
}
