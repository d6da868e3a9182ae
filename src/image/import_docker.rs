//! docker-archive (`docker save`, `podman save`): `manifest.json` lists each image's config file, its tags and
//! its layer tars (usually uncompressed, so each layer's digest is its config's diff_id). There is no
//! distribution manifest, so an OCI manifest is written for it; it is the same bytes for the same image, so
//! importing an archive twice stores one image.

use super::digest::Digest;
use super::import::{ImportError, Imported, Members};
use super::media::{self, Compression};
use super::reference::Reference;
use super::store::Store;
use std::io::Read;
use std::path::Path;

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

pub fn import(
    store: &Store,
    m: &Members<'_>,
    path: &Path,
    name: Option<&Reference>,
) -> Result<Vec<Imported>, ImportError> {
    let malformed = |reason: String| ImportError::Malformed { path: path.to_path_buf(), reason };
    let io = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| ImportError::Malformed { path: path.to_path_buf(), reason: format!("{what}: {e}") }
    };
    let (entries, _): (Vec<Entry>, _) = m.json("manifest.json", path)?;
    if name.is_some() && entries.len() != 1 {
        return Err(malformed(format!("--name needs an archive of one image; this one has {}", entries.len())));
    }
    let mut out = Vec::new();
    for e in &entries {
        let (parsed, config): (oci_spec::image::ImageConfiguration, _) = m.json(&e.config, path)?;
        let diff_ids = parsed.rootfs().diff_ids();
        if diff_ids.len() != e.layers.len() {
            return Err(malformed(format!(
                "{} lists {} layers, its config {} diff_ids",
                e.config,
                e.layers.len(),
                diff_ids.len()
            )));
        }
        let mut descriptors = Vec::new();
        for (layer, diff_id) in e.layers.iter().zip(diff_ids) {
            let mut head = [0u8; 4];
            let n = m.reader(layer).and_then(|mut r| read_head(&mut r, &mut head)).map_err(io(layer))?;
            let compression = media::sniff(&head[..n]);
            // Uncompressed: the layer's digest is its diff_id, checked while it streams in.
            let digest = match compression {
                Compression::None => Digest::parse(diff_id).map_err(|err| malformed(format!("{}: {err}", e.config)))?,
                _ => m.digest(layer).map_err(io(layer))?,
            };
            let media_type = match compression {
                Compression::None => media::OCI_LAYER,
                Compression::Gzip => media::OCI_LAYER_GZIP,
                Compression::Zstd => media::OCI_LAYER_ZSTD,
            };
            let size = m.size(layer).map_err(io(layer))?;
            store.ingest_layer(&digest, media_type, m.reader(layer).map_err(io(layer))?)?;
            descriptors.push(serde_json::json!({"mediaType": media_type, "digest": digest.to_string(), "size": size}));
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": Digest::of(&config).to_string(),
                "size": config.len(),
            },
            "layers": descriptors,
        }))
        .unwrap_or_default();
        let manifest_digest = Digest::of(&manifest);
        let mut names = Vec::new();
        match name {
            Some(n) => names.push(n.clone()),
            None => {
                for t in e.repo_tags.iter().flatten() {
                    names.push(Reference::parse(t).map_err(|err| malformed(format!("RepoTags: {err}")))?);
                }
            }
        }
        if names.is_empty() {
            return Err(ImportError::NoName { path: path.to_path_buf() });
        }
        for n in names {
            store.put_image(&n, &manifest_digest, &manifest, &config)?;
            out.push(Imported { reference: n, id: Digest::of(&config) });
        }
    }
    Ok(out)
}

fn read_head(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
