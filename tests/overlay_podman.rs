//! podman (Debian's, rootless) with `mount_program` set to the FUSE overlay under test runs
//! a container from a locally imported busybox image, writes files in it, and they are seen
//! in the container's upper layer (issue 3).
//!
//! Runs as an unprivileged user (started as root it drops to `BURROW_TEST_USER`, default
//! burrow-t1) with its own HOME, XDG dirs, storage.conf and containers.conf in a temp dir,
//! and `runc` (crun refuses this machine's hybrid cgroup layout). The FUSE program comes from
//! `BURROW_PODMAN_MOUNT_PROGRAM` (default: the built burrow-overlayfs;
//! `/usr/bin/fuse-overlayfs` works).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn skip(reason: &str) {
    if std::env::var("BURROW_TEST_STRICT").as_deref() == Ok("1") {
        panic!("BURROW_TEST_STRICT=1 and a requirement is missing: {reason}");
    }
    println!("SKIP: {reason}");
}

fn mount_program() -> PathBuf {
    match std::env::var_os("BURROW_PODMAN_MOUNT_PROGRAM") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_burrow-overlayfs")),
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.exists())
}

/// A podman whose every piece of state lives in one temp dir.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new(prog: &Path) -> Podman {
        let dir = tempfile::Builder::new().prefix("burrow-podman.").tempdir_in("/tmp").expect("temp dir");
        let d = dir.path();
        for sub in ["home", "config", "data", "run", "storage", "runroot"] {
            std::fs::create_dir(d.join(sub)).expect("podman state dir");
        }
        let storage = format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/storage\"\nrunroot = \"{0}/runroot\"\n\
             [storage.options.overlay]\nmount_program = \"{1}\"\n",
            d.display(),
            prog.display()
        );
        std::fs::write(d.join("storage.conf"), storage).expect("storage.conf");
        let engine = "[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n";
        std::fs::write(d.join("containers.conf"), engine).expect("containers.conf");
        Podman { dir }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("podman");
        c.args(args)
            .env("HOME", d.join("home"))
            .env("XDG_CONFIG_HOME", d.join("config"))
            .env("XDG_DATA_HOME", d.join("data"))
            .env("XDG_RUNTIME_DIR", d.join("run"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().expect("run podman");
        assert!(
            out.status.success(),
            "podman {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn stdout(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.run(args).stdout).to_string()
    }
}

impl Drop for Podman {
    /// Storage holds files owned by subordinate ids: only podman itself can remove them.
    /// Then the rootless pause process (it outlives podman) goes.
    fn drop(&mut self) {
        let pause = std::fs::read_to_string(self.dir.path().join("run/libpod/tmp/pause.pid")).ok();
        let _ = self.cmd(&["system", "reset", "-f"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if let Some(pid) = pause.and_then(|p| p.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A busybox-static root filesystem as a tarball, made at test time.
fn busybox_tarball(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).expect("rootfs/bin");
    for d in ["etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).expect("rootfs dir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "cat", "echo", "ls", "mkdir", "grep", "rm", "stat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("applet link");
    }
    std::fs::write(root.join("etc/in-image"), "from the image\n").expect("image file");
    let tar = dir.join("busybox.tar");
    let st = Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().expect("tar");
    assert!(st.success(), "tar of the busybox rootfs failed");
    tar
}

fn as_test_user(test: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        return false;
    }
    let user = std::env::var("BURROW_TEST_USER").unwrap_or_else(|_| String::from("burrow-t1"));
    let Some(u) = nix::unistd::User::from_name(&user).ok().flatten() else {
        skip(&format!("running as root and test user {user} does not exist"));
        return true;
    };
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("setpriv")
        .args(["--reuid", &user, "--regid", &user, "--init-groups"])
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("HOME", &u.dir)
        .env("BURROW_PODMAN_MOUNT_PROGRAM", mount_program())
        .output()
        .expect("setpriv");
    println!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{test} as {user} failed");
    true
}

#[test]
fn podman_runs_a_container_on_the_fuse_overlay() {
    if as_test_user("podman_runs_a_container_on_the_fuse_overlay") {
        return;
    }
    let prog = mount_program();
    if which("podman").is_none() || which("runc").is_none() || !Path::new("/bin/busybox").exists() {
        return skip("podman, runc or busybox-static is not installed");
    }
    if !prog.exists() {
        return skip(&format!("mount program {} not found", prog.display()));
    }
    let pm = Podman::new(&prog);
    let tar = busybox_tarball(pm.dir.path());
    pm.run(&["import", tar.to_str().expect("utf-8 path"), "localhost/burrow-bb:test"]);
    let script = "echo hello > /f && mkdir /d && echo x > /d/y && rm /etc/in-image \
                  && [ ! -e /etc/in-image ] && cat /f /d/y && grep ' / ' /proc/mounts";
    let out =
        pm.stdout(&["run", "--name", "c1", "--network", "none", "localhost/burrow-bb:test", "/bin/sh", "-c", script]);
    assert!(out.starts_with("hello\nx\n"), "container output: {out}");
    // The container's root must be the FUSE mount program's, not a kernel overlay.
    let root_line = out.lines().nth(2).unwrap_or_default();
    assert!(
        root_line.split(' ').nth(2).unwrap_or_default().starts_with("fuse"),
        "root is not a FUSE mount: {root_line}"
    );

    let diff = pm.stdout(&["diff", "c1"]);
    for want in ["A /f", "A /d/y", "D /etc/in-image"] {
        assert!(diff.lines().any(|l| l == want), "podman diff lacks `{want}`:\n{diff}");
    }
    // Reading back through the mount program after the container is gone.
    let export = pm.dir.path().join("c1.tar");
    pm.run(&["export", "-o", export.to_str().expect("utf-8 path"), "c1"]);
    let out = Command::new("tar").arg("-xOf").arg(&export).arg("f").output().expect("tar -x");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n", "file f in the exported container");
    let list = Command::new("tar").arg("-tf").arg(&export).output().expect("tar -t");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(!list.lines().any(|l| l.trim_start_matches("./") == "etc/in-image"), "deleted file still exported");
    // The image itself is unchanged: a second container sees the original file.
    let out = pm.stdout(&["run", "--rm", "--network", "none", "localhost/burrow-bb:test", "/bin/cat", "/etc/in-image"]);
    assert_eq!(out, "from the image\n");
    pm.run(&["rm", "-f", "c1"]);
}
