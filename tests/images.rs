//! Images (issue 10) through the real binary, as an unprivileged user with subordinate IDs (burrow-t1):
//! import of generated OCI layouts, `podman save` archives and skopeo layouts; `burrow run IMAGE` with the image
//! config and its overrides; whiteouts, opaque directories, zstd; owners, set-ID bits and hard links through the
//! ID mapping; hostile layers that must write nothing outside and store nothing; a tampered blob; concurrent
//! imports; an interrupted extraction; rmi of an image in use; prune.

mod support;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::oci::{self, Comp, Layer, TarBuilder};
use support::*;

macro_rules! setup {
    () => {{
        if let Some(reason) = unusable() {
            skip!("{reason}");
        }
        if subuid_start().is_none() {
            skip!("the caller has no /etc/subuid range (run as burrow-t1)");
        }
    }};
}

/// A fresh store and scratch directory for one test.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env { dir: tempdir() }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = burrow();
        c.args(args).env("BURROW_STORE", self.store());
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        expect(&output(self.cmd(args)), 0)
    }

    fn import(&self, path: &Path, extra: &[&str]) -> std::process::Output {
        let mut c = self.cmd(&["import"]);
        c.args(extra).arg(path);
        output(c)
    }

    /// Names of the unpacked layers (and anything else) in the store's layer directory.
    fn layers(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.store().join("layers"))
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    fn images(&self) -> usize {
        std::fs::read_dir(self.store().join("images")).map(|d| d.count()).unwrap_or(0)
    }

    /// Tears the store down through burrow itself (its files belong to subordinate IDs).
    fn cleanup(&self) {
        let o = output(self.cmd(&["images", "-q"]));
        let ids: Vec<String> = stdout(&o).lines().map(String::from).collect();
        if !ids.is_empty() {
            let mut c = self.cmd(&["rmi"]);
            c.args(&ids);
            let _ = output(c);
        }
        let _ = output(self.cmd(&["prune"]));
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The busybox rootfs of the other tests, as a layer.
fn base_layer(comp: Comp) -> Layer {
    let r = Rootfs::new();
    std::fs::write(r.path().join("etc/motd"), "base\n").unwrap();
    std::fs::create_dir_all(r.path().join("srv/data")).unwrap();
    std::fs::write(r.path().join("srv/data/old"), "old\n").unwrap();
    std::fs::write(r.path().join("etc/gone"), "x\n").unwrap();
    Layer { tar: oci::tar_of_dir(r.path()), comp }
}

fn app_config() -> serde_json::Value {
    serde_json::json!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo \"cmd $GREETING from $(pwd) as $(id -u):$(id -g)\""],
        "Env": ["GREETING=hello", "PATH=/bin:/usr/bin"],
        "WorkingDir": "/srv",
        "User": "1000:1000",
        "ExposedPorts": {"80/tcp": {}},
    })
}

#[test]
fn an_imported_layout_runs_with_its_config_and_options_override_it() {
    setup!();
    let env = Env::new();
    let layout = env.path("app");
    oci::write_layout(&layout, "1.0", &[base_layer(Comp::Gzip)], app_config());
    let o = env.import(&layout, &[]);
    assert!(expect(&o, 0).contains("Loaded image: localhost/app:1.0"), "{}", stdout(&o));
    let listed = env.ok(&["images"]);
    assert!(listed.contains("localhost/app") && listed.contains("1.0"), "{listed}");
    assert_eq!(env.ok(&["run", "localhost/app:1.0"]), "cmd hello from /srv as 1000:1000\n");
    // CMD replaces Cmd; -e, -w, -u replace Env, WorkingDir, User.
    let o = env.ok(&[
        "run",
        "-e",
        "GREETING=bye",
        "-w",
        "/tmp",
        "-u",
        "0:0",
        "localhost/app:1.0",
        "echo $GREETING $(pwd) $(id -u)",
    ]);
    assert_eq!(o, "bye /tmp 0\n");
    // --entrypoint replaces Entrypoint and drops Cmd; `--` also separates the command.
    assert_eq!(env.ok(&["run", "--entrypoint", "/bin/echo", "localhost/app:1.0", "-n", "x"]), "x");
    assert_eq!(
        env.ok(&["run", "--entrypoint", "", "-u", "0", "localhost/app:1.0", "--", "cat", "/etc/motd"]),
        "base\n"
    );
    // Writes go to the ephemeral layer, never to the store; --read-only refuses them.
    env.ok(&["run", "-u", "0", "--entrypoint", "/bin/sh", "localhost/app:1.0", "-c", "echo changed > /etc/motd"]);
    assert_eq!(env.ok(&["run", "--entrypoint", "/bin/cat", "localhost/app:1.0", "/etc/motd"]), "base\n");
    let o =
        output(env.cmd(&["run", "--read-only", "-u", "0", "--entrypoint", "/bin/touch", "localhost/app:1.0", "/x"]));
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("Read-only file system"), "{}", stderr(&o));
    // Both drivers, and a kept upper.
    let upper = env.path("upper");
    for driver in ["kernel", "fuse"] {
        let o = env.ok(&[
            "run",
            "--overlay-driver",
            driver,
            "--upper",
            upper.to_str().unwrap(),
            "-u",
            "0",
            "--entrypoint",
            "/bin/sh",
            "localhost/app:1.0",
            "-c",
            "echo $0 >> /kept; cat /kept",
        ]);
        assert!(o.ends_with("/bin/sh\n"), "{driver}: {o}");
    }
    assert_eq!(std::fs::read_to_string(upper.join("upper/kept")).unwrap().lines().count(), 2);
}

#[test]
fn missing_images_fail_clearly() {
    setup!();
    let env = Env::new();
    let o = output(env.cmd(&["run", "--pull=never", "nothere:1", "true"]));
    expect(&o, 125);
    assert!(stderr(&o).contains("docker.io/library/nothere:1 is not in the store and --pull=never"), "{}", stderr(&o));
    let o = output(env.cmd(&["run", "Bad:Ref"]));
    expect(&o, 125);
    assert!(stderr(&o).contains("lowercase"), "{}", stderr(&o));
    let o = output(env.cmd(&["rmi", "nothere"]));
    expect(&o, 1);
    assert!(stderr(&o).contains("not in the store"), "{}", stderr(&o));
    let o = output(env.cmd(&["import", env.path("missing.tar").to_str().unwrap()]));
    expect(&o, 125);
    assert!(stderr(&o).contains("missing.tar"), "{}", stderr(&o));
    let o = output(env.cmd(&["run", "--rootfs", "/", "img"]));
    expect(&o, 125);
    assert!(stderr(&o).contains("two roots"), "{}", stderr(&o));
}

#[test]
fn layers_delete_files_and_directories_become_opaque_with_zstd() {
    setup!();
    let env = Env::new();
    let top = TarBuilder::default()
        .file("etc/.wh.gone", b"", 0o644, 0, 0)
        .dir("srv/data", 0o755, 0, 0)
        .file("srv/data/.wh..wh..opq", b"", 0o644, 0, 0)
        .file("srv/data/new", b"new\n", 0o644, 0, 0)
        .file("etc/motd", b"top\n", 0o644, 0, 0)
        .finish();
    let base = base_layer(Comp::Gzip);
    let shared = base.tar.clone();
    let layers = [base, Layer { tar: top, comp: Comp::Zstd }];
    let layout = env.path("multi");
    oci::write_layout(&layout, "2", &layers, serde_json::json!({"Cmd": ["/bin/sh"]}));
    expect(&env.import(&layout, &["--name", "multi:2"]), 0);
    for driver in ["kernel", "fuse"] {
        let o = env.ok(&[
            "run",
            "--overlay-driver",
            driver,
            "multi:2",
            "sh",
            "-c",
            "cat /etc/motd; ls /srv/data; test -e /etc/gone || echo gone-is-gone",
        ]);
        assert_eq!(o, "top\nnew\ngone-is-gone\n", "driver {driver}");
    }
    // Two images share the base layer: it is stored once.
    let layout2 = env.path("base");
    oci::write_layout(
        &layout2,
        "1",
        &[Layer { tar: shared, comp: Comp::Gzip }],
        serde_json::json!({"Cmd": ["/bin/sh"]}),
    );
    let before = env.layers().len();
    expect(&env.import(&layout2, &["--name", "base:1"]), 0);
    assert_eq!(env.layers().len(), before, "{:?}", env.layers());
}

#[test]
fn owners_set_id_bits_and_hard_links_survive_the_mapping() {
    setup!();
    let env = Env::new();
    let layer = TarBuilder::default()
        .dir("data", 0o755, 1000, 1000)
        .file("data/mine", b"m", 0o640, 1000, 1000)
        .file("data/su", b"s", 0o4755, 0, 0)
        .file("data/sg", b"g", 0o2755, 0, 42)
        .hardlink("data/su-link", "data/su")
        .file("data/far", b"f", 0o644, 70000, 70000)
        .finish();
    let layout = env.path("ids");
    oci::write_layout(
        &layout,
        "1",
        &[base_layer(Comp::Gzip), Layer { tar: layer, comp: Comp::Gzip }],
        serde_json::json!({}),
    );
    let o = env.import(&layout, &["--name", "ids:1"]);
    expect(&o, 0);
    // An owner beyond the 65536 subordinate IDs cannot be kept: one warning, the file stays root's.
    assert!(stderr(&o).contains("1 entries keep root as their owner"), "{}", stderr(&o));
    let out = env.ok(&[
        "run",
        "ids:1",
        "stat",
        "-c",
        "%n %u:%g %a %h",
        "/data/mine",
        "/data/su",
        "/data/sg",
        "/data/su-link",
        "/data/far",
    ]);
    assert_eq!(
        out,
        "/data/mine 1000:1000 640 1\n/data/su 0:0 4755 2\n/data/sg 0:42 2755 1\n/data/su-link 0:0 4755 2\n/data/far 0:0 644 1\n",
    );
    assert_eq!(env.ok(&["run", "ids:1", "stat", "-c", "%u:%g %a", "/data"]), "1000:1000 755\n");
    // From the host, the layer's uid 1000 is the subordinate ID SUBUID+999.
    let sub = subuid_start().unwrap();
    let layer_dir = env
        .layers()
        .into_iter()
        .map(|l| env.store().join("layers").join(l).join("root/data"))
        .find(|p| p.exists())
        .expect("the second layer");
    assert_eq!(std::fs::metadata(layer_dir.join("mine")).unwrap().uid(), sub + 999);
}

/// Each hostile layer: import fails naming the entry, nothing appears outside, nothing is stored.
#[test]
fn hostile_layers_write_nothing_outside_and_store_nothing() {
    setup!();
    let env = Env::new();
    let outside = env.path("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "keep").unwrap();
    let out = outside.to_str().unwrap().to_string();
    use tar::EntryType as T;
    let shapes: Vec<(&str, Vec<u8>)> = vec![
        ("../", TarBuilder::default().raw(T::Regular, "../../../outside/pwned", "", b"x").finish()),
        ("absolute", TarBuilder::default().raw(T::Regular, &format!("{out}/pwned"), "", b"x").finish()),
        ("symlink then file", TarBuilder::default().symlink("l", &out).file("l/pwned", b"x", 0o644, 0, 0).finish()),
        ("symlink then dir", TarBuilder::default().symlink("l", &out).dir("l/sub", 0o755, 0, 0).finish()),
        ("hard link out", TarBuilder::default().raw(T::Link, "h", &format!("{out}/secret"), b"").finish()),
        ("hard link via symlink", TarBuilder::default().symlink("l", &out).hardlink("h", "l/secret").finish()),
        (
            "dot symlink",
            TarBuilder::default().raw(T::Symlink, ".", &out, b"").file("pwned", b"x", 0o644, 0, 0).finish(),
        ),
    ];
    for (what, tar) in shapes {
        let layout = env.path(&format!("bad-{}", what.replace(' ', "-")));
        oci::write_layout(&layout, "1", &[Layer { tar, comp: Comp::Gzip }], serde_json::json!({}));
        let o = env.import(&layout, &["--name", "bad:1"]);
        expect(&o, 125);
        assert!(stderr(&o).contains("rejected"), "{what}: {}", stderr(&o));
        assert_eq!(env.layers(), Vec::<String>::new(), "{what}: a layer was left in the store");
        assert_eq!(env.images(), 0, "{what}");
        let names: Vec<_> = std::fs::read_dir(&outside).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret")], "{what} wrote outside");
        assert_eq!(std::fs::read_to_string(outside.join("secret")).unwrap(), "keep");
    }
}

#[test]
fn a_tampered_blob_fails_and_stores_nothing() {
    setup!();
    let env = Env::new();
    let layout = env.path("tampered");
    let digests = oci::write_layout(&layout, "1", &[base_layer(Comp::Gzip)], serde_json::json!({}));
    let blob = layout.join("blobs/sha256").join(&digests[0]["sha256:".len()..]);
    // Same compressed stream with a different tail: decompresses (gzip ignores trailing garbage only in
    // some readers), but its digest is wrong.
    let mut bytes = std::fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x01;
    std::fs::write(&blob, &bytes).unwrap();
    let o = env.import(&layout, &[]);
    expect(&o, 125);
    let err = stderr(&o);
    assert!(err.contains(&digests[0]) && err.contains("nothing was stored"), "{err}");
    assert_eq!(env.layers(), Vec::<String>::new());
    assert_eq!(env.images(), 0);
}

#[test]
fn concurrent_imports_of_one_image_store_it_once() {
    setup!();
    let env = Env::new();
    let layout = env.path("same");
    let base = base_layer(Comp::Gzip);
    let zstd = Layer { tar: base.tar.clone(), comp: Comp::Zstd };
    oci::write_layout(&layout, "1", &[base, zstd], serde_json::json!({"Cmd": ["true"]}));
    let children: Vec<Reaped> = (0..4)
        .map(|_| {
            let mut c = env.cmd(&["import", "--name", "same:1"]);
            c.arg(&layout).stdout(Stdio::piped()).stderr(Stdio::piped());
            Reaped(c.spawn().unwrap())
        })
        .collect();
    for c in children {
        let o = wait_output(c.take(), Duration::from_secs(120));
        expect(&o, 0);
    }
    // Two layers (gzip and zstd blobs of one tar are two digests), no temporary directory left.
    assert_eq!(env.layers().len(), 2, "{:?}", env.layers());
    assert_eq!(env.images(), 1);
    expect(&output(env.cmd(&["run", "same:1"])), 0);
}

#[test]
fn an_interrupted_extraction_is_redone() {
    setup!();
    let env = Env::new();
    let layout = env.path("int");
    let digests = oci::write_layout(&layout, "1", &[base_layer(Comp::Gzip)], serde_json::json!({"Cmd": ["true"]}));
    let hex = &digests[0]["sha256:".len()..];
    // What a killed import leaves: a half-written temporary directory, never the layer's own name.
    env.ok(&["images"]);
    let stale = env.store().join("layers").join(format!(".tmp-{hex}-999999"));
    std::fs::create_dir_all(stale.join("root/bin")).unwrap();
    std::fs::write(stale.join("root/bin/half"), "x").unwrap();
    expect(&env.import(&layout, &["--name", "int:1"]), 0);
    assert_eq!(env.layers(), vec![hex.to_string()]);
    expect(&output(env.cmd(&["run", "int:1"])), 0);
}

/// Incompressible bytes (xorshift), so that a layer takes a while to stream.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn an_import_killed_midway_leaves_no_layer_and_the_next_one_completes() {
    setup!();
    let env = Env::new();
    let big = TarBuilder::default().file("big", &noise(8 << 20), 0o644, 0, 0).finish();
    let layout = env.path("big");
    oci::write_layout(
        &layout,
        "1",
        &[base_layer(Comp::Gzip), Layer { tar: big, comp: Comp::Gzip }],
        serde_json::json!({"Cmd": ["true"]}),
    );
    let mut c = env.cmd(&["import", "--name", "big:1"]);
    c.arg(&layout).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = Reaped(c.spawn().unwrap());
    // Killed while the big layer is being extracted (its temporary directory exists).
    let midway = eventually(Duration::from_secs(60), || {
        std::fs::read_dir(env.store().join("layers"))
            .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-")).count() > 0)
            .unwrap_or(false)
            && env.layers().iter().filter(|l| !l.starts_with('.')).count() == 1
    });
    let _ = child.0.kill();
    let _ = child.0.wait();
    assert!(midway, "the import never reached its second layer: {:?}", env.layers());
    assert_eq!(env.images(), 0);
    let complete: Vec<String> = env.layers().into_iter().filter(|l| !l.starts_with('.')).collect();
    assert_eq!(complete.len(), 1, "only the first layer may be complete: {complete:?}");
    // The next import finds the first layer done, redoes the second, and leaves no temporary directory.
    expect(&env.import(&layout, &["--name", "big:1"]), 0);
    assert!(
        eventually(Duration::from_secs(10), || env.layers().iter().all(|l| !l.starts_with('.'))),
        "{:?}",
        env.layers()
    );
    assert_eq!(env.layers().len(), 2);
    assert_eq!(env.ok(&["run", "big:1", "sh", "-c", "wc -c < /big"]).trim(), (8 << 20).to_string());
}

#[test]
fn rmi_refuses_an_image_in_use_and_prune_keeps_its_layers() {
    setup!();
    let env = Env::new();
    let layout = env.path("busy");
    oci::write_layout(&layout, "1", &[base_layer(Comp::Gzip)], serde_json::json!({"Cmd": ["true"]}));
    expect(&env.import(&layout, &["--name", "busy:1"]), 0);
    let mut c = env.cmd(&["run", "busy:1", "sh", "-c", "echo started; sleep 60"]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut run = Reaped(c.spawn().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(run.0.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line, "started\n");
    let o = output(env.cmd(&["rmi", "busy:1"]));
    expect(&o, 2);
    assert!(stderr(&o).contains("busy:1 is in use by a running container"), "{}", stderr(&o));
    expect(&output(env.cmd(&["prune"])), 0);
    assert_eq!(env.layers().len(), 1);
    assert_eq!(env.images(), 1);
    let _ = run.0.kill();
    let _ = run.0.wait();
    // The container's own processes (P1, init) hold the pin too, until they have gone down with burrow.
    // (Not an rmi: one that succeeds here would leave the loop below only "not in the store".)
    let mut o = output(env.cmd(&["images"]));
    let removed = eventually(Duration::from_secs(10), || {
        o = output(env.cmd(&["rmi", "busy:1"]));
        code(&o) == 0
    });
    assert!(removed, "rmi once the run is gone: exit {}: {}", code(&o), stderr(&o));
    let o = stdout(&o);
    assert!(o.contains("Untagged: localhost/busy:1") || o.contains("busy:1"), "{o}");
    assert_eq!(env.layers(), Vec::<String>::new());
    assert_eq!(env.images(), 0);
}

/// podman (with runc and the vfs driver in a private root) builds the archives real users bring: a
/// docker-archive and an OCI archive from `podman save`, and skopeo an OCI layout from the former.
#[test]
fn podman_save_archives_and_skopeo_layouts_import() {
    setup!();
    let env = Env::new();
    let rootfs = Rootfs::new();
    std::fs::write(rootfs.path().join("etc/motd"), "from podman\n").unwrap();
    let tarball = env.path("rootfs.tar");
    std::fs::write(&tarball, oci::tar_of_dir(rootfs.path())).unwrap();
    let podman = |args: &[&str]| {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(env.path("podman-root"))
            .arg("--runroot")
            .arg(env.path("podman-run"))
            .args(["--storage-driver", "vfs", "--runtime", "runc", "--cgroup-manager", "cgroupfs"])
            .args(args)
            .env("XDG_RUNTIME_DIR", env.path("xdg"))
            .env("HOME", env.path("home"));
        output(c)
    };
    std::fs::create_dir_all(env.path("xdg")).unwrap();
    std::fs::create_dir_all(env.path("home")).unwrap();
    let o = podman(&[
        "import",
        "--change",
        "CMD [\"/bin/cat\", \"/etc/motd\"]",
        tarball.to_str().unwrap(),
        "localhost/pm:1",
    ]);
    if code(&o) != 0 {
        skip!("podman import failed: {}", stderr(&o));
    }
    let docker_archive = env.path("pm-docker.tar");
    let oci_archive = env.path("pm-oci.tar");
    expect(
        &podman(&["save", "--format", "docker-archive", "-o", docker_archive.to_str().unwrap(), "localhost/pm:1"]),
        0,
    );
    expect(&podman(&["save", "--format", "oci-archive", "-o", oci_archive.to_str().unwrap(), "localhost/pm:1"]), 0);
    let o = env.import(&docker_archive, &[]);
    assert!(expect(&o, 0).contains("localhost/pm:1"), "{}", stdout(&o));
    assert_eq!(env.ok(&["run", "localhost/pm:1"]), "from podman\n");
    expect(&env.import(&oci_archive, &["--name", "pm-oci:1"]), 0);
    assert_eq!(env.ok(&["run", "pm-oci:1"]), "from podman\n");
    let skopeo_layout = env.path("sk");
    let o = output({
        let mut c = Command::new("skopeo");
        c.arg("copy")
            .arg(format!("docker-archive:{}", docker_archive.display()))
            .arg(format!("oci:{}:v3", skopeo_layout.display()));
        c
    });
    expect(&o, 0);
    let o = env.import(&skopeo_layout, &[]);
    assert!(expect(&o, 0).contains("localhost/sk:v3"), "{}", stdout(&o));
    assert_eq!(env.ok(&["run", "localhost/sk:v3"]), "from podman\n");
    let _ = podman(&["system", "reset", "-f"]);
}

/// A docker-archive as older docker wrote them: `ID/layer.tar` directories, a duplicate layer as a symlink to
/// the first, one layer gzip-compressed (its digest is then not its diff_id), the whole archive gzipped; and an
/// OCI layout whose index holds an index of two platforms.
#[test]
fn crafted_docker_archives_and_multi_platform_layouts_import() {
    setup!();
    let env = Env::new();
    let base = base_layer(Comp::None).tar;
    let extra = TarBuilder::default().file("etc/extra", b"extra\n", 0o644, 0, 0).finish();
    let layers = [Layer { tar: base.clone(), comp: Comp::None }, Layer { tar: extra.clone(), comp: Comp::Gzip }];
    let config = oci::config_json(&layers, serde_json::json!({"Cmd": ["/bin/cat", "/etc/extra", "/etc/motd"]}));
    let manifest = serde_json::json!([{
        "Config": "cfg.json",
        "RepoTags": ["old/docker:7", "localhost/second:name"],
        "Layers": ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"],
    }]);
    // The config lists three diff_ids for the three layers: base, extra, base again (duplicate, linked).
    let mut cfg: serde_json::Value = serde_json::from_slice(&config).unwrap();
    let ids = cfg["rootfs"]["diff_ids"].as_array().unwrap().clone();
    cfg["rootfs"]["diff_ids"] = serde_json::json!([ids[0], ids[1], ids[0]]);
    let cfg = serde_json::to_vec(&cfg).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    };
    add("aaa/layer.tar", &base);
    add("bbb/layer.tar", &oci::compress(&extra, Comp::Gzip));
    add("cfg.json", &cfg);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "ccc/layer.tar", "../aaa/layer.tar").unwrap();
    let archive = env.path("old.tar.gz");
    std::fs::write(&archive, oci::compress(&b.into_inner().unwrap(), Comp::Gzip)).unwrap();
    let o = env.import(&archive, &[]);
    let out = expect(&o, 0);
    assert!(out.contains("docker.io/old/docker:7") && out.contains("localhost/second:name"), "{out}");
    assert_eq!(env.ok(&["run", "old/docker:7"]), "extra\nbase\n");
    assert_eq!(env.layers().len(), 2, "the duplicate layer is stored once: {:?}", env.layers());
    let ids = env.ok(&["images", "-q"]);
    assert_eq!(ids.lines().count(), 1, "two names, one image ID: {ids}");
    assert_eq!(env.ok(&["images", "-q", "--no-trunc"]).trim(), oci::sha256(&cfg));

    // An OCI layout whose index.json points at an index of an arm64-or-amd64 pair: this machine's is taken.
    let layout = env.path("multi");
    oci::write_layout(&layout, "m", &[Layer { tar: extra.clone(), comp: Comp::Gzip }], serde_json::json!({}));
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mine = index["manifests"][0].clone();
    let mut other = mine.clone();
    other["digest"] = serde_json::json!(oci::sha256(b"not a manifest"));
    let other_arch = if oci::go_arch() == "arm64" { "amd64" } else { "arm64" };
    let mut mine_p = mine.clone();
    mine_p["platform"] = serde_json::json!({"os": "linux", "architecture": oci::go_arch()});
    other["platform"] = serde_json::json!({"os": "linux", "architecture": other_arch});
    let nested = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [other, mine_p]})).unwrap();
    let nd = oci::sha256(&nested);
    std::fs::write(layout.join("blobs/sha256").join(&nd["sha256:".len()..]), &nested).unwrap();
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": nd, "size": nested.len(),
        "annotations": {"org.opencontainers.image.ref.name": "multi:9"}}]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    let o = env.import(&layout, &[]);
    assert!(expect(&o, 0).contains("docker.io/library/multi:9"), "{}", stdout(&o));
    // A layout missing its oci-layout file is not taken for one.
    std::fs::remove_file(layout.join("oci-layout")).unwrap();
    let o = env.import(&layout, &[]);
    expect(&o, 125);
    assert!(stderr(&o).contains("not an image archive"), "{}", stderr(&o));
}
