//! A hostile program against the FUSE overlay (issue 12, item 6): while one thread swaps a
//! directory `w/d` of the overlay with a symlink to a directory of the user's on the host, worker
//! threads operate on names under `w/d`. A server that resolves an inode's cached path (or a
//! parent's path plus a name) through `w/d` while it is the symlink acts on the host directory.
//! The host canary (tests/overlay_race/canary.rs) must come out untouched, checked from the host,
//! and the program must not see any of its contents (readlink, getattr, listxattr, readdir, read).
//!
//! Two setups, three variants each (race.c: `write` = open O_TRUNC, chmod, truncate, setxattr,
//! link; `names` = rename, unlink, mkdir/rmdir, mknod, symlink; `reads` = getattr, readlink,
//! listxattr, opendir/readdir, read):
//! - `burrow run --overlay-driver fuse --rootfs R` (R from scripts/mk-busybox-rootfs.sh), the
//!   program inside the container;
//! - `burrow-overlayfs` mounted alone in `unshare -Urm` (tests/overlay_diff/userns.rs), the program
//!   chrooted into the mount point; the same run over kernel overlayfs is the control (the harness
//!   must not report damage where there is none).
//!
//! Environment: `BURROW_RACE_SECS` (10) seconds per race, `BURROW_RACE_THREADS` (4) workers,
//! `BURROW_RACE_HOLD` (0) the swapper's sched_yield()s between cycles; `BURROW_DIFF_FUSE_PROGRAM`
//! another FUSE overlay for the alone setup (e.g. /usr/bin/fuse-overlayfs).

#[path = "overlay_race/canary.rs"]
mod canary;
#[allow(dead_code)]
#[path = "overlay_diff/mounts.rs"]
mod mounts;
#[path = "overlay_race/prog.rs"]
mod prog;
mod support;
#[allow(dead_code)]
#[path = "overlay_diff/userns.rs"]
mod userns;

use canary::Canary;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use support::*;

const CANARY: &str = "BURROW_RACE_CANARY";
const PROG: &str = "BURROW_RACE_PROG";

/// What a race run showed; `Err` lists every sign of an escape.
fn verdict(setup: &str, variant: &str, w: &prog::Watched, canary: &Canary) -> Result<(), String> {
    println!("{setup}, variant {variant}: ran {:.1} s\n{}", w.ran.as_secs_f64(), w.output.trim_end());
    let mut problems = Vec::new();
    if let Some(t) = w.changed_after {
        problems.push(format!("the host canary changed after {:.1} s", t.as_secs_f64()));
    }
    if let Err(e) = canary.check() {
        problems.push(e);
    }
    if w.output.contains("LEAK ") {
        problems.push(String::from("the program saw the host canary's contents (LEAK lines above)"));
    }
    match w.status {
        Some(st) if st.success() || st.code() == Some(3) => {}
        Some(st) => problems.push(format!("the race program ended with {st} (setup failure? output above)")),
        None if w.changed_after.is_some() => {}
        None => problems.push(String::from("the race program did not end in time")),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{setup}, variant {variant}: {}", problems.join("; ")))
    }
}

// ---- burrow run --overlay-driver fuse ----

fn race_in_container(variant: &str) {
    if let Some(reason) = unusable() {
        skip!("{reason}");
    }
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse").is_err() {
        skip!("/dev/fuse is not usable (scripts/ci-setup.sh makes it 0666)");
    }
    let tmp = tempdir();
    let exe = match prog::build(tmp.path()) {
        Ok(p) => p,
        Err(e) => skip!("{e}"),
    };
    let canary = Canary::create(tmp.path()).expect("create the host canary");
    let rootfs = tmp.path().join("rootfs");
    mk_busybox_rootfs(&rootfs);
    std::fs::copy(&exe, rootfs.join("race")).expect("copy the race program into the rootfs");
    let mut args = vec![String::from("/race"), String::from("-"), String::from("/race-w")];
    args.extend(prog::args(&canary.dir, variant));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmd = run_in(&rootfs, &["--overlay-driver", "fuse"], &args);
    let limit = Duration::from_secs(prog::secs() + 60);
    let w = prog::run_watched(cmd, &canary.dir, limit);
    if let Err(e) = verdict("burrow run --overlay-driver fuse", variant, &w, &canary) {
        panic!("{e}");
    }
}

/// The detector itself: a change that was undone (chmod and back, an entry made and removed) must
/// still show, through ctime and the directory's times.
#[test]
fn canary_sees_an_undone_change() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempdir();
    let canary = Canary::create(tmp.path()).expect("create the canary");
    canary.check().expect("an untouched canary");
    let f = canary.dir.join("f");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = canary.check().expect_err("chmod and back must show");
    assert!(e.contains("f: mode=100640") && e.contains("ctime="), "{e}");
    let again = Canary::existing(&canary.dir);
    std::fs::write(canary.dir.join("new"), b"").unwrap();
    std::fs::remove_file(canary.dir.join("new")).unwrap();
    let e = again.check().expect_err("an entry made and removed must show");
    assert!(e.contains(".: mode="), "the directory's line must differ: {e}");
}

#[test]
fn container_write_race_leaves_the_host_untouched() {
    race_in_container("write");
}

#[test]
fn container_names_race_leaves_the_host_untouched() {
    race_in_container("names");
}

#[test]
fn container_reads_race_shows_nothing_of_the_host() {
    race_in_container("reads");
}

// ---- burrow-overlayfs (or kernel overlayfs, the control) mounted alone ----

/// Outer half (the test user, on the host): builds the program and the canary outside the
/// namespace's tmpfs, runs the inner half in `unshare -Urm`, then checks the canary itself.
fn race_alone(test: &str, driver: &str, variant: &str) {
    if userns::is_inner(test) {
        return race_alone_inner(driver, variant);
    }
    if nix::unistd::geteuid().is_root() {
        // Drops to the test user, who comes back here (not root) and makes the canary.
        return userns::run_in_namespace(test, Duration::from_secs(prog::secs() + 120));
    }
    let tmp = tempfile::Builder::new().prefix("burrow-race.").tempdir_in("/tmp").expect("temp dir");
    let exe = match prog::build(tmp.path()) {
        Ok(p) => p,
        Err(e) => return userns::skip(&e),
    };
    let canary = Canary::create(tmp.path()).expect("create the host canary");
    let vars = [(CANARY, canary.dir.as_os_str()), (PROG, exe.as_os_str())];
    let inner =
        std::panic::catch_unwind(|| userns::run_in_namespace_env(test, Duration::from_secs(prog::secs() + 120), &vars));
    if let Err(e) = canary.check() {
        panic!("{driver} overlay alone, variant {variant}, checked from the host: {e}");
    }
    if let Err(p) = inner {
        std::panic::resume_unwind(p);
    }
}

fn race_alone_inner(driver: &str, variant: &str) {
    let work = userns::inner_workdir();
    userns::mount_tmpfs(&work, "mode=0755").expect("tmpfs for the layers");
    let canary_dir = PathBuf::from(std::env::var_os(CANARY).expect("set by the outer half"));
    let exe = PathBuf::from(std::env::var_os(PROG).expect("set by the outer half"));
    let lower = work.join("lower");
    std::fs::create_dir(&lower).expect("lower dir");
    let l = mounts::Layout::new(&work, "o", &[lower]).expect("overlay dirs");
    let fuse = if driver == "kernel" {
        mounts::mount_kernel(&l).expect("mount kernel overlayfs");
        None
    } else {
        Some(mounts::mount_fuse(&userns::fuse_program(), &l, &work.join("fuse.log")).expect("mount the FUSE overlay"))
    };
    // A canary for this side too: the outer half only compares the state before and after.
    let canary = Canary::existing(&canary_dir);
    let mut cmd = Command::new(&exe);
    cmd.arg(&l.mnt).arg("/race-w").args(prog::args(&canary_dir, variant));
    let w = prog::run_watched(cmd, &canary_dir, Duration::from_secs(prog::secs() + 60));
    let r = verdict(&format!("{driver} overlay alone"), variant, &w, &canary);
    match fuse {
        Some(f) => {
            if let Err(e) = f.unmount() {
                println!("note: {e}");
            }
        }
        None => {
            let _ = mounts::unmount(&l.mnt);
        }
    }
    if let Err(e) = r {
        println!("server log: {}", std::fs::read_to_string(work.join("fuse.log")).unwrap_or_default().trim_end());
        panic!("{e}");
    }
}

#[test]
fn alone_write_race_leaves_the_host_untouched() {
    race_alone("alone_write_race_leaves_the_host_untouched", "fuse", "write");
}

#[test]
fn alone_names_race_leaves_the_host_untouched() {
    race_alone("alone_names_race_leaves_the_host_untouched", "fuse", "names");
}

#[test]
fn alone_reads_race_shows_nothing_of_the_host() {
    race_alone("alone_reads_race_shows_nothing_of_the_host", "fuse", "reads");
}

/// The control: kernel overlayfs resolves nothing by path, so the same hostile program must leave
/// the canary untouched there; damage reported here would be the harness's own fault.
#[test]
fn control_kernel_overlay_all_variants_leave_the_host_untouched() {
    race_alone("control_kernel_overlay_all_variants_leave_the_host_untouched", "kernel", "all");
}
