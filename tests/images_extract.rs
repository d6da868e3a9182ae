//! Layer extraction through the real binary, as burrow-t1 (issue 10): whiteouts, opaque directories, zstd;
//! owners, set-ID bits and hard links through the ID mapping; hostile layers that must write nothing outside
//! and store nothing; a tampered blob; concurrent imports; an interrupted extraction; an import killed midway.

mod support;
#[macro_use]
#[path = "support/store.rs"]
mod store;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::Duration;
use store::*;
use support::oci::{self, Comp, Layer, TarBuilder};
use support::*;

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

#[test]
fn an_import_killed_midway_leaves_no_layer_and_the_next_one_completes() {
    setup!();
    let env = Env::new();
    let big = TarBuilder::default().file("big", &xorshift_bytes(0x9e37_79b9_7f4a_7c15, 8 << 20), 0o644, 0, 0).finish();
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
