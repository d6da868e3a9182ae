//! Image references, by docker's rules (distribution/reference's "normalized named"): a short name goes to
//! `docker.io/library/NAME`, a missing tag means `:latest`, `@sha256:...` pins a digest, and the first path
//! component is a registry only when it looks like a host (has a `.` or a `:`, or is `localhost`).

use super::digest::{Digest, DigestError};
use std::fmt;

pub const DEFAULT_REGISTRY: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RefError {
    #[error("empty image reference")]
    Empty,
    #[error("image reference {reference:?}: {reason}")]
    Invalid { reference: String, reason: &'static str },
    #[error("image reference {reference:?}: {source}")]
    Digest { reference: String, source: DigestError },
}

/// A fully qualified image reference.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// `docker.io`, `quay.io`, `127.0.0.1:5000`...
    pub registry: String,
    /// `library/debian`, `tools/app`...
    pub repository: String,
    /// None only when a digest is given without a tag.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference the way `docker pull`/`podman pull` (with docker.io as the only search registry) do.
    pub fn parse(text: &str) -> Result<Reference, RefError> {
        let invalid = |reason| RefError::Invalid { reference: text.into(), reason };
        if text.is_empty() {
            return Err(RefError::Empty);
        }
        if text.len() > 512 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("too long or contains whitespace"));
        }
        let (name_tag, digest) = match text.split_once('@') {
            Some((n, d)) => {
                let d = Digest::parse(d).map_err(|source| RefError::Digest { reference: text.into(), source })?;
                (n, Some(d))
            }
            None => (text, None),
        };
        // A tag is after the last ':' that follows the last '/' (a ':' before it belongs to host:port).
        let last_slash = name_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (&name_tag[..last_slash + i], Some(&name_tag[last_slash + i + 1..])),
            None => (name_tag, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(invalid(
                    "a tag is 1 to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'",
                ));
            }
        }
        let (registry, repository) = split_registry(name);
        if !valid_registry(&registry) {
            return Err(invalid("malformed registry: expected HOST or HOST:PORT"));
        }
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid("repository names must be lowercase"));
        }
        if repository.is_empty() || !repository.split('/').all(valid_component) {
            return Err(invalid(
                "a repository is '/'-separated components of lowercase letters and digits joined by '.', '_', '__' or '-'",
            ));
        }
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        if registry.len() + 1 + repository.len() > 255 {
            return Err(invalid("the name is longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference { registry, repository, tag, digest })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form docker prints: `debian:12` for `docker.io/library/debian:12`.
    pub fn familiar(&self) -> String {
        let full = self.to_string();
        let short = full.strip_prefix("docker.io/").unwrap_or(&full);
        short.strip_prefix("library/").filter(|s| !s.contains('/')).unwrap_or(short).to_string()
    }

    /// The tag, or the digest when there is no tag: what the registry's manifest endpoint takes.
    pub fn tag_or_digest(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.into(),
        }
    }
}

fn split_registry(name: &str) -> (String, &str) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            let registry = if first == "index.docker.io" { DEFAULT_REGISTRY } else { first };
            (registry.to_string(), rest)
        }
        _ => (DEFAULT_REGISTRY.to_string(), name),
    }
}

/// `HOST[:PORT]`, HOST being DNS labels or a bracketed IPv6 address.
fn valid_registry(r: &str) -> bool {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (r, None),
    };
    if port.is_some_and(|p| p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(&b[0]) || !alnum(&b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(&b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(&b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl std::str::FromStr for Reference {
    type Err = RefError;
    fn from_str(s: &str) -> Result<Reference, RefError> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn full(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn short_names_go_to_docker_library_with_latest() {
        assert_eq!(full("debian"), "docker.io/library/debian:latest");
        assert_eq!(full("debian:12"), "docker.io/library/debian:12");
        assert_eq!(full("docker.io/debian:12"), "docker.io/library/debian:12");
        assert_eq!(full("index.docker.io/library/debian"), "docker.io/library/debian:latest");
        assert_eq!(full("user/app"), "docker.io/user/app:latest");
        assert_eq!(full("user/app:1.0"), "docker.io/user/app:1.0");
    }

    #[test]
    fn registries_with_ports_paths_and_localhost() {
        let r = Reference::parse("127.0.0.1:5000/tools/app:1.0").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "tools/app", Some("1.0"))
        );
        assert_eq!(full("localhost/app"), "localhost/app:latest");
        assert_eq!(full("localhost:5000/a/b/c"), "localhost:5000/a/b/c:latest");
        assert_eq!(full("quay.io/podman/stable"), "quay.io/podman/stable:latest");
        assert_eq!(full("[::1]:5000/app:v2"), "[::1]:5000/app:v2");
        // A first component without '.', ':' or localhost is a docker.io namespace.
        assert_eq!(full("myhost/app"), "docker.io/myhost/app:latest");
    }

    #[test]
    fn digests_pin_and_tags_are_kept_beside_them() {
        let r = Reference::parse(&format!("debian@{D}")).unwrap();
        assert_eq!((r.tag.as_deref(), r.digest.as_ref().map(|d| d.to_string())), (None, Some(D.to_string())));
        assert_eq!(r.to_string(), format!("docker.io/library/debian@{D}"));
        assert_eq!(r.tag_or_digest(), D);
        assert_eq!(full(&format!("127.0.0.1:5000/a:1@{D}")), format!("127.0.0.1:5000/a:1@{D}"));
        let e = Reference::parse("debian@sha512:00").unwrap_err().to_string();
        assert!(e.contains("only sha256"), "{e}");
        assert!(matches!(Reference::parse("debian@sha256:abc"), Err(RefError::Digest { .. })));
    }

    #[test]
    fn malformed_references_are_refused_with_the_reason() {
        assert_eq!(Reference::parse(""), Err(RefError::Empty));
        for bad in
            ["Debian", "debian:", "debian:-x", "a//b", "a/", "/a", "a b", "app:.x", "a..b", "-a", "a-", "x:y:z/a"]
        {
            assert!(Reference::parse(bad).is_err(), "{bad} should be refused");
        }
        let e = Reference::parse("Debian").unwrap_err().to_string();
        assert!(e.contains("lowercase"), "{e}");
        assert!(Reference::parse(&format!("a:{}", "t".repeat(129))).is_err());
        assert!(Reference::parse(&format!("a:{}", "t".repeat(128))).is_ok());
        for good in ["a__b", "a_b", "a---b", "a.b", "a-b/c.d_e", "a1/2b"] {
            assert!(Reference::parse(good).is_ok(), "{good} should parse");
        }
    }

    #[test]
    fn familiar_form_drops_the_defaults_only() {
        let f = |s: &str| Reference::parse(s).unwrap().familiar();
        assert_eq!(f("debian:12"), "debian:12");
        assert_eq!(f("user/app"), "user/app:latest");
        assert_eq!(f("127.0.0.1:5000/app:1"), "127.0.0.1:5000/app:1");
    }
}
