//! Integration tests of the `burrow-overlayfs` binary, run inside `unshare -Urm` as the
//! calling (unprivileged) user: each test mounts a real FUSE overlay over real directories
//! and checks the merged view, the upper layer's on-disk format and the untouched lowers.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_burrow-overlayfs");

fn strict() -> bool {
    std::env::var("BURROW_TEST_STRICT").is_ok_and(|v| v == "1")
}

/// Whether this machine lets us mount FUSE inside a user namespace; prints SKIP otherwise
/// (a failure under BURROW_TEST_STRICT=1).
fn can_run() -> bool {
    let userns = Command::new("unshare").args(["-Urm", "true"]).status().is_ok_and(|s| s.success());
    let fuse = std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse").is_ok();
    if userns && fuse {
        return true;
    }
    let why = if userns { "/dev/fuse is not usable" } else { "unshare -Urm fails" };
    assert!(!strict(), "overlay tests need FUSE in a user namespace: {why}");
    println!("SKIP: {why}");
    false
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("burrow-ovl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::fs::remove_dir_all(&self.0).is_err() {
            // Kernel overlayfs leaves `w/work` with mode 000: remove as root of a namespace.
            let _ = Command::new("unshare").args(["-Ur", "rm", "-rf"]).arg(&self.0).status();
        }
    }
}

/// Runs `script` with `sh -eu` inside a fresh user+mount namespace, in directory `dir`, with
/// `$B` the binary. `mnt` mounts the overlay of `l` (or `$LOWERS`) on `m`; the trap unmounts
/// it so the server exits. Returns stdout; panics with stderr on failure.
fn run_in_ns(dir: &Path, script: &str) -> String {
    run_in_ns_with(dir, &["-Urm"], script)
}

/// As [`run_in_ns`], with other `unshare` flags (e.g. `--map-auto` for more than one ID).
fn run_in_ns_with(dir: &Path, unshare: &[&str], script: &str) -> String {
    let full = format!(
        "cd \"$T\"\n\
         mnt() {{ \"$B\" -o \"lowerdir=${{LOWERS:-l}},upperdir=u,workdir=w\" m; trap 'umount m' EXIT; }}\n\
         {script}"
    );
    let out = Command::new("unshare")
        .args(unshare)
        .args(["sh", "-euc", &full])
        .env("B", BIN)
        .env("T", dir)
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "script failed ({}):\n{script}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Builds the usual fixture: lower `l` (and `l2` beneath it), empty `u`, `w`, `m`.
const FIXTURE: &str = "mkdir -p l/d/sub l2/d l2/only u w m\n\
    printf lower > l/f; printf keep > l/d/k; printf deep > l/d/sub/x\n\
    printf bottom > l2/d/b; printf hidden > l2/f; printf o > l2/only/o\n\
    ln -s f l/link; chmod 0640 l/f\n";

fn lower_digest(dir: &Path) -> String {
    run_in_ns(dir, "find l l2 -exec stat -c '%n %a %s %Y' {} + | sort; cat l/f l/d/k l2/f")
}

#[test]
fn lookup_and_readdir_merge_layers() {
    if !can_run() {
        return;
    }
    let s = Scratch::new("merge");
    let out = run_in_ns(
        &s.0,
        &format!(
            "{FIXTURE}LOWERS=l:l2 mnt\n\
             ls m | tr '\\n' ' '; echo; ls m/d | tr '\\n' ' '; echo; cat m/f; echo; readlink m/link"
        ),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].trim(), "d f link only", "root listing: {out}");
    assert_eq!(lines[1].trim(), "b k sub", "merged dir listing: {out}");
    assert_eq!(lines[2], "lower", "top layer wins: {out}");
    assert_eq!(lines[3], "f");
}

#[test]
fn copy_up_keeps_content_mode_times_xattrs_and_holes() {
    if !can_run() {
        return;
    }
    let s = Scratch::new("copyup");
    let before = {
        run_in_ns(&s.0, FIXTURE);
        run_in_ns(&s.0, "truncate -s 64M l/sparse; printf end >> l/sparse; touch -d @1000000 l/f");
        lower_digest(&s.0)
    };
    let out = run_in_ns(
        &s.0,
        "LOWERS=l:l2 mnt\n\
         printf ' more' >> m/f; stat -c '%a %s' m/f; cat m/f; echo\n\
         touch -d @2000 m/d/k; stat -c '%Y' u/d/k m/d/k\n\
         chmod 0600 m/d/sub/x; stat -c '%a' u/d/sub/x\n\
         printf x | dd of=m/sparse bs=1 seek=10 conv=notrunc 2>/dev/null\n\
         stat -c '%s %b' u/sparse",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "640 10", "mode kept, size grown: {out}");
    assert_eq!(lines[1], "lower more");
    assert_eq!(lines[2], "2000", "utimens copies up: {out}");
    assert_eq!(lines[3], "2000");
    assert_eq!(lines[4], "600", "chmod copies up: {out}");
    let sparse: Vec<u64> = lines[5].split(' ').map(|n| n.parse().unwrap_or(0)).collect();
    assert_eq!(sparse[0], 64 * 1024 * 1024 + 3, "sparse size: {out}");
    assert!(sparse[1] < 1024, "copy-up must keep holes, got {} blocks", sparse[1]);
    assert_eq!(before, lower_digest(&s.0), "lower layers changed");
}

#[test]
fn unlink_and_rmdir_leave_whiteouts_and_recreated_dirs_are_opaque() {
    if !can_run() {
        return;
    }
    let s = Scratch::new("whiteout");
    let out = run_in_ns(
        &s.0,
        &format!(
            "{FIXTURE}LOWERS=l:l2 mnt\n\
             rm m/f; rm -r m/d; test ! -e m/f; test ! -e m/d\n\
             stat -c '%F %t:%T' u/f u/d\n\
             mkdir m/d; ls -A m/d | wc -l\n\
             python3 -c 'import os; print(os.getxattr(\"u/d\", \"user.overlay.opaque\").decode())'"
        ),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "character special file 0:0", "whiteout: {out}");
    assert_eq!(lines[1], "character special file 0:0", "dir whiteout: {out}");
    assert_eq!(lines[2], "0", "recreated dir must not show lower entries: {out}");
    assert_eq!(lines.last().copied(), Some("y"), "opaque xattr: {out}");
}

#[test]
fn rename_files_and_exdev_for_lower_dirs() {
    if !can_run() {
        return;
    }
    let s = Scratch::new("rename");
    let out = run_in_ns(
        &s.0,
        &format!(
            "{FIXTURE}mnt\n\
             perl -e 'rename(\"m/f\", \"m/g\") or die \"$!\\n\"'; cat m/g; echo\n\
             test ! -e m/f; stat -c '%F' u/f\n\
             perl -e 'rename(\"m/d\", \"m/e\") and print \"moved\\n\" or print(($!{{EXDEV}} ? \"EXDEV\" : \"$!\"), \"\\n\")'\n\
             mkdir m/new; touch m/new/a; perl -e 'rename(\"m/new\", \"m/new2\") or die \"$!\\n\"'; ls m/new2"
        ),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "lower", "renamed content: {out}");
    assert_eq!(lines[1], "character special file", "old name whited out: {out}");
    assert_eq!(lines[2], "EXDEV", "lower dir rename: {out}");
    assert_eq!(lines[3], "a", "upper dir rename: {out}");
}

#[test]
fn upper_persists_and_kernel_overlay_reads_it() {
    if !can_run() {
        return;
    }
    let s = Scratch::new("persist");
    run_in_ns(
        &s.0,
        &format!(
            "{FIXTURE}mnt\n\
             echo kept > m/new; rm m/d/k; ln m/new m/hl; ln -s new m/sl; mkfifo m/fifo\n\
             mkdir m/nd"
        ),
    );
    let fuse_view = run_in_ns(&s.0, "mnt\nls -A m m/d | tr '\\n' ' '; cat m/new; stat -c '%h' m/hl; readlink m/sl");
    assert!(fuse_view.contains("kept"), "{fuse_view}");
    assert!(!fuse_view.contains(" k "), "whiteout persisted: {fuse_view}");
    let kernel_view = run_in_ns(
        &s.0,
        "mount -t overlay overlay -o lowerdir=l,upperdir=u,workdir=w,userxattr m 2>/dev/null \
         || { echo SKIP; exit 0; }\n\
         ls -A m m/d | tr '\\n' ' '; cat m/new; stat -c '%h' m/hl; readlink m/sl; umount m",
    );
    if kernel_view.starts_with("SKIP") {
        assert!(!strict(), "kernel overlayfs does not mount in a user namespace here");
        println!("SKIP: kernel overlayfs not available for the cross-driver check");
        return;
    }
    assert_eq!(fuse_view, kernel_view, "kernel overlayfs must show the same tree");
}

#[test]
fn open_fd_survives_copy_up_and_mmap_writes_land() {
    if !can_run() {
        return;
    }
    let s = Scratch::new("mmap");
    let out = run_in_ns(
        &s.0,
        &format!(
            "{FIXTURE}mnt\n\
             exec 3< m/f; printf NEW > m/f; cat <&3; echo; exec 3<&-\n\
             python3 -c 'import mmap; f = open(\"m/d/k\", \"r+b\"); mm = mmap.mmap(f.fileno(), 0); mm[0:2] = b\"KE\"; mm.flush()'\n\
             cat m/d/k; echo\n\
             df -P m | tail -1 | awk '{{print ($2 > 0) ? \"statfs\" : \"nostatfs\"}}'"
        ),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "NEW", "a reader opened before copy-up sees the new data: {out}");
    assert_eq!(lines[1], "KEep");
    assert_eq!(lines[2], "statfs");
}

#[test]
fn unmapped_host_owners_stay_readable_where_mode_allows() {
    if !can_run() {
        return;
    }
    if !Path::new("/etc/passwd").exists() {
        assert!(!strict(), "/etc/passwd is needed as a host-owned lower file");
        println!("SKIP: no /etc/passwd");
        return;
    }
    if rustix::process::geteuid().is_root() {
        // Only an unprivileged caller leaves host root unmapped in `unshare -Ur`.
        println!("SKIP: running as root, host root is mapped in the namespace");
        return;
    }
    let s = Scratch::new("unmapped");
    // /etc is owned by host root, which the single-ID namespace of `unshare -Ur` does not map.
    let out = run_in_ns(
        &s.0,
        "mkdir u w m; LOWERS=/etc mnt\n\
         stat -c '%u' m/passwd; head -c 5 m/passwd | wc -c\n\
         if printf x >> m/passwd 2>/dev/null; then echo written; else echo denied; fi\n\
         test ! -e u/passwd && echo upper-clean",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "65534", "unmapped owner shows as overflow id: {out}");
    assert_eq!(lines[1].trim(), "5", "world-readable file must stay readable: {out}");
    assert_eq!(lines[2], "denied", "mode must still forbid writing: {out}");
    assert_eq!(lines[3], "upper-clean", "a refused write must not copy up: {out}");
}

/// A write by a user without CAP_FSETID clears the set-user-ID bit (kernel rule). Write-only opens bypass the
/// page cache, so the server clears it on FUSE_WRITE_KILL_SUIDGID and must drop the kernel's cached
/// attributes: a mode-only `stat` (statx with STATX_MODE) once still showed 4757.
#[test]
fn a_write_by_another_user_clears_the_set_id_bit() {
    if !can_run() {
        return;
    }
    let mapped = Command::new("unshare").args(["--map-auto", "-Ur", "true"]).status().is_ok_and(|s| s.success());
    if !mapped {
        assert!(!strict(), "unshare --map-auto fails: the test user needs /etc/subuid and /etc/subgid ranges");
        println!("SKIP: unshare --map-auto fails (no subordinate ids)");
        return;
    }
    let s = Scratch::new("setid");
    let out = run_in_ns_with(
        &s.0,
        &["--map-auto", "-Urm"],
        &format!(
            "{FIXTURE}mnt\n\
             chmod 4757 m/d/k; stat -c %a m/d/k\n\
             setpriv --reuid=1000 --regid=1000 --clear-groups sh -c 'printf x >> m/d/k'\n\
             stat -c %a m/d/k; cat m/d/k; echo"
        ),
    );
    assert_eq!(out, "4757\n757\nkeepx\n", "set-user-ID bit after another user's write");
}

#[test]
fn a_removed_file_is_freed_soon_after_the_kernel_forgets_it() {
    if !can_run() {
        return;
    }
    // The server keeps an `O_PATH` handle of a file it created, and closes the handles that
    // the kernel releases in bulk, a few milliseconds later (src/overlay/closer.rs): the last
    // close is what frees a removed file, so it must come without any further request.
    let s = Scratch::new("freed");
    let out = run_in_ns(
        &s.0,
        &format!(
            "{FIXTURE}mnt\n\
             held() {{ ls -l /proc/[0-9]*/fd/ 2>/dev/null | grep -c \"$T/u/big\" || true; }}\n\
             head -c 1048576 /dev/zero > m/big; echo \"before $(held)\"\n\
             rm m/big; i=0\n\
             while [ \"$(held)\" != 0 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done\n\
             echo \"after $(held)\""
        ),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], "before 0", "the server held no handle of the new file, nothing to check: {out}");
    assert_eq!(lines[1], "after 0", "the removed file is still held open by the server after 5 s: {out}");
}
