//! The host-root sandbox's `$HOME`: copy-on-write by default, so a sandboxed program writes its caches but
//! cannot edit `~/.bashrc` or `~/.ssh`; `--home rw|ro|cow|none` chooses; the working directory stays writable
//! unless it is `$HOME` or holds it. Each protection is shown to be real by the weakened `--home rw`, which
//! does reach the host.

use crate::skip;
use crate::support::*;
use std::path::{Path, PathBuf};

fn usable() -> Option<String> {
    if let Some(reason) = unusable() {
        return Some(reason);
    }
    if subuid_start().is_none() {
        return Some("the caller has no /etc/subuid range (run as burrow-t1)".into());
    }
    None
}

/// A home of its own for one test, inside the caller's real home (so it is reached the way a real one is,
/// through the host root's layout), with a ~/.bashrc and a ~/.ssh.
struct FakeHome {
    dir: tempfile::TempDir,
}

impl FakeHome {
    fn new() -> FakeHome {
        let real = std::env::var_os("HOME").map(PathBuf::from).expect("HOME");
        let dir = tempfile::Builder::new().prefix("burrow-home.").tempdir_in(real).unwrap();
        std::fs::write(dir.path().join(".bashrc"), "# the user's own\n").unwrap();
        std::fs::create_dir(dir.path().join(".ssh")).unwrap();
        std::fs::write(dir.path().join(".ssh/authorized_keys"), "ssh-ed25519 AAAA mine\n").unwrap();
        FakeHome { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    fn run(&self, args: &[&str], script: &str, cwd: &Path) -> std::process::Output {
        let mut c = burrow();
        c.env("HOME", self.path()).current_dir(cwd).arg("run").args(args).args(["--network", "none", "--"]);
        c.args(["sh", "-c", script]);
        output(c)
    }

    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.path().join(rel)).ok()
    }

    fn untouched(&self) {
        assert_eq!(self.read(".bashrc").as_deref(), Some("# the user's own\n"), "~/.bashrc reached the host");
        assert_eq!(self.read(".ssh/authorized_keys").as_deref(), Some("ssh-ed25519 AAAA mine\n"), "~/.ssh reached");
        assert!(!self.path().join(".cache").exists(), "a cache reached the host");
    }
}

const EDIT: &str = "echo evil >> ~/.bashrc && echo 'ssh-rsa evil' >> ~/.ssh/authorized_keys && \
                    mkdir -p ~/.cache/app && echo data > ~/.cache/app/c && tail -n1 ~/.bashrc && cat ~/.cache/app/c";

#[test]
fn the_default_sandbox_cannot_edit_the_real_home() {
    if let Some(reason) = usable() {
        skip!("{reason}");
    }
    let home = FakeHome::new();
    let o = home.run(&[], EDIT, Path::new("/"));
    // Inside, the writes succeed (programs keep working)...
    assert_eq!(expect(&o, 0), "evil\ndata\n", "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    // ...and nothing reaches the host.
    home.untouched();
    // The weakened configuration does reach it: the test above could have failed.
    let o = home.run(&["--home", "rw"], EDIT, Path::new("/"));
    expect(&o, 0);
    assert_eq!(home.read(".bashrc").as_deref(), Some("# the user's own\nevil\n"));
    assert!(home.read(".ssh/authorized_keys").unwrap().contains("ssh-rsa evil"));
}

#[test]
fn the_callers_real_home_is_protected_too() {
    if let Some(reason) = usable() {
        skip!("{reason}");
    }
    let real = PathBuf::from(std::env::var_os("HOME").unwrap());
    // Names only, without the other tests' own homes (they run in parallel in the same directory).
    let snapshot = || {
        let mut names: Vec<_> = std::fs::read_dir(&real)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("burrow-home."))
            .collect();
        names.sort();
        names
    };
    let before = snapshot();
    let bashrc = std::fs::read(real.join(".bashrc")).ok();
    let mut c = burrow();
    c.args(["run", "--network", "none", "--", "sh", "-c", "echo evil >> ~/.bashrc && touch ~/burrow-escaped"]);
    expect(&output(c), 0);
    assert_eq!(std::fs::read(real.join(".bashrc")).ok(), bashrc, "the real ~/.bashrc changed");
    assert!(!real.join("burrow-escaped").exists(), "a file reached the real home");
    assert_eq!(snapshot(), before);
}

#[test]
fn read_only_and_hidden_homes() {
    if let Some(reason) = usable() {
        skip!("{reason}");
    }
    let home = FakeHome::new();
    let o = home.run(&["--home", "ro"], "cat ~/.bashrc; touch ~/x 2>/dev/null || echo refused", Path::new("/"));
    assert_eq!(expect(&o, 0), "# the user's own\nrefused\n");
    let o =
        home.run(&["--home", "none"], "ls -A ~ | wc -l; echo c > ~/.cache-file && cat ~/.cache-file", Path::new("/"));
    assert_eq!(expect(&o, 0), "0\nc\n", "{}", stderr(&o));
    assert!(!home.path().join(".cache-file").exists());
    let o = home.run(&["--home", "cow"], EDIT, Path::new("/"));
    expect(&o, 0);
    home.untouched();
    // A read-only root keeps a copy-on-write home: programs still write their caches.
    let o = home.run(&["--read-only"], &format!("{EDIT}; touch /usr/x 2>/dev/null || echo usr-ro"), Path::new("/"));
    assert_eq!(expect(&o, 0), "evil\ndata\nusr-ro\n", "{}", stderr(&o));
    home.untouched();
}

#[test]
fn a_working_directory_inside_home_stays_writable() {
    if let Some(reason) = usable() {
        skip!("{reason}");
    }
    let home = FakeHome::new();
    let proj = home.path().join("proj");
    std::fs::create_dir(&proj).unwrap();
    let o = home.run(&[], "touch ./built && echo evil >> ~/.bashrc && pwd", &proj);
    assert_eq!(expect(&o, 0), format!("{}\n", proj.display()));
    assert!(proj.join("built").exists(), "the working directory's write did not reach the host");
    assert_eq!(home.read(".bashrc").as_deref(), Some("# the user's own\n"));
}

#[test]
fn a_working_directory_that_is_home_is_not_written_through_and_says_so() {
    if let Some(reason) = usable() {
        skip!("{reason}");
    }
    let home = FakeHome::new();
    let o = home.run(&[], "touch ./here && echo evil >> ~/.bashrc && echo ok", &home.path());
    assert_eq!(expect(&o, 0), "ok\n");
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("holds $HOME") && err.contains("--home rw"), "{err}");
    assert!(!home.path().join("here").exists());
    home.untouched();
}

#[test]
fn a_keep_id_payload_writes_at_the_top_of_its_home_and_upper_keeps_the_layer() {
    if let Some(reason) = usable() {
        skip!("{reason}");
    }
    let home = FakeHome::new();
    let o = home.run(&["--userns", "keep-id"], "id -u; touch ~/top && echo wrote", Path::new("/"));
    let uid = nix::unistd::getuid().as_raw();
    assert_eq!(expect(&o, 0), format!("{uid}\nwrote\n"), "{}", stderr(&o));
    assert!(!home.path().join("top").exists());
    // --upper keeps the home's layer across runs, away from the real home.
    let keep = tempdir();
    let upper = keep.path().join("state");
    let arg = upper.to_str().unwrap();
    expect(&home.run(&["--upper", arg], "echo kept > ~/.cache-kept", Path::new("/")), 0);
    let o = home.run(&["--upper", arg], "cat ~/.cache-kept", Path::new("/"));
    assert_eq!(expect(&o, 0), "kept\n", "{}", stderr(&o));
    assert!(upper.join("upper/.burrow-home/.cache-kept").exists());
    assert!(!home.path().join(".cache-kept").exists());
}

#[test]
fn home_with_a_rootfs_is_refused_in_one_line() {
    if let Some(reason) = usable() {
        skip!("{reason}");
    }
    let r = Rootfs::new();
    let o = output(run_in(r.path(), &["--home", "ro"], &["true"]));
    expect(&o, 125);
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--home applies to the host-root sandbox"), "{err}");
}
