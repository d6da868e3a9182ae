//! Integration tests for a user WITHOUT subordinate IDs (scripts/test.sh runs this binary as burrow-t2).

#[path = "support/registry.rs"]
mod reg;
mod support;
use support::*;

#[test]
fn single_id_fallback_with_one_notice_line() {
    if let Some(reason) = unusable() {
        skip!("{reason}");
    }
    if subuid_start().is_some() {
        skip!("the caller has subordinate IDs; run as a user without any (burrow-t2)");
    }
    let r = Rootfs::new();
    let o = output(run_in(
        r.path(),
        &[],
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map; id -u; touch /tmp/f; chown 1000 /tmp/f 2>/dev/null || echo chown-failed",
        ],
    ));
    let out = expect(&o, 0);
    let uid = nix::unistd::getuid().as_raw().to_string();
    let first: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(first, ["0", uid.as_str(), "1"]);
    assert!(out.ends_with("0\nchown-failed\n"), "{out}");
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no subordinate IDs") && err.contains("chown"), "{err}");
    // Asking for the single map explicitly is silent.
    let o = output(run_in(r.path(), &["--userns=single"], &["true"]));
    expect(&o, 0);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    // And an unmapped --user is refused before anything starts.
    let o = output(run_in(r.path(), &["--user", "1000"], &["true"]));
    expect(&o, 125);
    assert!(stderr(&o).contains("uid 1000 is not mapped"), "{}", stderr(&o));
}

/// Shared trees owned by root and by another user, read-only to a caller without subordinate IDs, run
/// copy-on-write (single-ID map: every foreign owner is the overflow ID inside).
#[test]
fn shared_read_only_trees_run_copy_on_write_without_subids() {
    if let Some(reason) = unusable() {
        skip!("{reason}");
    }
    if subuid_start().is_some() {
        skip!("the caller has subordinate IDs; run as a user without any (burrow-t2)");
    }
    support::probe::shared_trees_run_copy_on_write();
}

/// Without subordinate IDs there are no helpers to save: no keeper is started or looked for.
#[test]
fn no_keeper_without_subordinate_ids() {
    if let Some(reason) = unusable() {
        skip!("{reason}");
    }
    if subuid_start().is_some() {
        skip!("the caller has subordinate IDs; run as a user without any (burrow-t2)");
    }
    let r = Rootfs::new();
    let runtime = tempdir();
    std::fs::set_permissions(runtime.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    for _ in 0..2 {
        let mut c = run_in(r.path(), &["--verbose", "--network", "none", "--userns-keeper=on"], &["true"]);
        c.env("XDG_RUNTIME_DIR", runtime.path());
        let o = output(c);
        expect(&o, 0);
        assert!(!stderr(&o).contains("keeper"), "{}", stderr(&o));
    }
    assert!(!runtime.path().join("burrow/keeper-1.sock").exists(), "a keeper socket was made");
    let dir = path_str(&runtime.path().join("burrow"));
    let keepers = std::fs::read_dir("/proc").unwrap().flatten().filter(|e| {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline).contains("__keeper") && String::from_utf8_lossy(&cmdline).contains(&dir)
    });
    assert_eq!(keepers.count(), 0, "a keeper was started");
}

#[test]
fn a_user_without_subordinate_ids_imports_and_runs_images() {
    if let Some(reason) = unusable() {
        skip!("{reason}");
    }
    if subuid_start().is_some() {
        skip!("the caller has subordinate IDs; run as a user without any (burrow-t2)");
    }
    use support::oci::{self, Comp, Layer, TarBuilder};
    let t = tempdir();
    let store = t.path().join("store");
    let r = Rootfs::new();
    let top = TarBuilder::default()
        .dir("data", 0o755, 1000, 1000)
        .file("data/mine", b"m", 0o640, 1000, 1000)
        .file("data/su", b"s", 0o4755, 0, 0)
        .hardlink("data/su-link", "data/su")
        .file(".wh.home", b"", 0o644, 0, 0)
        .finish();
    let layers = [Layer { tar: oci::tar_of_dir(r.path()), comp: Comp::Gzip }, Layer { tar: top, comp: Comp::Zstd }];
    let layout = t.path().join("app");
    oci::write_layout(
        &layout,
        "1",
        &layers,
        serde_json::json!({"Cmd": ["/bin/sh", "-c", "id -u; ls /home 2>&1 | wc -l"]}),
    );
    let cmd = |args: &[&str]| {
        let mut c = burrow();
        c.args(args).env("BURROW_STORE", &store);
        c
    };
    let o = output({
        let mut c = cmd(&["import"]);
        c.arg(&layout);
        c
    });
    expect(&o, 0);
    // The owners cannot be kept, and burrow says so once for the layer.
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("2 entries owned by other users or groups became root's"), "{err}");
    let o = output(cmd(&["run", "localhost/app:1"]));
    assert_eq!(expect(&o, 0), "0\n1\n");
    let out = expect(
        &output(cmd(&[
            "run",
            "--userns=single",
            "localhost/app:1",
            "stat",
            "-c",
            "%u %a %h",
            "/data/mine",
            "/data/su",
        ])),
        0,
    );
    assert_eq!(out, "0 640 1\n0 4755 2\n");
    // An image user other than root does not exist here: refused before anything starts.
    let o = output(cmd(&["run", "-u", "1000", "localhost/app:1"]));
    expect(&o, 125);
    assert!(stderr(&o).contains("uid 1000 is not mapped"), "{}", stderr(&o));
    let o = output(cmd(&["rmi", "localhost/app:1"]));
    expect(&o, 0);
    assert_eq!(std::fs::read_dir(store.join("layers")).unwrap().count(), 0);
}

#[test]
fn no_subids_user_pulls_and_runs_an_image() {
    if let Some(reason) = unusable().or_else(reg::registry_unusable) {
        skip!("{reason}");
    }
    if subuid_start().is_some() {
        skip!("the caller has subordinate IDs; run as a user without any (burrow-t2)");
    }
    let registry = reg::Registry::start(reg::Auth::None);
    let t = tempdir();
    let mut l = reg::Layout::new(&t.path().join("oci"));
    let tree = Rootfs::new();
    let base = l.layer(&[reg::Entry::Tree(tree.path().to_path_buf())], reg::Compression::Gzip);
    let extra = l.layer(&[reg::Entry::File("etc/motd", b"from the registry\n".to_vec())], reg::Compression::Zstd);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let m = l.image(&[base, extra], arch, &["cat", "/etc/motd"]);
    l.tag(m, "1");
    registry.push(&l.dir, "1", "nosub/bb");
    let store = t.path().join("store");
    let image = format!("{}/nosub/bb:1", registry.host());
    let mut c = burrow();
    c.args(["pull", "--tls-verify=false", "--store"]).arg(&store).arg(&image);
    expect(&wait_output(spawn(c), std::time::Duration::from_secs(240)), 0);
    let mut c = burrow();
    c.args(["run", "--network", "none", "--pull=never", "--store"]).arg(&store).arg(&image);
    let o = wait_output(spawn(c), std::time::Duration::from_secs(240));
    assert_eq!(expect(&o, 0), "from the registry\n");
    let mut c = burrow();
    c.args(["run", "--network", "none", "--pull=never", "--store"]).arg(&store).arg(&image).args(["id", "-u"]);
    assert_eq!(expect(&wait_output(spawn(c), std::time::Duration::from_secs(240)), 0), "0\n");
}

fn spawn(mut c: std::process::Command) -> std::process::Child {
    c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    c.spawn().expect("spawn burrow")
}

/// A single-ID map needs no helper and no process outside the container to write it: burrow maps a namespace
/// of its own and forks init as its only child (the direct launch, docs/design/launch-sequence.md), and a
/// failure in the container still reaches the user as one line, leaving nothing behind.
#[test]
fn a_run_without_subids_forks_init_alone() {
    if let Some(reason) = unusable() {
        skip!("{reason}");
    }
    if subuid_start().is_some() {
        skip!("the caller has subordinate IDs; run as a user without any (burrow-t2)");
    }
    use std::io::{BufRead, Write};
    let r = Rootfs::new();
    let mut c = run_in(r.path(), &["-i", "--network", "none"], &["sh", "-c", "echo ready; read x"]);
    c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = Reaped(c.spawn().unwrap());
    let mut lines = std::io::BufReader::new(child.0.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let burrow = child.0.id();
    let children = children(burrow);
    assert_eq!(children.len(), 1, "burrow's children: {children:?}");
    assert!(is_ns_init(children[0]), "burrow's child {} is not init", children[0]);
    let map = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    let uid = nix::unistd::getuid().as_raw().to_string();
    let burrows: Vec<String> = map(&burrow.to_string()).split_whitespace().map(str::to_string).collect();
    assert_eq!(burrows, ["0", uid.as_str(), "1"], "burrow is not in the namespace it mapped");
    child.0.stdin.take().unwrap().write_all(b"\n").unwrap();
    expect(&wait_output(child.take(), std::time::Duration::from_secs(30)), 0);
    let p = support::probe::Probe::new("nosubids-workdir");
    let c = run_in(r.path(), &["--network", "none", "--userns=single", "-w", "/nowhere"], &["true"]);
    p.fails(c, 125, &["workdir", "/nowhere", "No such file or directory"]);
}
