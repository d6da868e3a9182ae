//! A token server for the distribution registry's own token authentication (`auth: token` in its config,
//! distribution's registry/auth/token): the registry answers `WWW-Authenticate: Bearer realm=...` and accepts
//! only JWTs that this server signs (RS256, with an RSA key and a self-signed certificate made by `openssl`;
//! the certificate goes in the JWT header's `x5c` and in the registry's `rootcertbundle`, which is how
//! distribution 2.8 finds and trusts the signing key).
//!
//! Like Docker Hub's: a request with HTTP basic USER:PASSWORD gets a token granting every scope it asks for, one
//! without credentials an anonymous token granting nothing (the registry then refuses with "authentication
//! required"), one with wrong credentials 401. Signatures are made by `openssl dgst -sha256 -sign` (no crypto
//! of the tests' own). Included with `#[path = "support/token.rs"] mod token;`.
#![allow(dead_code)]

use base64::Engine as _;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The registry's `service` (the tokens' audience) and the tokens' issuer.
pub const SERVICE: &str = "burrow-test-registry";
pub const ISSUER: &str = "burrow-test-token-server";

pub struct TokenServer {
    pub port: u16,
    dir: tempfile::TempDir,
    /// One line per token request: `scope=S,S user=NAME|anonymous|rejected`.
    log: Arc<Mutex<Vec<String>>>,
    done: Arc<AtomicBool>,
}

struct Shared {
    basic: String,
    user: String,
    key: std::path::PathBuf,
    x5c: String,
    log: Arc<Mutex<Vec<String>>>,
    serial: AtomicU64,
}

impl TokenServer {
    /// Makes the signing key and certificate, and serves `GET /token` on a free loopback port.
    pub fn start(user: &str, password: &str) -> TokenServer {
        let dir = tempfile::Builder::new().prefix("burrow-token.").tempdir().unwrap();
        let o = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem"])
            .args(["-days", "2", "-subj", "/CN=burrow test token signer"])
            .current_dir(dir.path())
            .output()
            .expect("openssl");
        assert!(o.status.success(), "openssl req: {}", String::from_utf8_lossy(&o.stderr));
        let o = Command::new("openssl")
            .args(["x509", "-in", "cert.pem", "-outform", "DER"])
            .current_dir(dir.path())
            .output()
            .expect("openssl");
        assert!(o.status.success(), "openssl x509: {}", String::from_utf8_lossy(&o.stderr));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            basic: format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))),
            user: user.to_string(),
            key: dir.path().join("key.pem"),
            x5c: base64::engine::general_purpose::STANDARD.encode(&o.stdout),
            log: log.clone(),
            serial: AtomicU64::new(1),
        });
        listener.set_nonblocking(true).unwrap();
        let stop = done.clone();
        std::thread::spawn(move || {
            while !stop.load(SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        let shared = shared.clone();
                        std::thread::spawn(move || serve(conn, &shared));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TokenServer { port, dir, log, done }
    }

    /// The `auth:` section of the registry's config that sends clients here and trusts this server's key.
    pub fn registry_auth(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.port,
            self.dir.path().join("cert.pem").display()
        )
    }

    pub fn seen(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// A token exactly like this server's, for `scope`, but signed by another key (the registry must refuse it).
    pub fn forged_token(&self, scope: &str) -> String {
        let other = tempfile::tempdir().unwrap();
        let o = Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "other.pem"])
            .current_dir(other.path())
            .output()
            .expect("openssl");
        assert!(o.status.success(), "openssl genpkey: {}", String::from_utf8_lossy(&o.stderr));
        // The header still names this server's (trusted) certificate: only the signature is wrong.
        let der = Command::new("openssl")
            .args(["x509", "-in", "cert.pem", "-outform", "DER"])
            .current_dir(self.dir.path())
            .output()
            .unwrap()
            .stdout;
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        jwt(&other.path().join("other.pem"), &x5c, "mallory", &[scope.to_string()], 1)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.done.store(true, SeqCst);
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `%XX` escapes of a query value (and `+` as a space, as forms write it).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%').then(|| s.get(i + 1..i + 3)).flatten();
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(if b[i] == b'+' { b' ' } else { b[i] });
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `repository:NAME:ACTION,ACTION` → the claim's `access` entry.
fn access_of(scope: &str) -> Option<serde_json::Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
}

/// A JWT for `subject` granting `scopes`, signed RS256 with `key`, its certificate chain `x5c`.
fn jwt(key: &Path, x5c: &str, subject: &str, scopes: &[String], serial: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": subject, "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("burrow-test-{serial}"),
        "access": scopes.iter().filter_map(|s| access_of(s)).collect::<Vec<_>>(),
    });
    let signing_input =
        format!("{}.{}", b64url(&serde_json::to_vec(&header).unwrap()), b64url(&serde_json::to_vec(&claims).unwrap()));
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl dgst");
    child.stdin.take().unwrap().write_all(signing_input.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "openssl dgst -sign: {}", String::from_utf8_lossy(&o.stderr));
    format!("{signing_input}.{}", b64url(&o.stdout))
}

/// One request per connection (`Connection: close`).
fn serve(mut conn: TcpStream, s: &Shared) {
    let Some(text) = crate::support::read_http_head(&mut conn) else { return };
    let mut lines = text.split("\r\n");
    let target = lines.next().unwrap_or("").split(' ').nth(1).unwrap_or("").to_string();
    let auth = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.trim().to_string());
    let reply = |conn: &mut TcpStream, status: &str, body: &str| {
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .collect();
    let service_ok = params.iter().any(|(k, v)| k == "service" && v == SERVICE);
    if path != "/token" || !service_ok {
        return reply(
            &mut conn,
            "400 Bad Request",
            r#"{"errors":[{"code":"BAD_REQUEST","message":"unknown service"}]}"#,
        );
    }
    let who = match auth.as_deref() {
        None => "anonymous",
        Some(a) if a == s.basic => "user",
        Some(_) => "rejected",
    };
    let user = if who == "user" { s.user.as_str() } else { who };
    s.log.lock().unwrap().push(format!("scope={} user={user}", scopes.join(",")));
    if who == "rejected" {
        return reply(
            &mut conn,
            "401 Unauthorized",
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}"#,
        );
    }
    let granted: &[String] = if who == "user" { &scopes } else { &[] };
    let subject = if who == "user" { s.user.as_str() } else { "" };
    let token = jwt(&s.key, &s.x5c, subject, granted, s.serial.fetch_add(1, SeqCst));
    let body = serde_json::json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
    reply(&mut conn, "200 OK", &body)
}
