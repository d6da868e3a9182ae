//! Extended attributes: passed through to the real file, except the overlay's own
//! `user.overlay.*` names, which are hidden as kernel overlayfs hides them in `userxattr` mode.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::XattrFlags;
use rustix::io::Errno;

use super::layers::PRIVATE_XATTR_PREFIX;

pub(crate) fn is_private(name: &OsStr) -> bool {
    name.as_bytes().starts_with(PRIVATE_XATTR_PREFIX)
}

/// Reads a whole xattr list or value, growing the buffer if it changed size meanwhile.
fn read_grow(mut get: impl FnMut(&mut [u8]) -> Result<usize, Errno>) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; 256];
    loop {
        match get(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e),
        }
    }
}

fn filter_private(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for name in raw.split(|&c| c == 0).filter(|n| !n.is_empty()) {
        if !is_private(OsStr::from_bytes(name)) {
            out.extend_from_slice(name);
            out.push(0);
        }
    }
    out
}

/// The names of the xattrs of the file at `path` (a `/proc/self/fd/N/...` path, not followed
/// at the end), private ones removed, NUL-separated.
pub(crate) fn list(path: &Path) -> Result<Vec<u8>, Errno> {
    Ok(filter_private(&read_grow(|b| {
        rustix::fs::llistxattr(path, b)
    })?))
}

pub(crate) fn get(path: &Path, name: &OsStr) -> Result<Vec<u8>, Errno> {
    if is_private(name) {
        return Err(Errno::OPNOTSUPP);
    }
    read_grow(|b| rustix::fs::lgetxattr(path, name, b))
}

pub(crate) fn set(path: &Path, name: &OsStr, value: &[u8], flags: i32) -> Result<(), Errno> {
    if is_private(name) {
        return Err(Errno::OPNOTSUPP);
    }
    rustix::fs::lsetxattr(
        path,
        name,
        value,
        XattrFlags::from_bits_retain(flags as u32),
    )
}

pub(crate) fn remove(path: &Path, name: &OsStr) -> Result<(), Errno> {
    if is_private(name) {
        return Err(Errno::OPNOTSUPP);
    }
    rustix::fs::lremovexattr(path, name)
}

/// Copies every xattr the server may set (user ones always; others best effort: security and
/// trusted names need privileges a user namespace may not give), private ones excluded.
pub(crate) fn copy_xattrs(src: &OwnedFd, dst: &OwnedFd) {
    let Ok(raw) = read_grow(|b| rustix::fs::flistxattr(src, b)) else {
        return;
    };
    let names = filter_private(&raw);
    for name in names.split(|&c| c == 0).filter(|n| !n.is_empty()) {
        let name = OsStr::from_bytes(name);
        if let Ok(value) = read_grow(|b| rustix::fs::fgetxattr(src, name, b)) {
            let _ = rustix::fs::fsetxattr(dst, name, &value, XattrFlags::empty());
        }
    }
}
