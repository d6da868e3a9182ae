//! Extended attributes: passed through to the real object, reached through its handle's
//! `/proc/self/fd/N` path (the xattr calls have no `*at` form before Linux 6.13).
//!
//! The overlay's own names (`user.overlay.*`, kernel `userxattr` mode) are hidden. A user's
//! own `user.overlay.X` is stored escaped as `user.overlay.overlay.X`, as kernel overlayfs
//! does since Linux 6.7: that is what an overlay nested inside this one writes, and a kernel
//! mount of the same upper shows it back as `user.overlay.X`.

use std::borrow::Cow;
use std::ffi::{CStr, OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use rustix::fs::XattrFlags;
use rustix::io::Errno;

use super::layers::PRIVATE_XATTR_PREFIX;

/// `user.overlay.` followed by this marks an escaped user xattr on disk.
const ESCAPE: &[u8] = b"overlay.";

/// The on-disk name of the user-visible xattr `name`.
pub(crate) fn escape(name: &OsStr) -> OsString {
    let b = name.as_bytes();
    match b.strip_prefix(PRIVATE_XATTR_PREFIX) {
        Some(rest) => {
            let mut out = PRIVATE_XATTR_PREFIX.to_vec();
            out.extend_from_slice(ESCAPE);
            out.extend_from_slice(rest);
            OsString::from_vec(out)
        }
        None => name.to_owned(),
    }
}

/// The user-visible name of the on-disk xattr `raw`, or `None` for the overlay's own names.
fn unescape(raw: &[u8]) -> Option<Cow<'_, [u8]>> {
    match raw.strip_prefix(PRIVATE_XATTR_PREFIX) {
        Some(rest) if rest.starts_with(ESCAPE) => {
            Some(Cow::Owned([PRIVATE_XATTR_PREFIX, &rest[ESCAPE.len()..]].concat()))
        }
        Some(_) => None,
        None => Some(Cow::Borrowed(raw)),
    }
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

/// The user-visible names of an on-disk list, NUL-separated.
fn visible(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for name in raw.split(|&c| c == 0).filter(|n| !n.is_empty()) {
        if let Some(shown) = unescape(name) {
            out.extend_from_slice(&shown);
            out.push(0);
        }
    }
    out
}

/// The user-visible xattr names of the object at `path` (a `/proc/self/fd/N` path).
pub(crate) fn list(path: &CStr) -> Result<Vec<u8>, Errno> {
    Ok(visible(&read_grow(|b| rustix::fs::listxattr(path, b))?))
}

pub(crate) fn get(path: &CStr, name: &OsStr) -> Result<Vec<u8>, Errno> {
    let name = escape(name);
    read_grow(|b| rustix::fs::getxattr(path, name.as_os_str(), b))
}

pub(crate) fn set(path: &CStr, name: &OsStr, value: &[u8], flags: i32) -> Result<(), Errno> {
    rustix::fs::setxattr(path, escape(name).as_os_str(), value, XattrFlags::from_bits_retain(flags as u32))
}

pub(crate) fn remove(path: &CStr, name: &OsStr) -> Result<(), Errno> {
    rustix::fs::removexattr(path, escape(name).as_os_str())
}

/// Copies every xattr the server may set (user ones always; others best effort: security and
/// trusted names need privileges a user namespace may not give), the overlay's own excluded
/// and escaped user names kept as they are.
pub(crate) fn copy_xattrs(src: &OwnedFd, dst: &OwnedFd) {
    let Ok(raw) = read_grow(|b| rustix::fs::flistxattr(src, b)) else {
        return;
    };
    for name in raw.split(|&c| c == 0).filter(|n| !n.is_empty()) {
        if unescape(name).is_none() {
            continue;
        }
        let name = OsStr::from_bytes(name);
        if let Ok(value) = read_grow(|b| rustix::fs::fgetxattr(src, name, b)) {
            let _ = rustix::fs::fsetxattr(dst, name, &value, XattrFlags::empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_overlay_names_are_escaped_and_listed_back() {
        assert_eq!(escape(OsStr::new("user.overlay.opaque")), "user.overlay.overlay.opaque");
        assert_eq!(escape(OsStr::new("user.foo")), "user.foo");
        assert_eq!(escape(OsStr::new("trusted.overlay.x")), "trusted.overlay.x");
        let raw = b"user.a\0user.overlay.opaque\0user.overlay.overlay.opaque\0security.x\0user.overlay.origin\0";
        assert_eq!(visible(raw), b"user.a\0user.overlay.opaque\0security.x\0");
    }
}
