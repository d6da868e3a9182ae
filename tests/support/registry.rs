//! A real distribution registry (Debian's `docker-registry`) on 127.0.0.1 for the pull tests, and OCI image
//! layouts built from generated root filesystems, pushed to it with skopeo.
#![allow(dead_code)]

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the tests need from the machine, or the reason they cannot run.
pub fn registry_unusable() -> Option<String> {
    for tool in ["docker-registry", "skopeo"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            return Some(format!("{tool} missing: install the Debian package (scripts/ci-setup.sh does)"));
        }
    }
    None
}

/// Authentication of a test registry.
pub enum Auth {
    None,
    /// HTTP basic with an htpasswd file (bcrypt, made with `htpasswd -B`).
    Basic {
        user: String,
        password: String,
    },
    /// An `auth:` section of the registry's config as is (e.g. `token::TokenServer::registry_auth`).
    Config(String),
}

pub struct Registry {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Registry {
    pub fn start(auth: Auth) -> Registry {
        Registry::start_with(auth, None)
    }

    /// With `tls`: HTTPS only, with this certificate and key.
    pub fn start_with(auth: Auth, tls: Option<(&Path, &Path)>) -> Registry {
        let mut dir = tempfile::Builder::new().prefix("burrow-registry.").tempdir().unwrap();
        let log = dir.path().join("registry.log");
        let auth_conf = match &auth {
            Auth::None => String::new(),
            Auth::Basic { user, password } => {
                let htpasswd = dir.path().join("htpasswd");
                let o =
                    Command::new("htpasswd").args(["-Bbn", user, password]).output().expect("htpasswd (apache2-utils)");
                assert!(o.status.success(), "htpasswd: {}", String::from_utf8_lossy(&o.stderr));
                std::fs::write(&htpasswd, &o.stdout).unwrap();
                format!("auth:\n  htpasswd:\n    realm: burrow-test\n    path: {}\n", htpasswd.display())
            }
            Auth::Config(section) => section.clone(),
        };
        let tls_conf = match tls {
            Some((cert, key)) => format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display()),
            None => String::new(),
        };
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{tls_conf}{auth_conf}",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let out = std::fs::File::create(&log).unwrap();
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("start docker-registry");
            let mut r = Registry { child: Some(child), port, dir, log: log.clone() };
            if r.wait_ready() {
                return r;
            }
            r.stop();
            dir = r.take_dir();
        }
        panic!("docker-registry did not start on a free port");
    }

    fn take_dir(&mut self) -> tempfile::TempDir {
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    fn wait_ready(&mut self) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Some(c) = self.child.as_mut() {
                if c.try_wait().ok().flatten().is_some() {
                    return false;
                }
            }
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                let mut buf = [0u8; 12];
                if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the registry (SIGKILL: "gone midway").
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The access log's request lines (`"GET /v2/... HTTP/1.1"`) made by burrow.
    pub fn burrow_requests(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter(|l| l.contains("burrow/")).filter_map(|l| l.split('"').nth(1).map(str::to_string)).collect()
    }

    /// The file in which the registry keeps a blob.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir.path().join(format!("data/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }

    /// `skopeo copy` of the layout's TAG to REPO:TAG (all platforms of an index).
    pub fn push(&self, layout: &Path, tag: &str, repo: &str) {
        let o = Command::new("skopeo")
            .args(["copy", "-q", "--all", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo}:{tag}", self.host()))
            .output()
            .expect("run skopeo");
        assert!(o.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

/// One entry of a generated layer.
pub enum Entry {
    Dir(&'static str),
    File(&'static str, Vec<u8>),
    /// An OCI whiteout: `.wh.NAME` next to NAME.
    Whiteout(&'static str),
    /// An opaque directory marker inside DIR.
    Opaque(&'static str),
    /// A whole directory tree from the host (the generated busybox rootfs), owned by root in the layer.
    Tree(PathBuf),
}

/// An OCI image layout being written.
pub struct Layout {
    pub dir: PathBuf,
    manifests: Vec<Value>,
}

/// A written layer: compressed digest and size, and the diff_id.
pub struct BuiltLayer {
    pub digest: String,
    pub size: usize,
    pub diff_id: String,
    pub media_type: &'static str,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout { dir: dir.to_path_buf(), manifests: Vec::new() }
    }

    pub fn blob(&self, bytes: &[u8]) -> (String, usize) {
        let d = sha256(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&d[7..]), bytes).unwrap();
        (d, bytes.len())
    }

    pub fn layer(&self, entries: &[Entry], c: Compression) -> BuiltLayer {
        let tar = tar_of(entries);
        let diff_id = sha256(&tar);
        let (bytes, media_type) = match c {
            Compression::None => (tar, "application/vnd.oci.image.layer.v1.tar"),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&tar).unwrap();
                (e.finish().unwrap(), "application/vnd.oci.image.layer.v1.tar+gzip")
            }
            Compression::Zstd => {
                (zstd::encode_all(&tar[..], 3).unwrap(), "application/vnd.oci.image.layer.v1.tar+zstd")
            }
        };
        let (digest, size) = self.blob(&bytes);
        BuiltLayer { digest, size, diff_id, media_type }
    }

    /// An image manifest for ARCH with these layers and Cmd; returns its descriptor (with platform).
    pub fn image(&self, layers: &[BuiltLayer], arch: &str, cmd: &[&str]) -> Value {
        let config = json!({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": cmd, "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "FROM_IMAGE=yes"]},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
        });
        let (cd, cs) = self.blob(&serde_json::to_vec(&config).unwrap());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": layers.iter().map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
        });
        let (md, ms) = self.blob(&serde_json::to_vec(&manifest).unwrap());
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
               "platform": {"architecture": arch, "os": "linux"}})
    }

    /// Names a manifest (or index) descriptor TAG in index.json.
    pub fn tag(&mut self, mut desc: Value, tag: &str) {
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.manifests.push(desc);
        let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": self.manifests});
        std::fs::write(self.dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    }

    /// An index blob over these manifest descriptors; returns its descriptor.
    pub fn index(&self, manifests: &[Value]) -> Value {
        let index =
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
        let (d, s) = self.blob(&serde_json::to_vec(&index).unwrap());
        json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": s})
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            Entry::Dir(p) => b.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), p, &[][..]).unwrap(),
            Entry::File(p, data) => {
                b.append_data(&mut header(tar::EntryType::Regular, 0o644, data.len() as u64), p, &data[..]).unwrap()
            }
            Entry::Whiteout(p) => {
                let path = Path::new(p);
                let name = format!(".wh.{}", path.file_name().unwrap().to_string_lossy());
                let wh = path.parent().map(|d| d.join(&name)).unwrap_or_else(|| PathBuf::from(&name));
                b.append_data(&mut header(tar::EntryType::Regular, 0o644, 0), wh, &[][..]).unwrap()
            }
            Entry::Opaque(d) => b
                .append_data(&mut header(tar::EntryType::Regular, 0o644, 0), Path::new(d).join(".wh..wh..opq"), &[][..])
                .unwrap(),
            Entry::Tree(root) => append_tree(&mut b, root, Path::new("")),
        }
    }
    b.into_inner().unwrap()
}

/// A host directory tree as root-owned entries (symlinks kept as links).
fn append_tree(b: &mut tar::Builder<Vec<u8>>, root: &Path, rel: &Path) {
    let mut names: Vec<_> = std::fs::read_dir(root.join(rel)).unwrap().flatten().map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        let r = rel.join(&name);
        let p = root.join(&r);
        let md = std::fs::symlink_metadata(&p).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o7777;
        if md.file_type().is_symlink() {
            let mut h = header(tar::EntryType::Symlink, 0o777, 0);
            b.append_link(&mut h, &r, std::fs::read_link(&p).unwrap()).unwrap();
        } else if md.is_dir() {
            b.append_data(&mut header(tar::EntryType::Directory, mode, 0), &r, &[][..]).unwrap();
            append_tree(b, root, &r);
        } else if md.is_file() {
            let data = std::fs::read(&p).unwrap();
            b.append_data(&mut header(tar::EntryType::Regular, mode, data.len() as u64), &r, &data[..]).unwrap();
        }
    }
}

/// A TCP proxy in front of the registry that can slow the registry's answers down, stall them, or cut every
/// connection: the network failures a pull must survive or report. Threads end when the proxy is dropped.
pub struct Proxy {
    pub port: u16,
    pub ctl: std::sync::Arc<ProxyCtl>,
}

#[derive(Default)]
pub struct ProxyCtl {
    /// Bytes per second from the registry to the client (0: unlimited).
    pub rate: std::sync::atomic::AtomicU64,
    /// Stop forwarding (connections stay open: a stalled registry).
    pub stall: std::sync::atomic::AtomicBool,
    /// Close every connection and refuse new ones (the registry is gone).
    pub cut: std::sync::atomic::AtomicBool,
    pub done: std::sync::atomic::AtomicBool,
    /// Bytes forwarded to clients so far.
    pub forwarded: std::sync::atomic::AtomicU64,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        use std::sync::atomic::Ordering::SeqCst;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let ctl = std::sync::Arc::new(ProxyCtl::default());
        let c = ctl.clone();
        std::thread::spawn(move || {
            while !c.done.load(SeqCst) {
                match listener.accept() {
                    Ok((client, _)) if !c.cut.load(SeqCst) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(up) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                        let (c1, c2) = (c.clone(), c.clone());
                        let (client2, up2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
                        std::thread::spawn(move || pump(client, up, &c1, false));
                        std::thread::spawn(move || pump(up2, client2, &c2, true));
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy { port, ctl }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.ctl.done.store(true, std::sync::atomic::Ordering::SeqCst);
        self.ctl.cut.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn pump(mut from: std::net::TcpStream, mut to: std::net::TcpStream, c: &ProxyCtl, throttled: bool) {
    use std::sync::atomic::Ordering::SeqCst;
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 16 * 1024];
    let start = Instant::now();
    let mut sent = 0u64;
    loop {
        if c.cut.load(SeqCst) || c.done.load(SeqCst) {
            break;
        }
        if throttled && c.stall.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if throttled {
            sent += n as u64;
            c.forwarded.fetch_add(n as u64, SeqCst);
            let rate = c.rate.load(SeqCst);
            if rate > 0 {
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// Pseudo-random, incompressible bytes (a layer that is large compressed too).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    crate::support::xorshift_bytes(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), len)
}
