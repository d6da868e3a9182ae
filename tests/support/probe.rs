//! Runs that must leave nothing behind ([`Probe`]), and the shared read-only trees of scripts/ci-setup.sh, used by
//! tests/failures.rs (as burrow-t1) and tests/nosubids.rs (as burrow-t2).

use super::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A run with its own runtime directory and a marker in the environment of every process it starts, so that
/// what it leaves behind can be found.
pub struct Probe {
    runtime: tempfile::TempDir,
    marker: String,
    mounts_before: String,
}

impl Probe {
    pub fn new(tag: &str) -> Probe {
        let runtime = tempdir();
        std::fs::set_permissions(runtime.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let marker = format!("failures-{tag}-{}", std::process::id());
        Probe { runtime, marker, mounts_before: std::fs::read_to_string("/proc/self/mountinfo").unwrap() }
    }

    /// A probe whose runs join a user-namespace keeper: a first run (in `rootfs`) starts it, so the runs probed
    /// next take the direct launch when they need nothing else (docs/design/launch-sequence.md); without, the
    /// first run of a probe maps its own namespace and has P1.
    pub fn joined(tag: &str, rootfs: &Path) -> Probe {
        let p = Probe::new(tag);
        let o = output(p.prepare(run_in(rootfs, &["--network", "none", "--verbose"], &["true"])));
        assert!(stderr(&o).contains("started the user-namespace keeper"), "no keeper:\n{}", stderr(&o));
        p
    }

    pub fn prepare(&self, mut c: Command) -> Command {
        // A keeper started by a probed run leaves 5 s after its last run.
        c.env("XDG_RUNTIME_DIR", self.runtime.path())
            .env("BURROW_TEST_MARKER", &self.marker)
            .env("BURROW_KEEPER_IDLE", "5");
        c
    }

    /// Runs `c`, checks the exit status and the single line (containing each of `want`), then that nothing is
    /// left. Returns stderr.
    pub fn fails(&self, c: Command, status: i32, want: &[&str]) -> String {
        let o = output(self.prepare(c));
        let err = stderr(&o);
        assert_eq!(code(&o), status, "exit status; stderr:\n{err}");
        assert_eq!(err.lines().count(), 1, "not one line:\n{err}");
        for w in want {
            assert!(err.contains(w), "{w:?} missing:\n{err}");
        }
        for lost in ["sync socket", "EPIPE", "Broken pipe", "Input/output error"] {
            assert!(!err.contains(lost), "the real failure was lost or made up ({lost}):\n{err}");
        }
        self.assert_clean();
        err
    }

    pub fn assert_clean(&self) {
        let entry = format!("BURROW_TEST_MARKER={}", self.marker);
        let left = || with_environ(&entry);
        assert!(eventually(Duration::from_secs(5), || left().is_empty()), "processes left: {:?}", left());
        let state = self.runtime.path().join("burrow");
        // Containers' state directories (the user-namespace keeper's socket and lock outlive a run by design).
        let dirs: Vec<PathBuf> = std::fs::read_dir(&state)
            .map(|d| d.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(dirs.is_empty(), "state directories left: {dirs:?}");
        assert_eq!(std::fs::read_to_string("/proc/self/mountinfo").unwrap(), self.mounts_before, "host mounts changed");
    }
}

pub fn with_environ(entry: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let pids = std::fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse().ok());
    pids.filter(|pid: &i32| {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        *pid != me && env.split(|b| *b == 0).any(|v| v == entry.as_bytes())
    })
    .collect()
}

/// The shared trees made by scripts/ci-setup.sh that the caller does not own (read-only to it).
fn foreign_trees() -> Option<Vec<PathBuf>> {
    let me = nix::unistd::getuid().as_raw();
    let base = Path::new("/var/lib/burrow-ci");
    let trees: Vec<PathBuf> = std::fs::read_dir(base)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("shared-rootfs")))
        .filter(|p| std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(p).unwrap()) != me)
        .collect();
    (trees.len() >= 2).then_some(trees)
}

/// Runs the shared trees copy-on-write with each driver and the default network; nothing reaches the trees.
/// Shared with tests/nosubids.rs (as burrow-t2).
pub fn shared_trees_run_copy_on_write() {
    let Some(trees) = foreign_trees() else {
        crate::skip!("the shared trees under /var/lib/burrow-ci are missing (run scripts/ci-setup.sh as root)");
    };
    let script = "cat /etc/hostname; grep -q burrow /etc/hosts && echo hosts; test -d /proc/1 && echo proc; \
                  touch /etc/new /new /tmp/t && echo wrote; mkdir -p /data/x && echo mkdir; \
                  test -d /usr/lib/vol && test -L /lib && echo lib";
    // Without subordinate IDs, silence the single-ID notice so that each failure is one line.
    let single: &[&str] = if subuid_start().is_none() { &["--userns=single"] } else { &[] };
    for tree in &trees {
        let listing = || Command::new("ls").arg("-laR").arg(tree).output().unwrap().stdout;
        let before = listing();
        for driver in ["kernel", "fuse"] {
            let p = Probe::new(&format!("shared-{driver}"));
            let data = tempdir();
            let vol = format!("{}:/data/vol", data.path().display());
            // Through the tree's own /lib -> usr/lib: made under /usr/lib in the layer.
            let lib = format!("{}:/lib/vol", data.path().display());
            let args = [single, &["--overlay-driver", driver, "-v", &vol, "-v", &lib]].concat();
            let c = run_in(tree, &args, &["sh", "-c", script]);
            let o = output(p.prepare(c));
            let out = expect(&o, 0);
            assert_eq!(
                out,
                "burrow\nhosts\nproc\nwrote\nmkdir\nlib\n",
                "{} with {driver}: {}",
                tree.display(),
                stderr(&o)
            );
            p.assert_clean();
            let c = run_in(tree, &[single, &["--rootfs-rw"]].concat(), &["true"]);
            p.fails(c, 125, &["--rootfs-rw", "drop --rootfs-rw"]);
        }
        assert_eq!(listing(), before, "{} changed", tree.display());
    }
}
