//! Which certificate authorities a registry's TLS certificate may chain to: the system's CA bundle (so that a
//! site's own CA, installed the distribution's way, works) plus podman's per-registry CA directories
//! (`*.crt` in `~/.config/containers/certs.d/HOST[:PORT]/` and `/etc/containers/certs.d/HOST[:PORT]/`, the
//! place `podman` users already put a private registry's CA). Mozilla's roots (webpki-roots) when the system
//! has no bundle.

use std::path::{Path, PathBuf};
use ureq::tls::{parse_pem, Certificate, PemItem, RootCerts};

/// System CA bundles, Debian/Ubuntu, Fedora/RHEL, SUSE, Alpine/Arch order; `$SSL_CERT_FILE` first.
const BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The roots for `registry` (as in the reference: `host[:port]`).
pub fn roots(registry: &str, home: Option<&Path>) -> RootCerts {
    let mut certs: Vec<Certificate<'static>> = Vec::new();
    let bundle = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(BUNDLES.iter().map(PathBuf::from))
        .find(|p| p.is_file());
    if let Some(b) = &bundle {
        add_pem_file(b, &mut certs);
    }
    let system_roots = !certs.is_empty();
    for dir in cert_dirs(registry, home) {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> =
            entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "crt")).collect();
        files.sort();
        files.iter().for_each(|f| add_pem_file(f, &mut certs));
    }
    if !system_roots && certs.is_empty() {
        return RootCerts::WebPki;
    }
    RootCerts::new_with_certs(&certs)
}

/// podman's certs.d directories for a registry, the user's first.
pub fn cert_dirs(registry: &str, home: Option<&Path>) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(h) = home {
        v.push(h.join(".config/containers/certs.d").join(registry));
    }
    v.push(Path::new("/etc/containers/certs.d").join(registry));
    v
}

fn add_pem_file(path: &Path, out: &mut Vec<Certificate<'static>>) {
    let Ok(bytes) = std::fs::read(path) else { return };
    for item in parse_pem(&bytes).flatten() {
        if let PemItem::Certificate(c) = item {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_registry_directories_include_the_port() {
        let d = cert_dirs("127.0.0.1:5000", Some(Path::new("/home/u")));
        assert_eq!(d[0], Path::new("/home/u/.config/containers/certs.d/127.0.0.1:5000"));
        assert_eq!(d[1], Path::new("/etc/containers/certs.d/127.0.0.1:5000"));
    }

    #[test]
    fn reads_certificates_from_pem_files_and_skips_other_items() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join(".config/containers/certs.d/reg.example:5000");
        std::fs::create_dir_all(&dir).unwrap();
        // Not a certificate: ignored, not an error (a registry's client.key may sit next to its CA).
        std::fs::write(dir.join("junk.crt"), "-----BEGIN NOTHING-----\nAAAA\n-----END NOTHING-----\n").unwrap();
        match roots("reg.example:5000", Some(t.path())) {
            RootCerts::Specific(_) | RootCerts::WebPki => {}
            other => panic!("unexpected roots {other:?}"),
        }
    }
}
