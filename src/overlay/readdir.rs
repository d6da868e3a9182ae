//! Merged directory listing: the union of the directory's layers, upper names first, with
//! whiteouts and the names they hide left out.

use fuser::FileType;
use rustix::fs::{AtFlags, Dir, OFlags};
use rustix::io::Errno;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use super::inode::file_type;
use super::layers::{is_whiteout, Layers, Real};

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

/// Lists the merged directory whose layers' handles are `dir` (top first).
pub(crate) fn list(layers: &Layers, dir: &[Real]) -> Result<Vec<Entry>, Errno> {
    let mut out = Vec::new();
    let merge = dir.len() > 1;
    let mut seen: HashSet<OsString> = HashSet::new();
    for real in dir {
        let layer = real.layer;
        let mut dir = Dir::new(layers.reopen(&*real.fd, OFlags::RDONLY | OFlags::DIRECTORY)?)?;
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
            out.push(Entry { name: name.to_owned(), ino: layers.report_ino_raw(layer, ent.ino()), kind });
        }
    }
    Ok(out)
}

/// Whether a directory is empty in the merged view, and the whiteouts its upper copy holds
/// (which a removal must delete first).
pub(crate) fn empty_upper_whiteouts(layers: &Layers, dir: &[Real]) -> Result<Option<Vec<OsString>>, Errno> {
    if !list(layers, dir)?.is_empty() {
        return Ok(None);
    }
    let mut wh = Vec::new();
    if let Some(upper) = dir.first().filter(|r| r.layer == super::layers::UPPER) {
        let mut dir = Dir::new(layers.reopen(&*upper.fd, OFlags::RDONLY | OFlags::DIRECTORY)?)?;
        while let Some(ent) = dir.read() {
            let name = OsStr::from_bytes(ent?.file_name().to_bytes()).to_owned();
            if name != "." && name != ".." {
                wh.push(name);
            }
        }
    }
    Ok(Some(wh))
}
