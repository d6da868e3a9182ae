//! `burrow pull`, `login` and `logout` against a real registry (Debian's docker-registry on 127.0.0.1), with
//! images built here from generated root filesystems and pushed with skopeo. Run as the unprivileged test
//! user (scripts/test.sh). A proxy in front of the registry injects slowness, stalls and cut connections.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/registry.rs"]
mod reg;
mod support;

use burrow::image::{Reference, Store};
use gateway::*;
use reg::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;
use support::*;

fn usable() -> Option<String> {
    unusable().or_else(registry_unusable)
}

/// `burrow pull --store STORE --tls-verify=false ARGS... IMAGE`
fn pull_cmd(store: &Path, args: &[&str], image: &str) -> Command {
    let mut c = burrow();
    c.arg("pull").arg("--store").arg(store).arg("--tls-verify=false").args(args).arg(image);
    c
}

fn pull(store: &Path, args: &[&str], image: &str) -> Output {
    finish(pull_cmd(store, args, image))
}

/// Runs to completion; pulls unpack in debug builds on a loaded 2-core CI machine: a generous deadline.
fn finish(c: Command) -> Output {
    wait_output(spawn_piped(c), Duration::from_secs(240))
}

/// The stored image for `image`, read through the store's own API.
fn stored(store: &Path, image: &str) -> Option<burrow::image::Image> {
    let s = Store::open(Some(store.to_path_buf())).unwrap();
    s.resolve(&Reference::parse(image).unwrap())
}

/// Interrupted or failed extractions left in the store (there must be none after a failed pull).
fn temp_dirs(store: &Path) -> Vec<String> {
    std::fs::read_dir(store.join("layers"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

/// A layout with one busybox image (gzip) tagged TAG; returns its manifest descriptor.
fn busybox_image(dir: &Path, tag: &str) -> (Layout, serde_json::Value) {
    let mut l = Layout::new(dir);
    let tree = Rootfs::new();
    let base = l.layer(&[Entry::Tree(tree.path().to_path_buf())], Compression::Gzip);
    let m = l.image(&[base], host_arch(), &["/bin/sh", "-c", "echo default-cmd"]);
    l.tag(m.clone(), tag);
    (l, m)
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[test]
fn pulls_a_small_image_and_a_warm_pull_is_one_head() {
    if let Some(r) = usable() {
        skip!("{r}");
    }
    let reg = Registry::start(Auth::None);
    let t = tempdir();
    let (layout, desc) = busybox_image(&t.path().join("oci"), "1");
    reg.push(&layout.dir, "1", "small/bb");
    let store = t.path().join("store");
    let image = format!("{}/small/bb:1", reg.host());
    let o = pull(&store, &[], &image);
    let id = expect(&o, 0).trim().to_string();
    let img = stored(&store, &image).expect("image recorded");
    assert_eq!(id, img.id().hex(), "pull prints the image ID");
    assert_eq!(img.layers.len(), 1);
    assert!(img.layers[0].join("bin/busybox").is_file());
    assert!(stderr(&o).contains("1 layer(s) fetched"), "{}", stderr(&o));
    // Warm: the registry sees exactly one HEAD of the manifest, nothing else.
    let before = reg.burrow_requests().len();
    let o = pull(&store, &[], &image);
    assert_eq!(expect(&o, 0).trim(), id);
    assert!(stderr(&o).contains("up to date"), "{}", stderr(&o));
    let after = reg.burrow_requests();
    assert_eq!(after[before..], ["HEAD /v2/small/bb/manifests/1 HTTP/1.1".to_string()], "{after:?}");
    // By digest, the store answers alone.
    let by_digest = format!("{}/small/bb@{}", reg.host(), desc["digest"].as_str().unwrap());
    expect(&pull(&store, &[], &by_digest), 0);
    assert_eq!(reg.burrow_requests().len(), after.len(), "a present digest needs no request");
    // Without --tls-verify=false a plain-HTTP registry is refused, with the way out in the message.
    let mut c = burrow();
    c.arg("pull").arg("--store").arg(&store).arg("--retry=0").arg(&image);
    let o = output(c);
    expect(&o, 125);
    assert!(stderr(&o).contains("--tls-verify=false"), "{}", stderr(&o));
    // An unknown tag is a clear error.
    let o = pull(&store, &[], &format!("{}/small/bb:nope", reg.host()));
    expect(&o, 125);
    assert!(stderr(&o).contains("manifest unknown"), "{}", stderr(&o));
}

/// `burrow run --store STORE --tls-verify=false ARGS... IMAGE CMD...`
fn run_image(store: &Path, args: &[&str], image: &str, cmd: &[&str]) -> Command {
    let mut c = burrow();
    c.args(["run", "--network", "none", "--tls-verify=false", "--store"]).arg(store).args(args).arg(image).args(cmd);
    c
}

#[test]
fn run_pulls_what_it_lacks_with_podmans_pull_policies() {
    if let Some(r) = usable() {
        skip!("{r}");
    }
    let reg = Registry::start(Auth::None);
    let t = tempdir();
    let (layout, _) = busybox_image(&t.path().join("oci"), "1");
    reg.push(&layout.dir, "1", "run/bb");
    let store = t.path().join("store");
    let image = format!("{}/run/bb:1", reg.host());
    // never: not in the store, so a clear error and no request.
    let o = finish(run_image(&store, &["--pull=never"], &image, &[]));
    expect(&o, 125);
    assert!(stderr(&o).contains("--pull=never"), "{}", stderr(&o));
    assert!(reg.burrow_requests().is_empty());
    // missing (the default): pulled, then run with the image's Cmd.
    let o = finish(run_image(&store, &[], &image, &[]));
    assert_eq!(expect(&o, 0), "default-cmd\n");
    let n = reg.burrow_requests().len();
    // present: missing asks nothing, always asks once (HEAD), never asks nothing.
    expect(&finish(run_image(&store, &[], &image, &["true"])), 0);
    assert_eq!(reg.burrow_requests().len(), n);
    expect(&finish(run_image(&store, &["--pull=always"], &image, &["true"])), 0);
    assert_eq!(reg.burrow_requests()[n..], ["HEAD /v2/run/bb/manifests/1 HTTP/1.1".to_string()]);
    // newer with the registry gone: a warning, and the stored image runs; always fails.
    let mut reg = reg;
    reg.stop();
    let o = finish(run_image(&store, &["--pull=newer", "--retry=0"], &image, &["echo", "ran"]));
    assert_eq!(expect(&o, 0), "ran\n");
    assert!(stderr(&o).contains("warning") && stderr(&o).contains("cannot reach"), "{}", stderr(&o));
    let o = finish(run_image(&store, &["--pull=always", "--retry=0"], &image, &["true"]));
    expect(&o, 125);
    assert!(stderr(&o).contains("cannot reach registry"), "{}", stderr(&o));
}

#[test]
fn multi_layer_zstd_and_whiteouts_reuse_stored_layers() {
    if let Some(r) = usable() {
        skip!("{r}");
    }
    let reg = Registry::start(Auth::None);
    let t = tempdir();
    let mut l = Layout::new(&t.path().join("oci"));
    let tree = Rootfs::new();
    let base = l.layer(&[Entry::Tree(tree.path().to_path_buf())], Compression::Gzip);
    let base_digest = base.digest.clone();
    let add = l.layer(
        &[
            Entry::File("etc/added", b"added\n".to_vec()),
            Entry::Dir("opt"),
            Entry::Dir("opt/dir"),
            Entry::File("opt/dir/a", b"a".to_vec()),
            Entry::File("opt/dir/b", b"b".to_vec()),
        ],
        Compression::Zstd,
    );
    let del = l.layer(
        &[
            Entry::Whiteout("etc/added"),
            Entry::Dir("opt/dir"),
            Entry::Opaque("opt/dir"),
            Entry::File("opt/dir/c", b"c".to_vec()),
        ],
        Compression::None,
    );
    let m = l.image(&[base, add, del], host_arch(), &["/bin/sh"]);
    l.tag(m, "3");
    reg.push(&l.dir, "3", "multi/layers");
    let store = t.path().join("store");
    let image = format!("{}/multi/layers:3", reg.host());
    let o = pull(&store, &[], &image);
    expect(&o, 0);
    let img = stored(&store, &image).expect("image recorded");
    assert_eq!(img.layers.len(), 3);
    assert!(img.layers[1].join("etc/added").is_file() && img.layers[1].join("opt/dir/a").is_file());
    assert!(img.layers[2].join("opt/dir/c").is_file() && !img.layers[2].join("opt/dir/a").exists());
    // The registry served the zstd layer as such (skopeo keeps compressed blobs; it gzips uncompressed ones,
    // so an uncompressed layer never reaches the registry from this generator).
    let s = Store::open(Some(store.clone())).unwrap();
    let manifest = String::from_utf8(s.blob(&img.record.manifest).unwrap()).unwrap();
    assert!(manifest.contains("tar+zstd"), "{manifest}");
    drop(s);
    // Run it: the layers are the overlay's lowers, whiteouts and the opaque directory take effect.
    let mut c = burrow();
    c.args(["run", "--network", "none", "--pull=never", "--store"]).arg(&store).arg(&image);
    c.args(["sh", "-c", "ls /opt/dir; test -e /etc/added && echo present || echo gone; echo $FROM_IMAGE"]);
    assert_eq!(expect(&finish(c), 0), "c\ngone\nyes\n");
    // A second image on the same base downloads only its own layer.
    let top = l.layer(&[Entry::File("etc/second", b"2".to_vec())], Compression::Gzip);
    let top_digest = top.digest.clone();
    let base_again = l.layer(&[Entry::Tree(tree.path().to_path_buf())], Compression::Gzip);
    assert_eq!(base_again.digest, base_digest, "the generated base layer is reproducible");
    let m2 = l.image(&[base_again, top], host_arch(), &["/bin/sh"]);
    l.tag(m2, "second");
    reg.push(&l.dir, "second", "multi/layers");
    let before = reg.burrow_requests().len();
    let o = pull(&store, &[], &format!("{}/multi/layers:second", reg.host()));
    expect(&o, 0);
    let blobs: Vec<String> =
        reg.burrow_requests()[before..].iter().filter(|r| r.contains("/blobs/")).cloned().collect();
    assert!(blobs.iter().any(|r| r.contains(&top_digest)), "{blobs:?}");
    assert!(!blobs.iter().any(|r| r.contains(&base_digest)), "the stored base layer was fetched again: {blobs:?}");
}

#[test]
fn multi_arch_index_picks_this_platform_or_the_asked_one() {
    if let Some(r) = usable() {
        skip!("{r}");
    }
    let reg = Registry::start(Auth::None);
    let t = tempdir();
    let mut l = Layout::new(&t.path().join("oci"));
    let mut descs = Vec::new();
    for arch in ["amd64", "arm64", "ppc64le"] {
        let layer = l.layer(&[Entry::File("arch", arch.as_bytes().to_vec())], Compression::Gzip);
        descs.push(l.image(&[layer], arch, &["/bin/sh"]));
    }
    let index = l.index(&descs);
    l.tag(index.clone(), "multi");
    reg.push(&l.dir, "multi", "multi/arch");
    let image = format!("{}/multi/arch:multi", reg.host());
    let arch_of_ref =
        |store: &Path, r: &str| std::fs::read_to_string(stored(store, r).unwrap().layers[0].join("arch")).unwrap();
    let arch_of = |store: &Path| arch_of_ref(store, &image);
    let s1 = t.path().join("s1");
    expect(&pull(&s1, &[], &image), 0);
    assert_eq!(arch_of(&s1), host_arch());
    let s2 = t.path().join("s2");
    expect(&pull(&s2, &["--platform", "linux/arm64"], &image), 0);
    assert_eq!(arch_of(&s2), "arm64");
    // Warm against an index: still one HEAD (the stored index maps its digest to the platform's manifest).
    let before = reg.burrow_requests().len();
    let o = pull(&s2, &["--platform", "linux/arm64"], &image);
    expect(&o, 0);
    assert_eq!(reg.burrow_requests().len(), before + 1, "{:?}", &reg.burrow_requests()[before..]);
    // By the index's digest.
    let by_digest = format!("{}/multi/arch@{}", reg.host(), index["digest"].as_str().unwrap());
    let s3 = t.path().join("s3");
    expect(&pull(&s3, &["--platform", "linux/ppc64le"], &by_digest), 0);
    let ppc = format!("{}/multi/arch@{}", reg.host(), descs[2]["digest"].as_str().unwrap());
    assert_eq!(arch_of_ref(&s3, &ppc), "ppc64le");
    // A platform the index lacks: the error lists what it has.
    let o = pull(&t.path().join("s4"), &["--platform", "linux/s390x"], &image);
    expect(&o, 125);
    let e = stderr(&o);
    assert!(e.contains("linux/s390x") && e.contains("linux/amd64") && e.contains("linux/arm64"), "{e}");
    let o = pull(&t.path().join("s4"), &["--platform", "linux"], &image);
    expect(&o, 125);
}

#[test]
fn a_tampered_blob_fails_the_pull_and_stores_nothing() {
    if let Some(r) = usable() {
        skip!("{r}");
    }
    let reg = Registry::start(Auth::None);
    let t = tempdir();
    let mut l = Layout::new(&t.path().join("oci"));
    let good = l.layer(&[Entry::File("good", b"fine".to_vec())], Compression::Gzip);
    let bad = l.layer(&[Entry::File("big", noise(256 * 1024, 7))], Compression::Gzip);
    let bad_digest = bad.digest.clone();
    let m = l.image(&[good, bad], host_arch(), &["/bin/sh"]);
    l.tag(m, "t");
    reg.push(&l.dir, "t", "tamper/me");
    // Same length, different bytes: only the digest can tell.
    let f = reg.blob_file(&bad_digest);
    let mut bytes = std::fs::read(&f).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&f, bytes).unwrap();
    let store = t.path().join("store");
    let image = format!("{}/tamper/me:t", reg.host());
    let o = pull(&store, &["--retry=0"], &image);
    expect(&o, 125);
    let e = stderr(&o);
    assert!(e.contains("digest") && e.contains(&bad_digest[7..19]), "{e}");
    assert!(stored(&store, &image).is_none(), "no image may be recorded");
    let s = Store::open(Some(store.clone())).unwrap();
    assert!(s.layer(&burrow::image::Digest::parse(&bad_digest).unwrap()).is_none());
    assert_eq!(temp_dirs(&store), Vec::<String>::new());
}

#[test]
fn basic_auth_login_pull_logout_in_podmans_auth_file() {
    if let Some(r) = usable() {
        skip!("{r}");
    }
    let (user, password) = ("alice", "s3cret-pw");
    let reg = Registry::start(Auth::Basic { user: user.into(), password: password.into() });
    let t = tempdir();
    let (layout, _) = busybox_image(&t.path().join("oci"), "1");
    let o = Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false", "--dest-creds", &format!("{user}:{password}")])
        .arg(format!("oci:{}:1", layout.dir.display()))
        .arg(format!("docker://{}/private/bb:1", reg.host()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rt = t.path().join("rt");
    std::fs::create_dir(&rt).unwrap();
    let store = t.path().join("store");
    let image = format!("{}/private/bb:1", reg.host());
    let with_rt = |mut c: Command| {
        c.env("XDG_RUNTIME_DIR", &rt);
        c
    };
    // Anonymous: refused, and the message says how to log in.
    let o = finish(with_rt(pull_cmd(&store, &[], &image)));
    expect(&o, 125);
    assert!(stderr(&o).contains("denied") && stderr(&o).contains("burrow login"), "{}", stderr(&o));
    let login = |pw: &str| {
        let mut c = with_rt(burrow());
        c.args(["login", "--tls-verify=false", "-u", user, "--password-stdin", &reg.host()]);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(format!("{pw}\n").as_bytes()).unwrap();
        wait_output(child, Duration::from_secs(30))
    };
    let o = login("wrong");
    expect(&o, 125);
    assert!(stderr(&o).contains("login failed") && stderr(&o).contains(user), "{}", stderr(&o));
    assert!(!rt.join("containers/auth.json").exists(), "a failed login stores nothing");
    let o = login(password);
    assert!(expect(&o, 0).contains("Login Succeeded"), "{}", stdout(&o));
    let file = rt.join("containers/auth.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // skopeo (containers/image, as podman) reads what burrow wrote.
    let o = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--authfile"])
        .arg(&file)
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo inspect with burrow's auth file: {}", String::from_utf8_lossy(&o.stderr));
    expect(&finish(with_rt(pull_cmd(&store, &[], &image))), 0);
    // $REGISTRY_AUTH_FILE alone (no XDG_RUNTIME_DIR: the HPC case) and --creds work too.
    let s2 = t.path().join("s2");
    let mut c = pull_cmd(&s2, &[], &image);
    c.env("REGISTRY_AUTH_FILE", &file);
    expect(&finish(c), 0);
    let s3 = t.path().join("s3");
    expect(&pull(&s3, &["--creds", &format!("{user}:{password}")], &image), 0);
    let o = pull(&t.path().join("s4"), &["--creds", "alice:nope"], &image);
    expect(&o, 125);
    // logout removes the entry; pulling is refused again.
    let mut c = with_rt(burrow());
    c.args(["logout", &reg.host()]);
    assert!(expect(&output(c), 0).contains("Removed login credentials"));
    let mut c = with_rt(burrow());
    c.args(["logout", &reg.host()]);
    let o = output(c);
    expect(&o, 125);
    assert!(stderr(&o).contains("not logged in"), "{}", stderr(&o));
    let o = finish(with_rt(pull_cmd(&t.path().join("s5"), &[], &image)));
    expect(&o, 125);
}

/// An image with one large incompressible layer, served through a throttling proxy.
fn big_image(reg: &Registry, t: &Path, repo: &str, mib: usize) -> String {
    let mut l = Layout::new(&t.join("oci-big"));
    let small = l.layer(&[Entry::File("small", b"s".to_vec())], Compression::Gzip);
    let big = l.layer(&[Entry::File("big", noise(mib << 20, 42))], Compression::Gzip);
    let m = l.image(&[small, big], host_arch(), &["/bin/sh"]);
    l.tag(m, "big");
    reg.push(&l.dir, "big", repo);
    big_digest_of(&l)
}

fn big_digest_of(l: &Layout) -> String {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(l.dir.join("index.json")).unwrap()).unwrap();
    let md = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(l.dir.join("blobs/sha256").join(&md[7..])).unwrap()).unwrap();
    m["layers"][1]["digest"].as_str().unwrap().to_string()
}

#[test]
fn two_concurrent_pulls_of_one_image_both_succeed() {
    if let Some(r) = usable() {
        skip!("{r}");
    }
    let reg = Registry::start(Auth::None);
    let t = tempdir();
    big_image(&reg, t.path(), "conc/img", 4);
    let proxy = Proxy::start(reg.port);
    proxy.ctl.rate.store(8 << 20, SeqCst);
    let store = t.path().join("store");
    let image = format!("{}/conc/img:big", proxy.host());
    let a = Reaped(spawn_piped(pull_cmd(&store, &[], &image)));
    let b = Reaped(spawn_piped(pull_cmd(&store, &[], &image)));
    let (oa, ob) = (wait_output(a.take(), Duration::from_secs(240)), wait_output(b.take(), Duration::from_secs(240)));
    let (ia, ib) = (expect(&oa, 0), expect(&ob, 0));
    assert_eq!(ia, ib);
    let img = stored(&store, &image).unwrap();
    assert_eq!(std::fs::metadata(img.layers[1].join("big")).unwrap().len(), 4 << 20);
    assert_eq!(temp_dirs(&store), Vec::<String>::new());
}

fn spawn_piped(mut c: Command) -> std::process::Child {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c.spawn().expect("spawn burrow")
}

#[test]
fn a_pull_killed_midway_leaves_nothing_half_done_and_is_repeated() {
    if let Some(r) = usable() {
        skip!("{r}");
    }
    let reg = Registry::start(Auth::None);
    let t = tempdir();
    let big = big_image(&reg, t.path(), "kill/img", 8);
    let proxy = Proxy::start(reg.port);
    proxy.ctl.rate.store(1 << 20, SeqCst);
    let store = t.path().join("store");
    let image = format!("{}/kill/img:big", proxy.host());
    let child = Reaped(spawn_piped(pull_cmd(&store, &[], &image)));
    // Midway: the big layer is streaming (its bytes are flowing and its extraction directory exists).
    assert!(eventually(Duration::from_secs(60), || proxy.ctl.forwarded.load(SeqCst) > 2 << 20
        && !temp_dirs(&store).is_empty()));
    let pid = child.0.id() as i32;
    for p in descendants(pid).into_iter().rev() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
    }
    let o = wait_output(child.take(), Duration::from_secs(30));
    assert!(!o.status.success());
    assert!(stored(&store, &image).is_none());
    let s = Store::open(Some(store.clone())).unwrap();
    assert!(s.layer(&burrow::image::Digest::parse(&big).unwrap()).is_none(), "a killed layer must not look complete");
    drop(s);
    // Again, at full speed: the interrupted extraction is cleaned and the image completes.
    proxy.ctl.rate.store(0, SeqCst);
    let o = pull(&store, &[], &image);
    expect(&o, 0);
    let img = stored(&store, &image).unwrap();
    assert_eq!(std::fs::metadata(img.layers[1].join("big")).unwrap().len(), 8 << 20);
    assert_eq!(temp_dirs(&store), Vec::<String>::new());
}

#[test]
fn a_registry_gone_midway_fails_clearly_and_stores_nothing() {
    if let Some(r) = usable() {
        skip!("{r}");
    }
    let mut reg = Registry::start(Auth::None);
    let t = tempdir();
    let big = big_image(&reg, t.path(), "gone/img", 8);
    let proxy = Proxy::start(reg.port);
    proxy.ctl.rate.store(1 << 20, SeqCst);
    let store = t.path().join("store");
    let image = format!("{}/gone/img:big", proxy.host());
    let child = Reaped(spawn_piped(pull_cmd(&store, &["--retry=2", "--retry-delay=100ms"], &image)));
    assert!(eventually(Duration::from_secs(60), || proxy.ctl.forwarded.load(SeqCst) > 2 << 20));
    reg.stop();
    proxy.ctl.cut.store(true, SeqCst);
    let o = wait_output(child.take(), Duration::from_secs(180));
    expect(&o, 125);
    let e = stderr(&o);
    assert!(e.contains(&big[7..19]) || e.contains("cannot reach registry"), "{e}");
    assert!(e.contains("nothing of it was stored") || e.contains("cannot reach"), "{e}");
    assert!(stored(&store, &image).is_none());
    assert_eq!(temp_dirs(&store), Vec::<String>::new());
}

#[test]
fn a_stalled_registry_times_out_instead_of_hanging() {
    if let Some(r) = usable() {
        skip!("{r}");
    }
    let reg = Registry::start(Auth::None);
    let t = tempdir();
    big_image(&reg, t.path(), "stall/img", 4);
    let proxy = Proxy::start(reg.port);
    proxy.ctl.rate.store(1 << 20, SeqCst);
    let store = t.path().join("store");
    let image = format!("{}/stall/img:big", proxy.host());
    let mut c = pull_cmd(&store, &["--retry=1", "--retry-delay=100ms"], &image);
    c.env("BURROW_PULL_TIMEOUT", "1");
    let child = Reaped(spawn_piped(c));
    assert!(eventually(Duration::from_secs(60), || proxy.ctl.forwarded.load(SeqCst) > 1 << 20));
    proxy.ctl.stall.store(true, SeqCst);
    let o = wait_output(child.take(), Duration::from_secs(180));
    expect(&o, 125);
    assert!(stderr(&o).to_lowercase().contains("timeout") || stderr(&o).contains("timed out"), "{}", stderr(&o));
    assert!(stored(&store, &image).is_none());
    assert_eq!(temp_dirs(&store), Vec::<String>::new());
}

#[test]
fn token_auth_through_a_gateway_and_credentials_never_follow_a_redirect() {
    if let Some(r) = usable() {
        skip!("{r}");
    }
    let reg = Registry::start(Auth::None);
    let t = tempdir();
    let (layout, _) = busybox_image(&t.path().join("oci"), "1");
    reg.push(&layout.dir, "1", "tok/bb");
    let (user, password) = ("bob", "token-pw");
    let gw = Gateway::start(reg.port, user, password);
    let image = format!("{}/tok/bb:1", gw.host());
    // Anonymous: the token server refuses, and the error says how to log in.
    let o = pull(&t.path().join("s0"), &["--retry=0"], &image);
    expect(&o, 125);
    assert!(stderr(&o).contains("denied") && stderr(&o).contains("burrow login"), "{}", stderr(&o));
    // login goes through the token server too.
    let rt = t.path().join("rt");
    std::fs::create_dir(&rt).unwrap();
    let mut c = burrow();
    c.env("XDG_RUNTIME_DIR", &rt).args(["login", "--tls-verify=false", "-u", user, "-p", password, &gw.host()]);
    expect(&finish(c), 0);
    let store = t.path().join("store");
    let mut c = pull_cmd(&store, &[], &image);
    c.env("XDG_RUNTIME_DIR", &rt);
    expect(&finish(c), 0);
    assert!(stored(&store, &image).unwrap().layers[0].join("bin/busybox").is_file());
    let seen = gw.seen();
    assert!(
        seen.iter().any(|l| l.starts_with("token ")
            && l.contains("scope=repository%3Atok%2Fbb%3Apull")
            && l.ends_with("auth=ok")),
        "{seen:?}"
    );
    // Blobs came from the other origin, and never with the registry's token.
    let blobs: Vec<&String> = seen.iter().filter(|l| l.starts_with("blob ")).collect();
    assert!(blobs.len() >= 2, "config and layer through the redirect: {seen:?}");
    assert!(blobs.iter().all(|l| *l == "blob auth=no"), "Authorization leaked to the redirect target: {seen:?}");
}

#[test]
fn tls_registry_needs_its_ca_or_tls_verify_false() {
    if let Some(r) = usable() {
        skip!("{r}");
    }
    let t = tempdir();
    let certs = t.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    make_certs(&certs);
    let reg = Registry::start_with(Auth::None, Some((&certs.join("server.crt"), &certs.join("server.key"))));
    let (layout, _) = busybox_image(&t.path().join("oci"), "1");
    reg.push(&layout.dir, "1", "tls/bb");
    let image = format!("{}/tls/bb:1", reg.host());
    // Verified by default: an unknown CA is refused, and the message names the way out.
    let mut c = burrow();
    c.arg("pull").arg("--store").arg(t.path().join("s1")).args(["--retry=0", &image]);
    let o = finish(c);
    expect(&o, 125);
    assert!(stderr(&o).contains("--tls-verify=false") && stderr(&o).contains("https://"), "{}", stderr(&o));
    // --tls-verify=false: HTTPS without verification (the registry speaks nothing else).
    expect(&pull(&t.path().join("s2"), &[], &image), 0);
    // The CA in podman's per-registry directory: verified HTTPS.
    let home = t.path().join("home");
    let dir = home.join(".config/containers/certs.d").join(reg.host());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(certs.join("ca.crt"), dir.join("ca.crt")).unwrap();
    let mut c = burrow();
    c.env("HOME", &home).arg("pull").arg("--store").arg(t.path().join("s3")).arg(&image);
    expect(&finish(c), 0);
}
