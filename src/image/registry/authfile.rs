//! Registry credentials in the files podman, skopeo, buildah and docker share (containers-auth.json(5)):
//! `{"auths": {"KEY": {"auth": base64("user:password")}}}`, KEY being a registry or a registry/namespace.
//!
//! Read order, podman's: `--authfile` or `$REGISTRY_AUTH_FILE`, else the primary file
//! `$XDG_RUNTIME_DIR/containers/auth.json`; then `$XDG_CONFIG_HOME/containers/auth.json` (or
//! `~/.config/...`), then `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`. Without `XDG_RUNTIME_DIR`
//! (HPC login nodes, cron, ssh without a logind session) the primary file is `/run/user/UID/...` when that
//! directory is the caller's, else containers/image's own fallback `/run/containers/UID/auth.json`; `login`
//! writes there when it can and otherwise to `$XDG_CONFIG_HOME/containers/auth.json`, which podman reads too.

use base64::Engine as _;
use serde_json::{Map, Value};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("auth file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("auth file {path}: not valid JSON ({source}); fix or remove it")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("auth file {path}: entry {key:?} has an \"auth\" field that is not base64 of USER:PASSWORD")]
    Entry { path: PathBuf, key: String },
    #[error("not logged in to {key} (no entry in {path})")]
    NotLoggedIn { key: String, path: PathBuf },
    #[error("neither HOME nor XDG_RUNTIME_DIR is set: cannot locate the auth file; pass --authfile")]
    NoHome,
}

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

impl Credentials {
    /// The value of an HTTP `Authorization: Basic` header.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

/// Where credentials are looked up, read in this order; `primary` is the one `login`/`logout` change.
#[derive(Clone, Debug)]
pub struct AuthFiles {
    pub primary: PathBuf,
    /// Where `login` writes when the primary file's directory cannot be created (no XDG_RUNTIME_DIR).
    pub fallback_write: Option<PathBuf>,
    pub read: Vec<PathBuf>,
}

/// The environment the locations come from (a struct, so that the rules are unit-tested).
#[derive(Clone, Debug, Default)]
pub struct Env {
    pub authfile: Option<PathBuf>,
    pub registry_auth_file: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    pub docker_config: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub uid: u32,
    /// `/run/user/UID` exists and belongs to the caller.
    pub run_user_is_ours: bool,
}

impl Env {
    /// The process's own environment; `authfile` is the `--authfile` option.
    pub fn current(authfile: Option<PathBuf>) -> Env {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let uid = nix::unistd::getuid().as_raw();
        let run_user = PathBuf::from(format!("/run/user/{uid}"));
        let run_user_is_ours = std::fs::metadata(&run_user)
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == uid && m.is_dir())
            .unwrap_or(false);
        Env {
            authfile,
            registry_auth_file: var("REGISTRY_AUTH_FILE"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            docker_config: var("DOCKER_CONFIG"),
            home: var("HOME"),
            uid,
            run_user_is_ours,
        }
    }
}

impl AuthFiles {
    pub fn locate(env: &Env) -> Result<AuthFiles, AuthFileError> {
        let config_home = env.xdg_config_home.clone().or_else(|| env.home.as_ref().map(|h| h.join(".config")));
        let config_file = config_home.map(|c| c.join("containers/auth.json"));
        let explicit = env.authfile.clone().or_else(|| env.registry_auth_file.clone());
        let (primary, fallback_write) = match (explicit, &env.xdg_runtime_dir) {
            (Some(p), _) => (p, None),
            (None, Some(rt)) => (rt.join("containers/auth.json"), None),
            (None, None) if env.run_user_is_ours => {
                (PathBuf::from(format!("/run/user/{}/containers/auth.json", env.uid)), None)
            }
            (None, None) => (PathBuf::from(format!("/run/containers/{}/auth.json", env.uid)), config_file.clone()),
        };
        let docker = env
            .docker_config
            .as_ref()
            .map(|d| d.join("config.json"))
            .or_else(|| env.home.as_ref().map(|h| h.join(".docker/config.json")));
        if config_file.is_none() && docker.is_none() && env.xdg_runtime_dir.is_none() && env.authfile.is_none() {
            return Err(AuthFileError::NoHome);
        }
        let mut read = vec![primary.clone()];
        read.extend(config_file);
        read.extend(docker);
        read.dedup();
        Ok(AuthFiles { primary, fallback_write, read })
    }

    /// Credentials for `registry/repository`: the most specific key of the first file that has one.
    pub fn lookup(&self, registry: &str, repository: &str) -> Result<Option<(Credentials, PathBuf)>, AuthFileError> {
        for path in &self.read {
            let Some(doc) = read_json(path)? else { continue };
            if let Some(c) = find(path, &doc, registry, repository)? {
                return Ok(Some((c, path.clone())));
            }
        }
        Ok(None)
    }

    /// Whether a file names a credential helper for `registry` (burrow does not run helpers: it says so).
    pub fn helper_for(&self, registry: &str) -> Option<(String, PathBuf)> {
        for path in &self.read {
            let Ok(Some(doc)) = read_json(path) else { continue };
            let helper = doc
                .get("credHelpers")
                .and_then(|h| h.as_object())
                .and_then(|h| h.iter().find(|(k, _)| normalize_key(k) == normalize_key(registry)))
                .and_then(|(_, v)| v.as_str())
                .or_else(|| doc.get("credsStore").and_then(|v| v.as_str()));
            if let Some(h) = helper {
                return Some((h.to_string(), path.clone()));
            }
        }
        None
    }

    /// Stores credentials for `key` (a registry, or registry/namespace) in the primary file (or its fallback);
    /// returns the file written.
    pub fn store(&self, key: &str, creds: &Credentials) -> Result<PathBuf, AuthFileError> {
        let path = self.writable_primary()?;
        let mut doc = read_json(&path)?.unwrap_or_else(|| Value::Object(Map::new()));
        let auths = auths_mut(&mut doc);
        let raw = format!("{}:{}", creds.username, creds.password);
        let mut entry = Map::new();
        entry.insert("auth".into(), Value::String(base64::engine::general_purpose::STANDARD.encode(raw)));
        auths.insert(normalize_key(key), Value::Object(entry));
        write_json(&path, &doc)?;
        Ok(path)
    }

    /// Removes `key` (or every entry with `all`) from the primary file (and its fallback); returns the files
    /// changed. A key found only in a read-only file (docker's) is reported, not changed.
    pub fn remove(&self, key: Option<&str>) -> Result<Vec<PathBuf>, AuthFileError> {
        let mut changed = Vec::new();
        let candidates: Vec<&PathBuf> = std::iter::once(&self.primary).chain(self.fallback_write.as_ref()).collect();
        for path in candidates {
            let Some(mut doc) = read_json(path)? else { continue };
            let auths = auths_mut(&mut doc);
            let before = auths.len();
            match key {
                Some(k) => auths.retain(|have, _| normalize_key(have) != normalize_key(k)),
                None => auths.clear(),
            }
            if auths.len() != before {
                write_json(path, &doc)?;
                changed.push(path.clone());
            }
        }
        if changed.is_empty() {
            if let Some(k) = key {
                return Err(AuthFileError::NotLoggedIn { key: k.into(), path: self.primary.clone() });
            }
        }
        Ok(changed)
    }

    /// The primary file, or the fallback when the primary's directory cannot be made (no XDG_RUNTIME_DIR and
    /// no /run/containers/UID: only root can create that).
    fn writable_primary(&self) -> Result<PathBuf, AuthFileError> {
        match (make_parent(&self.primary), &self.fallback_write) {
            (Ok(()), _) => Ok(self.primary.clone()),
            (Err(_), Some(fallback)) => {
                make_parent(fallback).map_err(|source| AuthFileError::Io { path: fallback.clone(), source })?;
                Ok(fallback.clone())
            }
            (Err(source), None) => Err(AuthFileError::Io { path: self.primary.clone(), source }),
        }
    }
}

fn make_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir),
        _ => Ok(()),
    }
}

fn read_json(path: &Path) -> Result<Option<Value>, AuthFileError> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(None),
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| AuthFileError::Json { path: path.to_path_buf(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.kind() == std::io::ErrorKind::NotADirectory => Ok(None),
        // An unreadable file of the chain (e.g. another user's /run/containers) does not hide the others.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(None),
        Err(source) => Err(AuthFileError::Io { path: path.to_path_buf(), source }),
    }
}

/// Writes the whole file to a temporary sibling (mode 0600: it holds passwords) and renames it into place.
fn write_json(path: &Path, doc: &Value) -> Result<(), AuthFileError> {
    let io = |source| AuthFileError::Io { path: path.to_path_buf(), source };
    let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
    let text = serde_json::to_string_pretty(doc).unwrap_or_default() + "\n";
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
    let written = f.write_all(text.as_bytes()).and_then(|_| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}

fn auths_mut(doc: &mut Value) -> &mut Map<String, Value> {
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let obj = doc.as_object_mut().expect("object");
    if !obj.get("auths").is_some_and(Value::is_object) {
        obj.insert("auths".into(), Value::Object(Map::new()));
    }
    obj.get_mut("auths").and_then(Value::as_object_mut).expect("auths object")
}

/// `https://index.docker.io/v1/` → `docker.io`, `http://h:5000` → `h:5000`, `h/ns/` → `h/ns`.
pub fn normalize_key(key: &str) -> String {
    let k = key.trim().trim_end_matches('/');
    let (had_scheme, k) = match k.strip_prefix("https://").or_else(|| k.strip_prefix("http://")) {
        Some(rest) => (true, rest),
        None => (false, k),
    };
    // A URL-style key (docker's legacy form) names a host only; its path is an API version.
    let k = if had_scheme { k.split('/').next().unwrap_or(k) } else { k };
    let (host, rest) = k.split_once('/').map(|(h, r)| (h, Some(r))).unwrap_or((k, None));
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        h => h,
    };
    match rest {
        Some(r) => format!("{host}/{r}"),
        None => host.to_string(),
    }
}

/// The entry for `registry/repository` in one file: `registry/a/b/c`, then `registry/a/b`, ..., then
/// `registry` (containers-auth.json's hierarchical match).
fn find(path: &Path, doc: &Value, registry: &str, repository: &str) -> Result<Option<Credentials>, AuthFileError> {
    let Some(auths) = doc.get("auths").and_then(Value::as_object) else { return Ok(None) };
    let entries: Vec<(String, &Value)> = auths.iter().map(|(k, v)| (normalize_key(k), v)).collect();
    let mut name = format!("{}/{}", normalize_key(registry), repository);
    loop {
        if let Some((key, entry)) = entries.iter().find(|(k, _)| *k == name) {
            if let Some(c) = decode(path, key, entry)? {
                return Ok(Some(c));
            }
        }
        match name.rsplit_once('/') {
            Some((parent, _)) => name = parent.to_string(),
            None => return Ok(None),
        }
    }
}

fn decode(path: &Path, key: &str, entry: &Value) -> Result<Option<Credentials>, AuthFileError> {
    let bad = || AuthFileError::Entry { path: path.to_path_buf(), key: key.to_string() };
    if let Some(auth) = entry.get("auth").and_then(Value::as_str).filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD.decode(auth.trim()).map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let (user, pass) = text.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credentials { username: user.into(), password: pass.into() }));
    }
    // Some tools write the two fields instead of "auth".
    match (entry.get("username").and_then(Value::as_str), entry.get("password").and_then(Value::as_str)) {
        (Some(u), Some(p)) => Ok(Some(Credentials { username: u.into(), password: p.into() })),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &Path) -> Env {
        Env { home: Some(dir.join("home")), uid: 4242, ..Env::default() }
    }

    #[test]
    fn locations_follow_podman() {
        let d = Path::new("/x");
        let mut e = env(d);
        e.xdg_runtime_dir = Some("/rt".into());
        let f = AuthFiles::locate(&e).unwrap();
        assert_eq!(f.primary, Path::new("/rt/containers/auth.json"));
        let want: Vec<PathBuf> =
            ["/rt/containers/auth.json", "/x/home/.config/containers/auth.json", "/x/home/.docker/config.json"]
                .iter()
                .map(PathBuf::from)
                .collect();
        assert_eq!(f.read, want);
        e.registry_auth_file = Some("/a.json".into());
        assert_eq!(AuthFiles::locate(&e).unwrap().primary, Path::new("/a.json"));
        e.authfile = Some("/b.json".into());
        assert_eq!(AuthFiles::locate(&e).unwrap().primary, Path::new("/b.json"));
        // No XDG_RUNTIME_DIR (HPC): /run/user/UID when it is ours, else containers/image's default with the
        // config-home file as the place login writes to.
        let mut e = env(d);
        e.xdg_config_home = Some("/cfg".into());
        e.docker_config = Some("/dc".into());
        let f = AuthFiles::locate(&e).unwrap();
        assert_eq!(f.primary, Path::new("/run/containers/4242/auth.json"));
        assert_eq!(f.fallback_write.as_deref(), Some(Path::new("/cfg/containers/auth.json")));
        assert_eq!(f.read[2], Path::new("/dc/config.json"));
        e.run_user_is_ours = true;
        assert_eq!(AuthFiles::locate(&e).unwrap().primary, Path::new("/run/user/4242/containers/auth.json"));
        assert!(matches!(AuthFiles::locate(&Env::default()), Err(AuthFileError::NoHome)));
    }

    #[test]
    fn keys_normalize_like_containers_image() {
        assert_eq!(normalize_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_key("http://127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(normalize_key("quay.io/org/"), "quay.io/org");
        assert_eq!(normalize_key("registry-1.docker.io/library"), "docker.io/library");
    }

    #[test]
    fn store_lookup_remove_round_trip_and_hierarchy() {
        let t = tempfile::tempdir().unwrap();
        let mut e = env(t.path());
        e.xdg_runtime_dir = Some(t.path().join("rt"));
        let f = AuthFiles::locate(&e).unwrap();
        assert!(f.lookup("127.0.0.1:5000", "a/b").unwrap().is_none());
        let c = Credentials { username: "u".into(), password: "p:with:colons".into() };
        let written = f.store("127.0.0.1:5000", &c).unwrap();
        assert_eq!(written, t.path().join("rt/containers/auth.json"));
        let mode = std::fs::metadata(&written).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        let ns = Credentials { username: "ns".into(), password: "q".into() };
        f.store("127.0.0.1:5000/a", &ns).unwrap();
        assert_eq!(f.lookup("127.0.0.1:5000", "a/b").unwrap().unwrap().0, ns);
        assert_eq!(f.lookup("127.0.0.1:5000", "other").unwrap().unwrap().0, c);
        assert!(f.lookup("127.0.0.1:5001", "a/b").unwrap().is_none());
        // podman's own format: other top-level fields survive a rewrite.
        let text = std::fs::read_to_string(&written).unwrap();
        assert!(text.contains("\"auths\""), "{text}");
        f.remove(Some("127.0.0.1:5000/a")).unwrap();
        assert_eq!(f.lookup("127.0.0.1:5000", "a/b").unwrap().unwrap().0, c);
        assert!(matches!(f.remove(Some("nowhere.example")), Err(AuthFileError::NotLoggedIn { .. })));
        f.remove(None).unwrap();
        assert!(f.lookup("127.0.0.1:5000", "a/b").unwrap().is_none());
    }

    #[test]
    fn reads_docker_config_and_reports_bad_entries() {
        let t = tempfile::tempdir().unwrap();
        let e = env(t.path());
        let docker = t.path().join("home/.docker/config.json");
        std::fs::create_dir_all(docker.parent().unwrap()).unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("du:dp");
        std::fs::write(
            &docker,
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}}}},"credsStore":"desktop"}}"#),
        )
        .unwrap();
        let f = AuthFiles::locate(&e).unwrap();
        let (c, from) = f.lookup("docker.io", "library/debian").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str(), from), ("du", "dp", docker.clone()));
        assert_eq!(f.helper_for("docker.io").unwrap().0, "desktop");
        std::fs::write(&docker, r#"{"auths":{"docker.io":{"auth":"!!!"}}}"#).unwrap();
        let err = f.lookup("docker.io", "x").unwrap_err().to_string();
        assert!(err.contains("not base64") && err.contains("config.json"), "{err}");
        std::fs::write(&docker, "{").unwrap();
        assert!(matches!(f.lookup("docker.io", "x"), Err(AuthFileError::Json { .. })));
        assert_eq!(format!("{:?}", c), "Credentials(du, <redacted>)");
        assert_eq!(c.basic_header(), format!("Basic {auth}"));
    }
}
