//! Merged directory listing: the union of the directory's layers, upper names first, with
//! whiteouts and the names they hide left out.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use fuser::FileType;
use rustix::fs::{AtFlags, Dir, OFlags};
use rustix::io::Errno;

use super::inode::file_type;
use super::layers::{is_whiteout, Layers};

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) name: OsString,
    pub(crate) ino: u64,
    pub(crate) kind: FileType,
}

fn kind_of(t: rustix::fs::FileType) -> Option<FileType> {
    use rustix::fs::FileType as T;
    Some(match t {
        T::RegularFile => FileType::RegularFile,
        T::Directory => FileType::Directory,
        T::Symlink => FileType::Symlink,
        T::Fifo => FileType::NamedPipe,
        T::Socket => FileType::Socket,
        T::CharacterDevice => FileType::CharDevice,
        T::BlockDevice => FileType::BlockDevice,
        T::Unknown => return None,
    })
}

/// Lists the merged directory at `path`, merged from `dir_layers`.
pub(crate) fn list(
    layers: &Layers,
    path: &Path,
    dir_layers: &[usize],
) -> Result<Vec<Entry>, Errno> {
    let mut out = Vec::new();
    let merge = dir_layers.len() > 1;
    let mut seen: HashSet<OsString> = HashSet::new();
    for &layer in dir_layers {
        let mut dir = Dir::new(layers.open(layer, path, OFlags::RDONLY | OFlags::DIRECTORY, 0)?)?;
        while let Some(ent) = dir.read() {
            let ent = ent?;
            let name = OsStr::from_bytes(ent.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            if merge && !seen.insert(name.to_owned()) {
                continue;
            }
            let kind = match kind_of(ent.file_type()) {
                Some(FileType::CharDevice) | None => {
                    let st = rustix::fs::statat(dir.fd()?, name, AtFlags::SYMLINK_NOFOLLOW)?;
                    if is_whiteout(&st) {
                        continue;
                    }
                    file_type(st.st_mode)
                }
                Some(k) => k,
            };
            out.push(Entry {
                name: name.to_owned(),
                ino: layers.report_ino_raw(layer, ent.ino()),
                kind,
            });
        }
    }
    Ok(out)
}

/// Whether a directory is empty in the merged view, and the whiteouts its upper copy holds
/// (which a removal must delete first).
pub(crate) fn empty_upper_whiteouts(
    layers: &Layers,
    path: &Path,
    dir_layers: &[usize],
) -> Result<Option<Vec<OsString>>, Errno> {
    if !list(layers, path, dir_layers)?.is_empty() {
        return Ok(None);
    }
    let mut wh = Vec::new();
    if dir_layers.first() == Some(&super::layers::UPPER) {
        let mut dir = Dir::new(layers.open(0, path, OFlags::RDONLY | OFlags::DIRECTORY, 0)?)?;
        while let Some(ent) = dir.read() {
            let name = OsStr::from_bytes(ent?.file_name().to_bytes()).to_owned();
            if name != "." && name != ".." {
                wh.push(name);
            }
        }
    }
    Ok(Some(wh))
}
