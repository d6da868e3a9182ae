//! Manifests as registries serve them: OCI and Docker schema 2 image manifests, OCI image indexes and Docker
//! manifest lists (parsed with the `oci-spec` types, which fit both: the Docker formats are the OCI ones'
//! ancestors with other media types), and the choice of one platform's manifest from an index.

use super::platform::Platform;
use crate::image::digest::Digest;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1";

/// The Accept header of a manifest request: every format burrow reads, the single-image ones first.
pub const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// Manifests and configs are small JSON documents; anything bigger is not one (4 MiB is the limit the
/// distribution registry itself enforces on manifests).
pub const MAX_DOCUMENT: u64 = 4 << 20;

/// Layer media types burrow can unpack (decompression by the store).
const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{what}: not a valid manifest or index: {reason}")]
    Invalid { what: String, reason: String },
    #[error(
        "{what}: Docker schema 1 manifests are not supported (the registry has no schema 2 or OCI manifest for \
         it; re-push the image with a current docker or podman)"
    )]
    Schema1 { what: String },
    #[error("{what}: unsupported manifest media type {media_type:?}")]
    MediaType { what: String, media_type: String },
    #[error("{what}: no image for {wanted} in this index (it has: {available}); choose one with --platform")]
    NoPlatform { what: String, wanted: String, available: String },
    #[error("{what}: layer {digest} has media type {media_type:?}, which burrow cannot unpack")]
    LayerType { what: String, digest: String, media_type: String },
    #[error("{what}: {field} digest {digest:?}: {source}")]
    Digest { what: String, field: &'static str, digest: String, source: crate::image::digest::DigestError },
}

/// A fetched manifest document, either kind.
pub enum Document {
    Image(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

/// Parses a manifest by its media type (the Content-Type, else the document's own `mediaType`, else its
/// shape: an index has `manifests`). `what` names it in errors (the reference).
pub fn parse(what: &str, content_type: Option<&str>, bytes: &[u8]) -> Result<Document, ManifestError> {
    let invalid = |reason: String| ManifestError::Invalid { what: what.into(), reason };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    let own_type = value.get("mediaType").and_then(|v| v.as_str());
    // A registry may answer application/json or text/plain: then the document's own field decides.
    let media_type = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| c.starts_with("application/vnd."))
        .or(own_type)
        .unwrap_or(if value.get("manifests").is_some() { OCI_INDEX } else { OCI_MANIFEST });
    if media_type.starts_with(DOCKER_SCHEMA1) || value.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
        return Err(ManifestError::Schema1 { what: what.into() });
    }
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let m: ImageManifest = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
            Ok(Document::Image(Box::new(m)))
        }
        OCI_INDEX | DOCKER_LIST => {
            let i: ImageIndex = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
            Ok(Document::Index(Box::new(i)))
        }
        other => Err(ManifestError::MediaType { what: what.into(), media_type: other.into() }),
    }
}

/// A descriptor's digest in burrow's type (sha256 only: other algorithms are refused with a clear message).
pub fn digest_of(what: &str, field: &'static str, d: &Descriptor) -> Result<Digest, ManifestError> {
    let text = d.digest().to_string();
    Digest::parse(&text).map_err(|source| ManifestError::Digest { what: what.into(), field, digest: text, source })
}

/// The index entry to pull for `wanted`: the best-scoring image manifest (first one on a tie, as the index
/// orders them by preference).
pub fn choose<'a>(what: &str, index: &'a ImageIndex, wanted: &Platform) -> Result<&'a Descriptor, ManifestError> {
    let mut best: Option<(u8, &Descriptor)> = None;
    for d in index.manifests() {
        let mt = d.media_type().to_string();
        if mt != OCI_MANIFEST && mt != DOCKER_MANIFEST {
            continue; // nested indexes and artifacts: not an image for a platform
        }
        let Some(p) = d.platform() else { continue };
        let score = wanted.score(&p.os().to_string(), &p.architecture().to_string(), p.variant().as_deref());
        if let Some(s) = score {
            if best.is_none_or(|(b, _)| s > b) {
                best = Some((s, d));
            }
        }
    }
    best.map(|(_, d)| d).ok_or_else(|| ManifestError::NoPlatform {
        what: what.into(),
        wanted: wanted.to_string(),
        available: platforms(index),
    })
}

fn platforms(index: &ImageIndex) -> String {
    let list: Vec<String> = index
        .manifests()
        .iter()
        .filter_map(|d| d.platform().as_ref())
        .filter(|p| p.os().to_string() != "unknown")
        .map(|p| {
            let mut s = format!("{}/{}", p.os(), p.architecture());
            if let Some(v) = p.variant() {
                s = format!("{s}/{v}");
            }
            s
        })
        .collect();
    if list.is_empty() {
        "no platforms".into()
    } else {
        list.join(", ")
    }
}

/// Checks that every layer is of a type the store unpacks (before anything is downloaded).
pub fn check_layers(what: &str, m: &ImageManifest) -> Result<(), ManifestError> {
    for l in m.layers() {
        let mt = l.media_type().to_string();
        if !LAYER_TYPES.contains(&mt.as_str()) {
            return Err(ManifestError::LayerType { what: what.into(), digest: l.digest().to_string(), media_type: mt });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn entry(digest: &str, platform: &str) -> String {
        let p: Vec<&str> = platform.split('/').collect();
        let variant = p.get(2).map(|v| format!(r#","variant":"{v}""#)).unwrap_or_default();
        format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{digest}","size":10,"platform":{{"os":"{}","architecture":"{}"{variant}}}}}"#,
            p[0], p[1]
        )
    }

    fn index(entries: &[String]) -> ImageIndex {
        let json = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#, entries.join(","));
        match parse("test", None, json.as_bytes()).unwrap() {
            Document::Index(i) => *i,
            Document::Image(_) => panic!("parsed as an image"),
        }
    }

    #[test]
    fn chooses_the_platform_and_the_closest_variant() {
        let i = index(&[entry(D1, "unknown/unknown"), entry(D2, "linux/amd64"), entry(D3, "linux/arm/v7")]);
        let pick = |p: &str| choose("t", &i, &Platform::parse(p).unwrap()).map(|d| d.digest().to_string());
        assert_eq!(pick("linux/amd64").unwrap(), D2);
        assert_eq!(pick("linux/arm/v7").unwrap(), D3);
        let e = pick("linux/arm64").unwrap_err().to_string();
        assert!(
            e.contains("linux/arm64") && e.contains("linux/amd64, linux/arm/v7") && e.contains("--platform"),
            "{e}"
        );
        assert!(!e.contains("unknown"), "{e}");
        // An exact variant beats an entry without one, whatever the order.
        let i = index(&[entry(D1, "linux/arm"), entry(D2, "linux/arm/v7")]);
        assert_eq!(choose("t", &i, &Platform::parse("linux/arm/v7").unwrap()).unwrap().digest().to_string(), D2);
    }

    #[test]
    fn parses_by_content_type_then_own_field_then_shape() {
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"{D2}","size":3}}]}}"#
        );
        assert!(matches!(parse("t", Some("application/json"), m.as_bytes()).unwrap(), Document::Image(_)));
        assert!(matches!(parse("t", Some(DOCKER_MANIFEST), m.as_bytes()).unwrap(), Document::Image(_)));
        let Document::Image(img) = parse("t", None, m.as_bytes()).unwrap() else { panic!() };
        check_layers("t", &img).unwrap();
        assert_eq!(digest_of("t", "config", img.config()).unwrap().to_string(), D1);
        let err = parse("t", Some(OCI_INDEX), m.as_bytes()).err().unwrap().to_string();
        assert!(err.contains("not a valid manifest"), "{err}");
        let s1 = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(matches!(parse("t", None, s1.as_bytes()), Err(ManifestError::Schema1 { .. })));
        let art = r#"{"schemaVersion":2,"mediaType":"application/vnd.cncf.helm.chart"}"#;
        assert!(matches!(parse("t", None, art.as_bytes()), Err(ManifestError::MediaType { .. })));
        assert!(matches!(parse("t", None, b"not json"), Err(ManifestError::Invalid { .. })));
    }

    #[test]
    fn refuses_unknown_layer_types_and_digest_algorithms() {
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha512:{}","size":2}},"layers":[{{"mediaType":"application/vnd.example.squashfs","digest":"{D2}","size":3}}]}}"#,
            "a".repeat(128)
        );
        let Document::Image(img) = parse("t", None, m.as_bytes()).unwrap() else { panic!() };
        let e = check_layers("t", &img).unwrap_err().to_string();
        assert!(e.contains("squashfs") && e.contains(D2), "{e}");
        let e = digest_of("t", "config", img.config()).unwrap_err().to_string();
        assert!(e.contains("only sha256"), "{e}");
    }
}
