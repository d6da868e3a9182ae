//! The non-random overlay tests: cross-driver upper directories, ENOSPC on a small upper,
//! and a FUSE server that dies under a mount.

use super::exec::Exec;
use super::harness::{check_lowers, fresh_layers, mount_second, Env};
use super::lower::fingerprint;
use super::mounts::{mount_fuse, mount_kernel, unmount, Layout};
use super::ops::random_ops;
use super::rng::{pattern, Rng};
use super::tree::{diff_lines, snapshot};
use super::userns::mount_tmpfs;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::time::Duration;

fn apply_all(mnt: &Path, seed: u64, dir_nlink: bool) {
    let mut rng = Rng::new(seed);
    let count = rng.range(5, 40) as usize;
    let mut ex = Exec::new(mnt, dir_nlink);
    for op in random_ops(&mut rng, count) {
        let _ = ex.apply(&op);
    }
}

fn with_work(l: &Layout, base: &Path, name: &str) -> Result<Layout, String> {
    let work = base.join(name);
    fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    Ok(Layout { lowers: l.lowers.clone(), upper: l.upper.clone(), work, mnt: l.mnt.clone() })
}

/// An upper written through one driver, mounted by the other, shows the same tree.
pub fn cross_driver(env: &Env, seed: u64) -> Result<(), String> {
    let base = env.work.join("cross");
    let (lowers, prints) = fresh_layers(&base, seed)?;
    let e = |e: std::io::Error| e.to_string();

    let a = Layout::new(&base, "a", &lowers).map_err(e)?;
    let second = mount_second(env, &a)?;
    apply_all(&a.mnt, seed, env.dir_nlink);
    let written = snapshot(&a.mnt, env.dir_nlink);
    second.unmount()?;
    let a2 = with_work(&a, &base, "a-work2")?;
    mount_kernel(&a2)?;
    let read = snapshot(&a2.mnt, env.dir_nlink);
    unmount(&a2.mnt)?;
    if written != read {
        return Err(format!(
            "upper written by FUSE, read by kernel:\n{}",
            diff_lines("fuse", &written, "kernel", &read)
        ));
    }

    let b = Layout::new(&base, "b", &lowers).map_err(e)?;
    mount_kernel(&b)?;
    apply_all(&b.mnt, seed, env.dir_nlink);
    let written = snapshot(&b.mnt, env.dir_nlink);
    unmount(&b.mnt)?;
    let b2 = with_work(&b, &base, "b-work2")?;
    let second = mount_second(env, &b2)?;
    let read = snapshot(&b2.mnt, env.dir_nlink);
    second.unmount()?;
    if written != read {
        return Err(format!(
            "upper written by kernel, read by FUSE:\n{}",
            diff_lines("kernel", &written, "fuse", &read)
        ));
    }
    check_lowers(&lowers, &prints)
}

fn is_enospc(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc_enospc())
}

fn libc_enospc() -> i32 {
    nix::errno::Errno::ENOSPC as i32
}

/// Writes 2 MiB into a new file; the 1 MiB upper must make it fail with ENOSPC.
fn fill_new_file(p: &Path) -> Result<(), String> {
    let mut f = fs::File::create(p).map_err(|e| format!("create {}: {e}", p.display()))?;
    let chunk = pattern(7, 64 * 1024);
    for _ in 0..32 {
        if let Err(e) = f.write_all(&chunk) {
            return if is_enospc(&e) { Ok(()) } else { Err(format!("write {}: {e}, expected ENOSPC", p.display())) };
        }
    }
    match f.sync_all() {
        Err(e) if is_enospc(&e) => Ok(()),
        Err(e) => Err(format!("fsync {}: {e}, expected ENOSPC", p.display())),
        Ok(()) => Err(format!("2 MiB written to {} on a 1 MiB upper without ENOSPC", p.display())),
    }
}

/// Copy-up of a 2 MiB lower file into the full-size-1 MiB upper must fail with ENOSPC.
fn copy_up_big(p: &Path) -> Result<(), String> {
    let r = fs::OpenOptions::new().append(true).open(p).and_then(|mut f| {
        f.write_all(b"more")?;
        f.sync_all()
    });
    match r {
        Err(e) if is_enospc(&e) => Ok(()),
        Err(e) => Err(format!("copy-up of {}: {e}, expected ENOSPC", p.display())),
        Ok(()) => Err(format!("copy-up of 2 MiB {} into a 1 MiB upper succeeded", p.display())),
    }
}

pub fn enospc(env: &Env) -> Result<(), String> {
    let base = env.work.join("enospc");
    let lower = base.join("lower");
    fs::create_dir_all(&lower).map_err(|e| e.to_string())?;
    fs::write(lower.join("big"), pattern(1, 2 << 20)).map_err(|e| e.to_string())?;
    fs::write(lower.join("small"), b"small file\n").map_err(|e| e.to_string())?;
    let before = fingerprint(&lower).map_err(|e| e.to_string())?;
    for driver in ["kernel", "fuse"] {
        let small = base.join(format!("{driver}-small"));
        fs::create_dir_all(&small).map_err(|e| e.to_string())?;
        mount_tmpfs(&small, "size=1m,mode=0755")?;
        let l = Layout::new(&small, "o", std::slice::from_ref(&lower)).map_err(|e| e.to_string())?;
        let second = if driver == "kernel" { mount_kernel(&l).map(|_| None) } else { mount_second(env, &l).map(Some) };
        let r = second.as_ref().map_err(|e| e.clone()).and_then(|_| {
            fill_new_file(&l.mnt.join("new"))?;
            fs::remove_file(l.mnt.join("new")).map_err(|e| format!("unlink after ENOSPC: {e}"))?;
            copy_up_big(&l.mnt.join("big"))?;
            // The mount stays usable after the errors.
            match fs::read(l.mnt.join("small")) {
                Ok(d) if d == b"small file\n" => Ok(()),
                other => Err(format!("reading small after ENOSPC: {other:?}")),
            }
        });
        match second {
            Ok(Some(s)) => s.unmount()?,
            Ok(None) => unmount(&l.mnt)?,
            Err(_) => {}
        }
        unmount(&small)?;
        r.map_err(|e| format!("{driver} driver: {e}"))?;
    }
    if fingerprint(&lower).map_err(|e| e.to_string())? != before {
        return Err(String::from("lower layer changed by the ENOSPC runs"));
    }
    Ok(())
}

/// Kills the FUSE server under a mount: every request must fail (ENOTCONN), none may hang.
pub fn killed_server(env: &Env) -> Result<(), String> {
    let base = env.work.join("kill");
    let lower = base.join("lower");
    fs::create_dir_all(&lower).map_err(|e| e.to_string())?;
    fs::write(lower.join("f"), b"data").map_err(|e| e.to_string())?;
    let l = Layout::new(&base, "o", std::slice::from_ref(&lower)).map_err(|e| e.to_string())?;
    let mut fuse = mount_fuse(&env.fuse_prog, &l, &base.join("fuse.log"))?;
    let seen = fs::read(l.mnt.join("f")).map_err(|e| format!("read before kill: {e}"))?;
    if seen != b"data" {
        return Err(format!("read before kill gave {seen:?}"));
    }
    fuse.child.kill().map_err(|e| format!("kill FUSE server: {e}"))?;
    let _ = fuse.child.wait();
    let mnt = l.mnt.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    // In a thread: a hang must be observed as a timeout, not hang the test.
    std::thread::spawn(move || {
        let kinds = [
            fs::symlink_metadata(mnt.join("never-looked-up")).map(|_| ()),
            fs::read_dir(&mnt).map(|_| ()),
            fs::File::create(mnt.join("new")).map(|_| ()),
        ];
        let _ = tx.send(kinds.map(|r| r.map_err(|e| (e.kind(), e.raw_os_error()))));
    });
    let results = rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| String::from("a request hung after the FUSE server was killed"))?;
    let _ = unmount(&l.mnt);
    let enotconn = nix::errno::Errno::ENOTCONN as i32;
    for (what, r) in ["lstat", "opendir", "create"].iter().zip(results) {
        match r {
            Err((_, Some(e))) if e == enotconn => {}
            Err((ErrorKind::NotConnected, _)) => {}
            other => return Err(format!("{what} after the server died gave {other:?}, expected ENOTCONN")),
        }
    }
    Ok(())
}
