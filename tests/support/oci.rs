//! Image fixtures generated in the test: layer tars (from a directory, or entry by entry), compressed with
//! gzip or zstd or not at all, written as an OCI image layout (what `skopeo copy ... oci:DIR:TAG` makes).

use sha2::{Digest as _, Sha256};
use std::io::Write;
use std::path::Path;

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

/// One layer: its uncompressed tar and how it is stored.
pub struct Layer {
    pub tar: Vec<u8>,
    pub comp: Comp,
}

/// A tar of `dir`'s content, owners 0:0, symlinks kept as links (HeaderMode::Deterministic).
pub fn tar_of_dir(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    b.append_dir_all(".", dir).expect("tar the directory");
    b.into_inner().expect("finish tar")
}

/// A tar built entry by entry.
pub struct TarBuilder(tar::Builder<Vec<u8>>);

impl Default for TarBuilder {
    fn default() -> Self {
        TarBuilder(tar::Builder::new(Vec::new()))
    }
}

impl TarBuilder {
    fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h
    }

    pub fn file(mut self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, uid, gid, data.len() as u64);
        self.0.append_data(&mut h, path, data).expect("append file");
        self
    }

    pub fn dir(mut self, path: &str, mode: u32, uid: u64, gid: u64) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, mode, uid, gid, 0);
        self.0.append_data(&mut h, path, std::io::empty()).expect("append dir");
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0, 0, 0);
        self.0.append_link(&mut h, path, target).expect("append symlink");
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0, 0, 0);
        self.0.append_link(&mut h, path, target).expect("append hard link");
        self
    }

    /// An entry whose name and link name are written as raw bytes (the builder refuses `..` and absolute
    /// paths, which hostile layers have).
    pub fn raw(mut self, kind: tar::EntryType, name: &str, link: &str, data: &[u8]) -> Self {
        let mut h = Self::header(kind, 0o644, 0, 0, data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        self.0.append(&h, data).expect("append raw");
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.0.into_inner().expect("finish tar")
    }
}

pub fn compress(tar: &[u8], comp: Comp) -> Vec<u8> {
    match comp {
        Comp::None => tar.to_vec(),
        Comp::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        Comp::Zstd => zstd::encode_all(tar, 3).unwrap(),
    }
}

fn media_type(comp: Comp) -> &'static str {
    match comp {
        Comp::None => "application/vnd.oci.image.layer.v1.tar",
        Comp::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Comp::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

/// The image config document for these layers, with `config` as its "config" member (Entrypoint, Cmd...).
pub fn config_json(layers: &[Layer], config: serde_json::Value) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(&l.tar)).collect();
    serde_json::to_vec(&serde_json::json!({
        "created": "2024-01-02T03:04:05Z",
        "architecture": go_arch(),
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn put_blob(dir: &Path, bytes: &[u8]) -> String {
    let d = sha256(bytes);
    std::fs::write(dir.join("blobs/sha256").join(&d["sha256:".len()..]), bytes).unwrap();
    d
}

/// Writes an OCI image layout at `dir` holding one image tagged `tag`; returns the layer blobs' digests.
pub fn write_layout(dir: &Path, tag: &str, layers: &[Layer], config: serde_json::Value) -> Vec<String> {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descs = Vec::new();
    let mut digests = Vec::new();
    for l in layers {
        let blob = compress(&l.tar, l.comp);
        let d = put_blob(dir, &blob);
        descs.push(serde_json::json!({"mediaType": media_type(l.comp), "digest": d, "size": blob.len()}));
        digests.push(d);
    }
    let config = config_json(layers, config);
    let cd = put_blob(dir, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let md = put_blob(dir, &manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md,
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    digests
}
