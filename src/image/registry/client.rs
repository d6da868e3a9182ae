//! HTTP to one repository of one registry: the scheme (https; with `--tls-verify=false` https without
//! certificate checks, then plain http), authentication on demand (a request without credentials, then the
//! `WWW-Authenticate` challenge answered once: a token from the realm, or basic auth), redirects followed by
//! hand so that `Authorization` never leaves the registry's origin (blob storage gets presigned URLs), and
//! retries with backoff on connect errors, timeouts, 429 and 5xx (podman's `--retry`/`--retry-delay`).

use super::authfile::Credentials;
use super::challenge::{self, Challenge, TokenResponse};
use super::manifest;
use super::RegistryError;
use crate::image::digest::Digest;
use std::io::Read;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use ureq::http::Response;
use ureq::tls::RootCerts;
use ureq::Body;

pub const MAX_REDIRECTS: u32 = 5;
/// Image configs are JSON too, but carry the history of every layer: a larger limit than manifests.
pub const MAX_CONFIG: u64 = 16 << 20;
const USER_AGENT: &str = concat!("burrow/", env!("CARGO_PKG_VERSION"));

#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Verify TLS certificates and refuse plain HTTP (podman's `--tls-verify`, default true).
    pub tls_verify: bool,
    /// Attempts after the first on a transient error (podman's `--retry`, default 3).
    pub retries: u32,
    /// Fixed delay between attempts (podman's `--retry-delay`); None: 1 s doubling, at most 30 s.
    pub retry_delay: Option<Duration>,
    /// A read that waits longer than this for the next bytes fails (a stalled registry), then is retried.
    pub read_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            tls_verify: true,
            retries: 3,
            retry_delay: None,
            read_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(15),
        }
    }
}

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    token: Option<String>,
}

/// A client for `registry/repository` (one token scope: `repository:NAME:pull`).
pub struct Client {
    agent: ureq::Agent,
    registry: String,
    host: String,
    repository: String,
    creds: Option<Credentials>,
    opts: ClientOptions,
    scheme: OnceLock<&'static str>,
    auth: Mutex<AuthState>,
}

/// A manifest as fetched, with the digest of its bytes.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    pub digest: Digest,
}

type Resp = Response<Body>;

impl Client {
    /// `registry` as in the reference (`docker.io` is served by `registry-1.docker.io`); `repository` empty
    /// for `login`, which only checks the credentials.
    pub fn new(registry: &str, repository: &str, creds: Option<Credentials>, opts: ClientOptions) -> Client {
        // Verification off needs no roots (and a warm pull of a plain-HTTP registry does not read the bundle).
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        let roots = if opts.tls_verify { super::trust::roots(registry, home.as_deref()) } else { RootCerts::WebPki };
        let tls = ureq::tls::TlsConfig::builder().disable_verification(!opts.tls_verify).root_certs(roots).build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(USER_AGENT)
            .timeout_connect(Some(opts.connect_timeout))
            .timeout_per_read(Some(opts.read_timeout))
            .tls_config(tls)
            .build()
            .new_agent();
        let host = if registry == "docker.io" { "registry-1.docker.io".into() } else { registry.to_string() };
        Client {
            agent,
            registry: registry.into(),
            host,
            repository: repository.into(),
            creds,
            opts,
            scheme: OnceLock::new(),
            auth: Mutex::new(AuthState::default()),
        }
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Attempts after the first for a transient failure (`--retry`).
    pub fn retries(&self) -> u32 {
        self.opts.retries
    }

    /// `GET /v2/`: checks that the registry answers and that the credentials are accepted (login).
    pub fn ping(&self) -> Result<(), RegistryError> {
        let (resp, url) = self.execute("GET", "/v2/", None)?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            401 | 403 => Err(self.denied(resp)),
            _ => Err(status_error("GET", &url, resp)),
        }
    }

    /// The digest the registry has for `reference` (a tag or digest), from a HEAD request; None when the
    /// registry does not know it or does not say (then the caller fetches the manifest).
    pub fn head_manifest(&self, reference: &str) -> Result<Option<Digest>, RegistryError> {
        let path = format!("/v2/{}/manifests/{reference}", self.repository);
        let (resp, url) = self.execute("HEAD", &path, Some(manifest::ACCEPT))?;
        match resp.status().as_u16() {
            200..=299 => Ok(header(&resp, "docker-content-digest").and_then(|d| Digest::parse(&d).ok())),
            404 => Ok(None),
            401 | 403 => Err(self.denied(resp)),
            _ => Err(status_error("HEAD", &url, resp)),
        }
    }

    /// The manifest (or index) for `reference`. Its digest is computed from the bytes and must equal the
    /// reference when that is a digest, and the registry's `Docker-Content-Digest` when it sends one.
    pub fn manifest(&self, reference: &str, what: &str) -> Result<Fetched, RegistryError> {
        let path = format!("/v2/{}/manifests/{reference}", self.repository);
        let (resp, url) = self.execute("GET", &path, Some(manifest::ACCEPT))?;
        match resp.status().as_u16() {
            200..=299 => {}
            404 => {
                return Err(RegistryError::ManifestUnknown { reference: what.into(), registry: self.registry.clone() })
            }
            401 | 403 => return Err(self.denied(resp)),
            _ => return Err(status_error("GET", &url, resp)),
        }
        let content_type = header(&resp, "content-type");
        let claimed = header(&resp, "docker-content-digest");
        let bytes = read_limited(resp, manifest::MAX_DOCUMENT, what, &url)?;
        let digest = Digest::of(&bytes);
        let expected =
            Digest::parse(reference).ok().map(|d| d.to_string()).or(claimed.filter(|c| c.starts_with("sha256:")));
        if let Some(expected) = expected {
            if expected != digest.to_string() {
                return Err(RegistryError::DigestMismatch {
                    what: what.into(),
                    url,
                    expected,
                    actual: digest.to_string(),
                });
            }
        }
        Ok(Fetched { bytes, content_type, digest })
    }

    /// A small blob (an image config or a child manifest), read whole and verified.
    pub fn blob_bytes(&self, digest: &Digest, what: &str) -> Result<Vec<u8>, RegistryError> {
        let (resp, url) = self.open_blob(digest)?;
        let bytes = read_limited(resp, MAX_CONFIG, what, &url)?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(RegistryError::DigestMismatch {
                what: what.into(),
                url,
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// A blob's body as a stream of at most `size` bytes (the descriptor's size: a registry cannot make the
    /// store read more). The caller verifies the digest while it reads (`Store::ingest_layer`).
    pub fn blob(&self, digest: &Digest, size: u64) -> Result<(Box<dyn Read + Send>, String), RegistryError> {
        let (resp, url) = self.open_blob(digest)?;
        Ok((Box::new(resp.into_body().into_reader().take(size)), url))
    }

    fn open_blob(&self, digest: &Digest) -> Result<(Resp, String), RegistryError> {
        let path = format!("/v2/{}/blobs/{digest}", self.repository);
        let (resp, url) = self.execute("GET", &path, None)?;
        match resp.status().as_u16() {
            200..=299 => Ok((resp, url)),
            401 | 403 => Err(self.denied(resp)),
            _ => Err(status_error("GET", &url, resp)),
        }
    }

    fn denied(&self, resp: Resp) -> RegistryError {
        let detail = error_detail(resp);
        match &self.creds {
            Some(c) if self.repository.is_empty() => {
                RegistryError::LoginFailed { registry: self.registry.clone(), user: c.username.clone(), detail }
            }
            _ => RegistryError::Unauthorized {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                detail,
            },
        }
    }

    /// One request with retries; the first request of a client also settles the scheme.
    fn execute(&self, method: &'static str, path: &str, accept: Option<&str>) -> Result<(Resp, String), RegistryError> {
        if let Some(scheme) = self.scheme.get() {
            let url = format!("{scheme}://{}{path}", self.host);
            return self.retrying(|| self.exchange(method, &url, accept));
        }
        if self.opts.tls_verify {
            let _ = self.scheme.set("https");
            return self.execute(method, path, accept);
        }
        // --tls-verify=false: https without verification if the registry speaks it, else plain http.
        let https = format!("https://{}{path}", self.host);
        match self.exchange(method, &https, accept) {
            Ok(r) => {
                let _ = self.scheme.set("https");
                Ok(r)
            }
            Err(RegistryError::Unreachable { .. }) => {
                let http = format!("http://{}{path}", self.host);
                let first = self.exchange(method, &http, accept);
                if !matches!(first, Err(RegistryError::Unreachable { .. })) {
                    let _ = self.scheme.set("http");
                }
                match first {
                    Err(e) if e.is_transient() => self.retrying(|| self.exchange(method, &http, accept)),
                    other => other,
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `op` again after a delay while it fails transiently or answers 429/5xx.
    fn retrying(
        &self,
        mut op: impl FnMut() -> Result<(Resp, String), RegistryError>,
    ) -> Result<(Resp, String), RegistryError> {
        let mut attempt = 0u32;
        loop {
            let result = op();
            let wait = match &result {
                Ok((r, _)) if retryable_status(r.status().as_u16()) => Some(retry_after(r)),
                Err(e) if e.is_transient() => Some(None),
                _ => None,
            };
            match wait {
                Some(server_says) if attempt < self.opts.retries => {
                    std::thread::sleep(server_says.unwrap_or_else(|| self.backoff(attempt)));
                    attempt += 1;
                }
                _ => return result,
            }
        }
    }

    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        self.opts
            .retry_delay
            .unwrap_or_else(|| Duration::from_secs(1u64 << attempt.min(5)).min(Duration::from_secs(30)))
    }

    /// One request, authenticated on a 401 challenge (once), following redirects by hand.
    fn exchange(&self, method: &'static str, url: &str, accept: Option<&str>) -> Result<(Resp, String), RegistryError> {
        let mut url = url.to_string();
        let origin0 = origin(&url);
        let mut reauthenticated = false;
        let mut hops = 0;
        loop {
            // Credentials go only to the registry's own origin, never to the blob store a redirect names.
            let ours = origin(&url) == origin0;
            let auth = if ours { self.auth_header() } else { None };
            let resp = self.send(method, &url, accept, auth.as_deref())?;
            let status = resp.status().as_u16();
            if status == 401 && ours && !reauthenticated {
                let values = resp.headers().get_all("www-authenticate");
                if let Some(ch) = challenge::parse(values.iter().filter_map(|v| v.to_str().ok())) {
                    self.authenticate(ch)?;
                    reauthenticated = true;
                    continue;
                }
            }
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(RegistryError::TooManyRedirects { url });
                }
                let next = header(&resp, "location").and_then(|l| resolve(&url, &l));
                url = next.ok_or_else(|| RegistryError::BadRedirect { url: url.clone() })?;
                continue;
            }
            return Ok((resp, url));
        }
    }

    fn send(
        &self,
        method: &'static str,
        url: &str,
        accept: Option<&str>,
        auth: Option<&str>,
    ) -> Result<Resp, RegistryError> {
        let mut req = if method == "HEAD" { self.agent.head(url) } else { self.agent.get(url) };
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        req.call().map_err(|e| self.unreachable(url, e))
    }

    fn unreachable(&self, url: &str, e: ureq::Error) -> RegistryError {
        let detail = e.to_string();
        let tls = matches!(e, ureq::Error::Tls(_) | ureq::Error::Rustls(_))
            || detail.contains("InvalidContentType")
            || detail.contains("corrupt message")
            || detail.contains("certificate");
        let hint = if tls && self.opts.tls_verify {
            " (for a registry with a self-signed certificate or plain HTTP, use --tls-verify=false)"
        } else {
            ""
        };
        RegistryError::Unreachable { registry: self.registry.clone(), url: url.into(), detail, hint }
    }

    fn auth_header(&self) -> Option<String> {
        let state = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        match (&state.challenge, &state.token, &self.creds) {
            (Some(Challenge::Bearer { .. }), Some(t), _) => Some(format!("Bearer {t}")),
            (Some(Challenge::Basic), _, Some(c)) => Some(c.basic_header()),
            _ => None,
        }
    }

    /// Answers a challenge: basic auth needs credentials; a bearer token comes from the realm (with the
    /// credentials as basic auth when there are any: anonymous tokens otherwise).
    fn authenticate(&self, ch: Challenge) -> Result<(), RegistryError> {
        let token = match &ch {
            Challenge::Basic if self.creds.is_none() => {
                return Err(RegistryError::Unauthorized {
                    registry: self.registry.clone(),
                    repository: self.repository.clone(),
                    detail: ": the registry wants a user name and password".into(),
                })
            }
            Challenge::Basic => None,
            Challenge::Bearer { realm, service, .. } => Some(self.fetch_token(realm, service.as_deref())?),
        };
        let mut state = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        state.challenge = Some(ch);
        state.token = token;
        Ok(())
    }

    fn fetch_token(&self, realm: &str, service: Option<&str>) -> Result<String, RegistryError> {
        let scope = (!self.repository.is_empty()).then(|| format!("repository:{}:pull", self.repository));
        let (resp, url) = self.retrying(|| {
            let mut req = self.agent.get(realm);
            if let Some(s) = service {
                req = req.query("service", s);
            }
            if let Some(s) = &scope {
                req = req.query("scope", s);
            }
            if let Some(c) = &self.creds {
                req = req.header("Authorization", c.basic_header());
            }
            req.call().map(|r| (r, realm.to_string())).map_err(|e| self.unreachable(realm, e))
        })?;
        match resp.status().as_u16() {
            200..=299 => {}
            401 | 403 => return Err(self.denied(resp)),
            _ => return Err(status_error("GET", &url, resp)),
        }
        let bytes = read_limited(resp, 1 << 20, "token", &url)?;
        let parsed: Option<TokenResponse> = serde_json::from_slice(&bytes).ok();
        parsed.and_then(TokenResponse::into_token).ok_or_else(|| RegistryError::Status {
            method: "GET",
            url,
            status: 200,
            detail: ": the token server's answer has no token".into(),
        })
    }
}

pub(crate) fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// A `Retry-After` in seconds (the HTTP-date form is rare from registries: the backoff applies then).
fn retry_after(resp: &Resp) -> Option<Duration> {
    header(resp, "retry-after").and_then(|v| v.trim().parse::<u64>().ok()).map(|s| Duration::from_secs(s.min(60)))
}

fn header(resp: &Resp, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn read_limited(resp: Resp, limit: u64, what: &str, url: &str) -> Result<Vec<u8>, RegistryError> {
    resp.into_body().into_with_config().limit(limit).read_to_vec().map_err(|e| match e {
        ureq::Error::BodyExceedsLimit(_) => RegistryError::TooLarge { what: what.into(), url: url.into(), limit },
        ureq::Error::Io(source) => RegistryError::Body { what: what.into(), url: url.into(), source },
        other => RegistryError::Body { what: what.into(), url: url.into(), source: std::io::Error::other(other) },
    })
}

/// The distribution API's error body (`{"errors":[{"code":..., "message":...}]}`) as `: CODE: message`.
fn error_detail(resp: Resp) -> String {
    let bytes = resp.into_body().into_with_config().limit(64 << 10).read_to_vec().unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errors>(&bytes) {
        Ok(e) if !e.errors.is_empty() => {
            let parts: Vec<String> = e.errors.iter().map(|x| format!("{}: {}", x.code, x.message)).collect();
            format!(": {}", parts.join("; "))
        }
        _ => String::new(),
    }
}

fn status_error(method: &'static str, url: &str, resp: Resp) -> RegistryError {
    let status = resp.status();
    let reason = status.canonical_reason().map(|r| format!(" {r}")).unwrap_or_default();
    RegistryError::Status {
        method,
        url: url.into(),
        status: status.as_u16(),
        detail: format!("{reason}{}", error_detail(resp)),
    }
}

/// `scheme://host[:port]` of an absolute URL (lowercased host; default ports made explicit).
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?.rsplit('@').next()?.to_ascii_lowercase();
    let default = if scheme.eq_ignore_ascii_case("https") { "443" } else { "80" };
    let has_port = authority.rsplit_once(':').is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()));
    let authority = if has_port { authority } else { format!("{authority}:{default}") };
    Some(format!("{}://{authority}", scheme.to_ascii_lowercase()))
}

/// A `Location` header against the URL it came from.
fn resolve(base: &str, location: &str) -> Option<String> {
    let location = location.trim();
    if location.is_empty() {
        return None;
    }
    if location.starts_with("http://") || location.starts_with("https://") {
        return Some(location.to_string());
    }
    let (scheme, rest) = base.split_once("://")?;
    if let Some(net) = location.strip_prefix("//") {
        return Some(format!("{scheme}://{net}"));
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    if location.starts_with('/') {
        return Some(format!("{scheme}://{authority}{location}"));
    }
    let path = &rest[authority.len()..];
    let path = path.split(['?', '#']).next().unwrap_or("");
    let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    Some(format!("{scheme}://{authority}{dir}/{location}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert_eq!(origin("https://Reg.example/v2/x"), origin("https://reg.example:443/v2/y"));
        assert_ne!(origin("https://reg.example/v2/"), origin("http://reg.example/v2/"));
        assert_ne!(origin("http://127.0.0.1:5000/v2/"), origin("http://127.0.0.1:5001/v2/"));
        assert_ne!(origin("https://reg.example/x"), origin("https://s3.example/x"));
        assert_eq!(origin("http://u:p@h:1/x").as_deref(), Some("http://h:1"));
        assert_eq!(origin("no-scheme"), None);
    }

    #[test]
    fn resolves_locations() {
        let b = "http://127.0.0.1:5000/v2/a/blobs/sha256:1?x=1";
        assert_eq!(resolve(b, "https://s3/bucket/k?sig=1").unwrap(), "https://s3/bucket/k?sig=1");
        assert_eq!(resolve(b, "/other").unwrap(), "http://127.0.0.1:5000/other");
        assert_eq!(resolve(b, "//cdn.example/p").unwrap(), "http://cdn.example/p");
        assert_eq!(resolve(b, "rel").unwrap(), "http://127.0.0.1:5000/v2/a/blobs/rel");
        assert_eq!(resolve(b, " "), None);
    }

    #[test]
    fn backoff_doubles_and_is_capped_unless_fixed() {
        let c = Client::new("127.0.0.1:1", "a", None, ClientOptions::default());
        let secs: Vec<u64> = (0..7).map(|a| c.backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
        let opts = ClientOptions { retry_delay: Some(Duration::from_millis(5)), ..ClientOptions::default() };
        let c = Client::new("127.0.0.1:1", "a", None, opts);
        assert_eq!(c.backoff(6), Duration::from_millis(5));
        assert!(retryable_status(503) && retryable_status(429) && !retryable_status(404) && !retryable_status(401));
    }
}
