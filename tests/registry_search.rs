//! Short names through podman's search registries (issue 10): two registries of Debian's docker-registry on
//! loopback, named in `unqualified-search-registries` of a registries.conf in the test's own
//! XDG_CONFIG_HOME. `burrow pull` and `burrow run` of a short name take the first registry that has it,
//! `images` shows the fully qualified name, `rmi` and `run --pull=never` find it by the short name; a name no
//! registry has fails naming each, a malformed file fails naming the file, and without search registries a
//! short name still means docker.io. Run as the unprivileged test user (scripts/test.sh).

#[path = "support/registry.rs"]
mod reg;
mod support;

use reg::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::*;

/// A layout with one busybox image tagged TAG whose Cmd prints `says`.
fn image(dir: &Path, tag: &str, says: &str) -> Layout {
    let mut l = Layout::new(dir);
    let tree = Rootfs::new();
    let base = l.layer(&[Entry::Tree(tree.path().to_path_buf())], Compression::Gzip);
    let arch = if std::env::consts::ARCH == "aarch64" { "arm64" } else { "amd64" };
    let m = l.image(&[base], arch, &["/bin/echo", says]);
    l.tag(m, tag);
    l
}

/// `burrow ARGS` with this XDG_CONFIG_HOME and store.
fn cmd(config: &Path, store: &Path, args: &[&str]) -> Command {
    let mut c = burrow();
    c.env("XDG_CONFIG_HOME", config).env("BURROW_STORE", store).args(args);
    c
}

fn finish(mut c: Command) -> Output {
    let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_output(child, Duration::from_secs(240))
}

#[test]
fn short_names_come_from_the_first_search_registry_that_has_them() {
    if let Some(r) = unusable().or_else(registry_unusable) {
        skip!("{r}");
    }
    if subuid_start().is_none() {
        skip!("the caller has no /etc/subuid range (run as burrow-t1)");
    }
    let (first, second) = (Registry::start(Auth::None), Registry::start(Auth::None));
    let t = tempdir();
    first.push(&image(&t.path().join("both1"), "1", "both-from-first").dir, "1", "both");
    second.push(&image(&t.path().join("both2"), "1", "both-from-second").dir, "1", "both");
    second.push(&image(&t.path().join("app"), "1", "app-from-second").dir, "1", "app");
    let config = t.path().join("config");
    std::fs::create_dir_all(config.join("containers")).unwrap();
    std::fs::write(
        config.join("containers/registries.conf"),
        format!("unqualified-search-registries = [\"{}\", \"{}\"]\n", first.host(), second.host()),
    )
    .unwrap();
    let store = t.path().join("store");

    // pull: the first registry is asked and has no `app`; the second has it.
    let o = finish(cmd(&config, &store, &["pull", "--tls-verify=false", "--retry=0", "app:1"]));
    let err = stderr(&o);
    expect(&o, 0);
    assert!(err.contains(&format!("pulled {}/app:1", second.host())), "{err}");
    assert!(first.burrow_requests().iter().any(|r| r.contains("/v2/app/manifests/1")), "{:?}", first.burrow_requests());
    let listed = expect(&output(cmd(&config, &store, &["images"])), 0);
    assert!(
        listed.lines().any(|l| l.starts_with(&format!("{}/app ", second.host())) && l.contains(" 1 ")),
        "images shows the fully qualified name: {listed}"
    );
    // run --pull=never finds it by the short name; with both registries having `both`, the first wins.
    assert_eq!(expect(&output(cmd(&config, &store, &["run", "--pull=never", "app:1"])), 0), "app-from-second\n");
    let o = finish(cmd(&config, &store, &["run", "--tls-verify=false", "--retry=0", "both:1"]));
    assert_eq!(expect(&o, 0), "both-from-first\n");
    let listed = expect(&output(cmd(&config, &store, &["images"])), 0);
    assert!(listed.contains(&format!("{}/both", first.host())), "{listed}");
    assert!(!listed.contains(&format!("{}/both", second.host())), "{listed}");

    // No registry has it: one error naming the file and what each registry said.
    let o = finish(cmd(&config, &store, &["pull", "--tls-verify=false", "--retry=0", "nowhere:1"]));
    expect(&o, 125);
    let err = stderr(&o);
    assert!(err.contains("nowhere:1: not pulled from any search registry of"), "{err}");
    assert!(err.contains("registries.conf") && err.contains(&first.host()) && err.contains(&second.host()), "{err}");
    assert!(!err.contains("docker.io"), "{err}");

    // rmi by the short name removes the qualified image.
    expect(&output(cmd(&config, &store, &["rmi", "app:1"])), 0);
    let listed = expect(&output(cmd(&config, &store, &["images"])), 0);
    assert!(!listed.contains("/app "), "{listed}");

    // Without search registries a short name means docker.io (nothing is pulled with --pull=never).
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = output(cmd(&empty, &store, &["run", "--pull=never", "both:1"]));
    expect(&o, 125);
    assert!(stderr(&o).contains("docker.io/library/both:1 is not in the store"), "{}", stderr(&o));

    // A malformed file is an error naming it, not a silent fallback to docker.io.
    std::fs::write(config.join("containers/registries.conf"), "unqualified-search-registries = \"one\"\n").unwrap();
    let o = output(cmd(&config, &store, &["run", "--pull=never", "both:1"]));
    expect(&o, 125);
    assert!(stderr(&o).contains("containers/registries.conf") && stderr(&o).contains("containers-registries.conf(5)"));
    let _ = output(cmd(&empty, &store, &["rmi", &format!("{}/both:1", first.host())]));
    let _ = output(cmd(&empty, &store, &["prune"]));
}
