//! Images (issue 10) through the real binary, as an unprivileged user with subordinate IDs (burrow-t1):
//! `burrow run IMAGE` with the image config and its overrides, both overlay drivers and a kept upper; missing
//! images and bad references; rmi of an image in use; prune. Extraction is in images_extract.rs, archive
//! formats in images_import.rs, published ports and `ps` in images_ports.rs.

mod support;
#[macro_use]
#[path = "support/store.rs"]
mod store;
use std::process::Stdio;
use std::time::Duration;
use store::*;
use support::oci::{self, Comp};
use support::*;

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
