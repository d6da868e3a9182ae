//! `burrow import`: images from a docker-archive (`docker save`, `podman save`: `manifest.json` and layer
//! tars), an OCI archive (a tar of an OCI image layout) or an OCI layout directory (`skopeo copy oci:DIR`).
//!
//! An archive is not unpacked: its members are indexed once (name → offset and size in the file) and each
//! layer is streamed from its place in the file into [`Store::ingest_layer`], which verifies its digest.

use super::digest::{Digest, HashingReader};
use super::media;
use super::reference::Reference;
use super::store::{Store, StoreError};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path}: not an image archive: no manifest.json (docker-archive) nor index.json and oci-layout (OCI layout)"
    )]
    Unknown { path: PathBuf },
    #[error("{path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: the image has no name: give one with --name NAME[:TAG]")]
    NoName { path: PathBuf },
    #[error("--name: {0}")]
    Name(#[from] super::reference::RefError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the archive's members are read from.
enum Source {
    Dir(PathBuf),
    /// A tar file, plain (members read in place) and its member index.
    Tar {
        file: PathBuf,
        members: HashMap<String, (u64, u64)>,
    },
}

/// JSON members are small; a larger one is malformed (or hostile).
const MAX_JSON: u64 = 16 << 20;

impl Source {
    fn open(path: &Path) -> Result<(Source, Option<tempfile::NamedTempFile>), ImportError> {
        let io_err = |source| ImportError::Io { path: path.to_path_buf(), source };
        if path.is_dir() {
            return Ok((Source::Dir(path.to_path_buf()), None));
        }
        let mut f = File::open(path).map_err(io_err)?;
        let mut head = [0u8; 4];
        let n = f.read(&mut head).map_err(io_err)?;
        f.seek(SeekFrom::Start(0)).map_err(io_err)?;
        // A compressed archive is decompressed once into $TMPDIR: members must be readable in place.
        let (file, temp) = match media::sniff(&head[..n]) {
            media::Compression::None => (path.to_path_buf(), None),
            c => {
                let mut t = tempfile::Builder::new().prefix("burrow-import.").tempfile().map_err(io_err)?;
                let mut r: Box<dyn Read> = match c {
                    media::Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(f))),
                    _ => Box::new(zstd::stream::read::Decoder::new(f).map_err(io_err)?),
                };
                io::copy(&mut r, t.as_file_mut()).map_err(io_err)?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let members =
            index_tar(&file).map_err(|e| ImportError::Malformed { path: path.into(), reason: e.to_string() })?;
        Ok((Source::Tar { file, members }, temp))
    }

    fn reader(&self, name: &str) -> io::Result<Box<dyn Read>> {
        match self {
            Source::Dir(d) => Ok(Box::new(File::open(d.join(name))?)),
            Source::Tar { file, members } => {
                let &(offset, size) = members.get(&normalize(name)).ok_or(io::ErrorKind::NotFound)?;
                let mut f = File::open(file)?;
                f.seek(SeekFrom::Start(offset))?;
                Ok(Box::new(io::BufReader::with_capacity(256 * 1024, f.take(size))))
            }
        }
    }

    fn exists(&self, name: &str) -> bool {
        match self {
            Source::Dir(d) => d.join(name).exists(),
            Source::Tar { members, .. } => members.contains_key(&normalize(name)),
        }
    }

    fn read_json(&self, name: &str) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        self.reader(name)?.take(MAX_JSON + 1).read_to_end(&mut v)?;
        if v.len() as u64 > MAX_JSON {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{name} is larger than 16 MiB")));
        }
        Ok(v)
    }
}

fn normalize(name: &str) -> String {
    name.split('/').filter(|c| !c.is_empty() && *c != ".").collect::<Vec<_>>().join("/")
}

/// Member name → (offset of its data, size); links point at their target's data.
fn index_tar(path: &Path) -> io::Result<HashMap<String, (u64, u64)>> {
    let mut archive = tar::Archive::new(io::BufReader::new(File::open(path)?));
    let mut members = HashMap::new();
    let mut links = Vec::new();
    for entry in archive.entries()? {
        let entry = entry?;
        let name = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                members.insert(name, (entry.raw_file_position(), entry.size()));
            }
            t @ (tar::EntryType::Link | tar::EntryType::Symlink) => {
                let target = String::from_utf8_lossy(&entry.link_name_bytes().unwrap_or_default()).into_owned();
                // A symlink is relative to its own directory (docker save links duplicate layer.tar files).
                let target = match (t, name.rsplit_once('/')) {
                    (tar::EntryType::Symlink, Some((dir, _))) => resolve_dots(&format!("{dir}/{target}")),
                    _ => resolve_dots(&target),
                };
                links.push((name, target));
            }
            _ => {}
        }
    }
    for (name, target) in links {
        if let Some(&v) = members.get(&target) {
            members.insert(name, v);
        }
    }
    Ok(members)
}

fn resolve_dots(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

/// One imported image.
#[derive(Debug)]
pub struct Imported {
    pub reference: Reference,
    pub id: Digest,
}

/// Imports every image of the archive or layout at `path`; `name` names it (only for a single image).
pub fn import(store: &Store, path: &Path, name: Option<&str>) -> Result<Vec<Imported>, ImportError> {
    let name = name.map(Reference::parse).transpose()?;
    let (source, _temp) = Source::open(path)?;
    if source.exists("manifest.json") {
        super::import_docker::import(store, &source_ref(&source), path, name.as_ref())
    } else if source.exists("index.json") && source.exists("oci-layout") {
        super::import_oci::import(store, &source_ref(&source), path, name.as_ref())
    } else {
        Err(ImportError::Unknown { path: path.to_path_buf() })
    }
}

fn malformed(archive: &Path, member: &str, e: impl std::fmt::Display) -> ImportError {
    ImportError::Malformed { path: archive.to_path_buf(), reason: format!("{member}: {e}") }
}

/// The archive's members, as the format readers see them.
pub struct Members<'a>(&'a Source);

fn source_ref(s: &Source) -> Members<'_> {
    Members(s)
}

impl Members<'_> {
    pub fn reader(&self, name: &str) -> io::Result<Box<dyn Read>> {
        self.0.reader(name)
    }

    /// A JSON member's bytes; a member that is missing or cannot be read makes the archive malformed (the
    /// reason names the member).
    pub fn json_bytes(&self, name: &str, archive: &Path) -> Result<Vec<u8>, ImportError> {
        self.0.read_json(name).map_err(|e| malformed(archive, name, e))
    }

    /// A JSON member parsed, with its bytes; reading or parsing it fails as [`Members::json_bytes`] does.
    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        archive: &Path,
    ) -> Result<(T, Vec<u8>), ImportError> {
        let bytes = self.json_bytes(name, archive)?;
        let parsed = serde_json::from_slice(&bytes).map_err(|e| malformed(archive, name, e))?;
        Ok((parsed, bytes))
    }

    pub fn exists(&self, name: &str) -> bool {
        self.0.exists(name)
    }

    pub fn size(&self, name: &str) -> io::Result<u64> {
        match self.0 {
            Source::Dir(d) => Ok(std::fs::metadata(d.join(name))?.len()),
            Source::Tar { members, .. } => {
                members.get(&normalize(name)).map(|m| m.1).ok_or(io::ErrorKind::NotFound.into())
            }
        }
    }

    /// The digest of a member's bytes (for a docker-archive layer stored compressed, whose digest no file
    /// names).
    pub fn digest(&self, name: &str) -> io::Result<Digest> {
        Ok(HashingReader::new(self.reader(name)?).finish()?.0)
    }
}
