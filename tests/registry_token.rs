//! Token authentication against the registry's own token service (issue 10): Debian's docker-registry with
//! `auth: token` trusts only JWTs signed by the token server of tests/support/token.rs. skopeo pushes with
//! credentials; burrow pulls with credentials from `burrow login`'s auth file, from --authfile and from
//! --creds; anonymous pulls and wrong passwords fail with clear errors and store nothing; the registry really
//! checks the signatures (a forged token is refused), so the pulls that succeed prove burrow used the token.
//! Run as the unprivileged test user (scripts/test.sh).

#[path = "support/registry.rs"]
mod reg;
mod support;
#[path = "support/token.rs"]
mod token;

use reg::*;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use support::*;
use token::TokenServer;

const USER: &str = "carol";
const PASSWORD: &str = "t0ken-pw";

fn pull(store: &Path, args: &[&str], image: &str, env: &[(&str, &Path)]) -> Output {
    let mut c = burrow();
    c.arg("pull").arg("--store").arg(store).args(["--tls-verify=false", "--retry=0"]).args(args).arg(image);
    for (k, v) in env {
        c.env(k, v);
    }
    let child = c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    wait_output(child, Duration::from_secs(240))
}

/// The status line of `GET /v2/REPO/manifests/TAG` with `Authorization: Bearer TOKEN`, straight to the registry.
fn status_with_token(reg: &Registry, path: &str, token: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", reg.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
        reg.host()
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines().next().unwrap_or("").to_string()
}

#[test]
fn the_registrys_own_token_auth_with_login_authfile_and_creds() {
    if let Some(r) = unusable().or_else(registry_unusable) {
        skip!("{r}");
    }
    let tokens = TokenServer::start(USER, PASSWORD);
    let reg = Registry::start(Auth::Config(tokens.registry_auth()));
    let t = tempdir();
    let mut layout = Layout::new(&t.path().join("oci"));
    let tree = Rootfs::new();
    std::fs::write(tree.path().join("etc/motd"), "behind a token\n").unwrap();
    let base = layout.layer(&[Entry::Tree(tree.path().to_path_buf())], Compression::Gzip);
    let arch = if std::env::consts::ARCH == "aarch64" { "arm64" } else { "amd64" };
    let m = layout.image(&[base], arch, &["/bin/cat", "/etc/motd"]);
    layout.tag(m, "1");
    // skopeo (containers/image, as podman) pushes through the token server: pull,push for the user.
    let o = Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false", "--dest-creds", &format!("{USER}:{PASSWORD}")])
        .arg(format!("oci:{}:1", layout.dir.display()))
        .arg(format!("docker://{}/team/app:1", reg.host()))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo push with a token: {}", String::from_utf8_lossy(&o.stderr));
    assert!(
        tokens.seen().iter().any(|l| l.contains("repository:team/app:pull,push") && l.ends_with("user=carol")),
        "{:?}",
        tokens.seen()
    );
    // The registry checks the signature: a token for the same scope signed by another key is refused.
    let forged = tokens.forged_token("repository:team/app:pull");
    let status = status_with_token(&reg, "/v2/team/app/manifests/1", &forged);
    assert!(status.contains(" 401 "), "a forged token was accepted: {status}");
    let image = format!("{}/team/app:1", reg.host());

    // Anonymous: the token server hands out a token that grants nothing; the registry says why.
    let s0 = t.path().join("s0");
    let o = pull(&s0, &[], &image, &[]);
    expect(&o, 125);
    let err = stderr(&o);
    assert!(err.contains("authentication required") && err.contains("burrow login"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(tokens.seen().iter().any(|l| l.contains("repository:team/app:pull") && l.ends_with("user=anonymous")));
    assert!(!s0.join("layers").exists() || std::fs::read_dir(s0.join("layers")).unwrap().count() == 0);

    // A wrong password: the token server refuses, and the error names the registry and the way out.
    let o = pull(&t.path().join("s1"), &["--creds", &format!("{USER}:wrong")], &image, &[]);
    expect(&o, 125);
    let err = stderr(&o);
    assert!(err.contains("incorrect username or password") && err.contains(&reg.host()), "{err}");
    let rt = t.path().join("rt");
    std::fs::create_dir(&rt).unwrap();
    let login = |pw: &str| {
        let mut c = burrow();
        c.env("XDG_RUNTIME_DIR", &rt).args(["login", "--tls-verify=false", "-u", USER, "-p", pw, &reg.host()]);
        output(c)
    };
    let o = login("wrong");
    expect(&o, 125);
    assert!(stderr(&o).contains("login failed") && stderr(&o).contains(USER), "{}", stderr(&o));
    assert!(!rt.join("containers/auth.json").exists(), "a failed login stores nothing");

    // `burrow login` (token for the registry itself, no scope), then pulls with its auth file.
    assert!(expect(&login(PASSWORD), 0).contains("Login Succeeded"));
    assert!(tokens.seen().iter().any(|l| l.starts_with("scope= ") && l.ends_with("user=carol")), "{:?}", tokens.seen());
    let auth_file = rt.join("containers/auth.json");
    let store = t.path().join("store");
    expect(&pull(&store, &[], &image, &[("XDG_RUNTIME_DIR", &rt)]), 0);
    let mut c = burrow();
    c.args(["run", "--store"]).arg(&store).args(["--pull=never", &image]);
    assert_eq!(expect(&output(c), 0), "behind a token\n");
    // The same file by --authfile (no XDG_RUNTIME_DIR: the HPC case), and --creds.
    let authfile = auth_file.to_str().unwrap();
    expect(&pull(&t.path().join("s2"), &["--authfile", authfile], &image, &[]), 0);
    expect(&pull(&t.path().join("s3"), &["--creds", &format!("{USER}:{PASSWORD}")], &image, &[]), 0);
    assert!(
        tokens.seen().iter().filter(|l| l.contains("repository:team/app:pull ") && l.ends_with("user=carol")).count()
            >= 3,
        "each pull asked for a pull-only token as carol: {:?}",
        tokens.seen()
    );
}
