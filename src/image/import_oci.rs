//! OCI image layouts (a directory, or a tar of one): `index.json` names manifests (or indexes of per-platform
//! manifests, from which this machine's platform is picked), every blob under `blobs/sha256/`.

use super::digest::Digest;
use super::import::{ImportError, Imported, Members};
use super::reference::Reference;
use super::store::Store;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use std::path::Path;

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

fn blob(d: &Descriptor) -> Result<(Digest, String), String> {
    let digest = Digest::parse(d.digest().as_ref()).map_err(|e| e.to_string())?;
    let path = format!("blobs/sha256/{}", digest.hex());
    Ok((digest, path))
}

fn is_index(d: &Descriptor) -> bool {
    let t = d.media_type().to_string();
    t == "application/vnd.oci.image.index.v1+json" || t == "application/vnd.docker.distribution.manifest.list.v2+json"
}

/// The GOARCH name of this machine.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "arm" => "arm",
        other => other,
    }
}

pub fn import(
    store: &Store,
    m: &Members<'_>,
    path: &Path,
    name: Option<&Reference>,
) -> Result<Vec<Imported>, ImportError> {
    let malformed = |reason: String| ImportError::Malformed { path: path.to_path_buf(), reason };
    let (index, _): (ImageIndex, _) = m.json("index.json", path)?;
    let mut chosen: Vec<(Descriptor, Option<String>)> = Vec::new();
    for d in index.manifests() {
        let label = d.annotations().as_ref().and_then(|a| a.get(CONTAINERD_NAME).or_else(|| a.get(REF_NAME))).cloned();
        if is_index(d) {
            let (_, p) = blob(d).map_err(&malformed)?;
            let (nested, _): (ImageIndex, _) = m.json(&p, path)?;
            let pick = nested.manifests().iter().find(|n| {
                n.platform()
                    .as_ref()
                    .is_some_and(|p| p.os().to_string() == "linux" && p.architecture().to_string() == go_arch())
            });
            match pick {
                Some(n) => chosen.push((n.clone(), label)),
                None => return Err(malformed(format!("{p}: no manifest for linux/{}", go_arch()))),
            }
        } else if d.platform().as_ref().is_none_or(|p| p.architecture().to_string() == go_arch()) {
            chosen.push((d.clone(), label));
        }
    }
    if let Some(n) = name {
        // --name picks the manifest tagged like it when there are several.
        if chosen.len() > 1 {
            let tag = n.tag.clone().unwrap_or_default();
            chosen.retain(|(_, label)| label.as_deref().is_some_and(|l| l == tag || l.ends_with(&format!(":{tag}"))));
        }
        if chosen.len() != 1 {
            return Err(malformed(format!("--name needs a layout of one image (or one tagged {n})")));
        }
    }
    if chosen.is_empty() {
        return Err(malformed("index.json lists no image for this platform".into()));
    }
    let mut out = Vec::new();
    for (d, label) in chosen {
        let (manifest_digest, mpath) = blob(&d).map_err(&malformed)?;
        let (manifest, manifest_bytes): (ImageManifest, _) = m.json(&mpath, path)?;
        let (_, cpath) = blob(manifest.config()).map_err(&malformed)?;
        let config = m.json_bytes(&cpath, path)?;
        for l in manifest.layers() {
            let (digest, lpath) = blob(l).map_err(&malformed)?;
            let body = m.reader(&lpath).map_err(|e| malformed(format!("{lpath}: {e}")))?;
            store.ingest_layer(&digest, l.media_type().as_ref(), body)?;
        }
        let reference = match (name, label) {
            (Some(n), _) => n.clone(),
            (None, Some(l)) => {
                name_from_label(&l, path).ok_or_else(|| ImportError::NoName { path: path.to_path_buf() })?
            }
            (None, None) => return Err(ImportError::NoName { path: path.to_path_buf() }),
        };
        store.put_image(&reference, &manifest_digest, &manifest_bytes, &config)?;
        out.push(Imported { reference, id: Digest::of(&config) });
    }
    Ok(out)
}

/// A `ref.name` that is a whole reference names the image; a bare tag is put on `localhost/BASENAME` (the
/// layout's file or directory name), as podman does for `oci:DIR:TAG`.
fn name_from_label(label: &str, path: &Path) -> Option<Reference> {
    if label.contains('/') || label.contains(':') || label.contains('@') {
        return Reference::parse(label).ok();
    }
    let base = path.file_name()?.to_string_lossy().to_lowercase();
    let base = base.trim_end_matches(".tar").trim_end_matches(".oci");
    let repo: String = base.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let repo = repo.trim_matches('-');
    Reference::parse(&format!("localhost/{repo}:{label}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_become_names() {
        let p = Path::new("/tmp/My_App.tar");
        assert_eq!(name_from_label("1.0", p).unwrap().to_string(), "localhost/my-app:1.0");
        assert_eq!(name_from_label("app:2", p).unwrap().to_string(), "docker.io/library/app:2");
        assert_eq!(name_from_label("127.0.0.1:5000/x/y:3", p).unwrap().to_string(), "127.0.0.1:5000/x/y:3");
    }
}
