//! An authenticating gateway in front of the test registry (token auth with a redirect to another origin) and
//! the TLS certificates of the HTTPS registry test: the parts of tests/registry.rs's fixtures that only it uses
//! (tests/support/registry.rs has the registry and the layouts). Included with
//! `#[path = "support/gateway.rs"] mod gateway;`.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// An authenticating gateway in front of the registry, as registries deployed behind a token service are: it
/// answers `/v2/` requests without `Authorization: Bearer TOKEN` with a `WWW-Authenticate: Bearer` challenge,
/// serves the token endpoint itself (TOKEN for HTTP basic USER:PASSWORD, 401 otherwise), redirects blob
/// downloads to a second port (the "object storage", another origin) and forwards the rest to the registry.
/// `log` records what each endpoint saw: `token auth=...`, `v2 METHOD PATH`, `blob auth=yes|no`.
pub struct Gateway {
    pub port: u16,
    pub blob_port: u16,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

pub const GATEWAY_TOKEN: &str = "tok-burrow-test-1";

impl Gateway {
    pub fn start(upstream: u16, user: &str, password: &str) -> Gateway {
        use std::sync::atomic::Ordering::SeqCst;
        let main = TcpListener::bind("127.0.0.1:0").unwrap();
        let blobs = TcpListener::bind("127.0.0.1:0").unwrap();
        let (port, blob_port) = (main.local_addr().unwrap().port(), blobs.local_addr().unwrap().port());
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let basic = format!("Basic {}", b64(&format!("{user}:{password}")));
        for (listener, is_blob) in [(main, false), (blobs, true)] {
            listener.set_nonblocking(true).unwrap();
            let (log, done, basic) = (log.clone(), done.clone(), basic.clone());
            std::thread::spawn(move || {
                while !done.load(SeqCst) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            conn.set_nonblocking(false).unwrap();
                            let (log, basic) = (log.clone(), basic.clone());
                            std::thread::spawn(move || {
                                gateway_conn(conn, upstream, port, blob_port, is_blob, &basic, &log)
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        Gateway { port, blob_port, log, done }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// One request per connection (`Connection: close` on every answer: no framing to track).
fn gateway_conn(
    mut conn: std::net::TcpStream,
    upstream: u16,
    port: u16,
    blob_port: u16,
    is_blob: bool,
    basic: &str,
    log: &std::sync::Mutex<Vec<String>>,
) {
    let Some(text) = crate::support::read_http_head(&mut conn) else { return };
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or("").to_string();
    let mut parts = request.split(' ');
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let auth = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.trim().to_string());
    let reply = |conn: &mut std::net::TcpStream, status: &str, extra: &str, body: &str| {
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    if is_blob {
        log.lock().unwrap().push(format!("blob auth={}", if auth.is_some() { "yes" } else { "no" }));
        return forward(conn, upstream, &method, &path);
    }
    if path.starts_with("/token") {
        log.lock()
            .unwrap()
            .push(format!("token {path} auth={}", if auth.as_deref() == Some(basic) { "ok" } else { "no" }));
        if auth.as_deref() == Some(basic) {
            let body = format!(r#"{{"token":"{GATEWAY_TOKEN}","expires_in":300}}"#);
            return reply(&mut conn, "200 OK", "Content-Type: application/json\r\n", &body);
        }
        return reply(
            &mut conn,
            "401 Unauthorized",
            "Content-Type: application/json\r\n",
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
        );
    }
    log.lock().unwrap().push(format!("v2 {method} {path}"));
    if auth.as_deref() != Some(&format!("Bearer {GATEWAY_TOKEN}")) {
        let repo = path
            .trim_start_matches("/v2/")
            .split("/manifests/")
            .next()
            .unwrap_or("")
            .split("/blobs/")
            .next()
            .unwrap_or("");
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"burrow-test\",scope=\"repository:{repo}:pull\"\r\n"
        );
        return reply(&mut conn, "401 Unauthorized", &challenge, "");
    }
    if path.contains("/blobs/") {
        let location = format!("Location: http://127.0.0.1:{blob_port}{path}\r\n");
        return reply(&mut conn, "307 Temporary Redirect", &location, "");
    }
    forward(conn, upstream, &method, &path)
}

fn forward(mut conn: std::net::TcpStream, upstream: u16, method: &str, path: &str) {
    let Ok(mut up) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else { return };
    let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
                  application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
    let _ = write!(
        up,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{upstream}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    let _ = std::io::copy(&mut up, &mut conn);
}

/// A CA and a server certificate it signed for 127.0.0.1 (openssl), in DIR: ca.crt, server.crt, server.key.
pub fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let o = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=burrow test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}
