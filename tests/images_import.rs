//! The archive formats users bring (issue 10), imported by the real binary as burrow-t1: `podman save`
//! docker- and OCI archives, skopeo OCI layouts, hand-crafted old-docker archives and multi-platform layouts.

mod support;
#[macro_use]
#[path = "support/store.rs"]
mod store;
use std::process::Command;
use store::*;
use support::oci::{self, Comp, Layer, TarBuilder};
use support::*;

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
