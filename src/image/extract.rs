//! Safe extraction of one untrusted layer tar into an empty directory.
//!
//! The tar crate only parses (`Archive::entries`); every entry is written here through directory fds (see
//! [`super::layer_fs`]). What an entry may not do, and what happens instead:
//!
//! | shape | outcome |
//! |---|---|
//! | `..` component or absolute path | layer rejected |
//! | path through a symlink, including one planted by an earlier entry (RUSTSEC-2018-0002, RUSTSEC-2021-0080) | layer rejected (`RESOLVE_NO_SYMLINKS`) |
//! | hard link whose target is outside, through a symlink, or not in this layer | layer rejected |
//! | an entry named `.` that is not a directory (umoci CVE-2021-29136) | layer rejected |
//! | mode/owner change through a symlink (tar-rs CVE-2026-33056) | impossible: only `fchmod`/`fchown` on fds opened `O_NOFOLLOW`; directories get their metadata at the end, re-opened without following |
//! | PAX `size` disagreeing with the ustar header (tokio-tar CVE-2025-62518) | the PAX size wins, as in GNU tar and Python (tar >= 0.4.44 does this); no entry hidden in the data is seen |
//! | size over [`Options::max_entry_size`] | layer rejected before reading |
//! | device nodes (an unprivileged user cannot create them) | skipped, one warning |
//! | owner outside the user namespace's map, xattrs the kernel refuses | kept as root / dropped, one warning per layer |
//! | `user.overlay.*`/`trusted.*` xattrs in the archive | dropped: the overlay's own metadata comes only from whiteouts |
//!
//! OCI whiteouts become the overlay's format (docs/design/overlay.md): `.wh.NAME` a 0/0 character device
//! NAME, `.wh..wh..opq` the `user.overlay.opaque=y` xattr on its directory.

use super::layer_fs::{self as lfs, DirError};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, Timespec, Timestamps};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use tar::EntryType;

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("layer entry {entry:?} rejected: {reason}")]
    Rejected { entry: String, reason: String },
    #[error("layer entry {entry:?}: {op}: {source}")]
    Io { entry: String, op: &'static str, source: io::Error },
    #[error("malformed layer archive: {0}")]
    Archive(io::Error),
}

/// How to extract.
#[derive(Clone, Debug)]
pub struct Options {
    /// Give entries their owners from the archive (inside a user namespace with subordinate IDs). Without it
    /// every entry stays the extracting user's own (a single-ID map cannot hold other owners).
    pub chown: bool,
    /// The largest size an entry may declare.
    pub max_entry_size: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { chown: true, max_entry_size: MAX_ENTRY_SIZE }
    }
}

/// 1 TiB: more than any real layer file; a header claiming more is malformed or hostile.
pub const MAX_ENTRY_SIZE: u64 = 1 << 40;

/// What an extraction did.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub entries: u64,
    pub bytes: u64,
    pub warnings: Vec<String>,
}

/// The metadata of an entry, applied to its fd.
#[derive(Clone, Debug)]
struct Meta {
    uid: u64,
    gid: u64,
    mode: u32,
    mtime: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// A directory whose metadata is applied at the end (its mode may forbid writing into it, and its mtime
/// changes with every entry created inside).
struct Deferred {
    comps: Vec<OsString>,
    meta: Meta,
}

struct Extractor<'a> {
    root: BorrowedFd<'a>,
    opts: &'a Options,
    report: Report,
    deferred: Vec<Deferred>,
    unmapped_owners: u64,
    /// Entries owned by someone other than root, extracted without `chown` (single-ID map).
    foreign_owners: u64,
    dropped_xattrs: Vec<String>,
}

/// Extracts the tar stream `tar` into the directory `root` (empty, the layer's root).
pub fn extract(tar: impl Read, root: BorrowedFd<'_>, opts: &Options) -> Result<Report, ExtractError> {
    let mut archive = tar::Archive::new(tar);
    let mut x = Extractor {
        root,
        opts,
        report: Report::default(),
        deferred: vec![],
        unmapped_owners: 0,
        foreign_owners: 0,
        dropped_xattrs: vec![],
    };
    for entry in archive.entries().map_err(ExtractError::Archive)? {
        let mut entry = entry.map_err(ExtractError::Archive)?;
        x.entry(&mut entry)?;
        x.report.entries += 1;
    }
    x.finish()
}

fn rejected(entry: &str, reason: impl Into<String>) -> ExtractError {
    ExtractError::Rejected { entry: entry.into(), reason: reason.into() }
}

fn io_err<'a>(entry: &'a str, op: &'static str) -> impl FnOnce(Errno) -> ExtractError + 'a {
    move |e| ExtractError::Io { entry: entry.into(), op, source: e.into() }
}

/// Splits an entry path into its components: `.` and empty ones dropped; `..` and absolute paths refused.
pub fn components(path: &[u8]) -> Result<Vec<OsString>, &'static str> {
    if path.first() == Some(&b'/') {
        return Err("absolute path");
    }
    let mut out = Vec::new();
    for c in path.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("'..' in the path"),
            c => out.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    Ok(out)
}

impl Extractor<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ExtractError> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }
        // entry.size() is the PAX size when there is one: the same size the archive was advanced by.
        if entry.size() > self.opts.max_entry_size {
            return Err(rejected(
                &name,
                format!("declares {} bytes (limit {})", entry.size(), self.opts.max_entry_size),
            ));
        }
        let comps = components(&raw).map_err(|r| rejected(&name, r))?;
        let meta = self.meta(entry, &name)?;
        let Some((last, parents)) = comps.split_last() else {
            // The layer root itself.
            if kind != EntryType::Directory {
                return Err(rejected(&name, "the layer root can only be a directory (CVE-2021-29136)"));
            }
            self.deferred.push(Deferred { comps: vec![], meta });
            return Ok(());
        };
        let parent = self.parent(&name, parents)?;
        let parent = parent.as_fd();
        if let Some(target) = last.as_bytes().strip_prefix(b".wh.") {
            return self.whiteout(&name, parent, target);
        }
        let existing = lfs::kind_at(parent, last);
        let was_whiteout = existing.as_ref().is_some_and(lfs::is_whiteout_stat);
        let existing_dir = existing.as_ref().is_some_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
        if existing.is_some() && !(kind == EntryType::Directory && existing_dir) && kind != EntryType::Link {
            lfs::remove_entry(parent, last).map_err(io_err(&name, "remove the earlier entry"))?;
        }
        match kind {
            EntryType::Directory => {
                if !existing_dir {
                    rfs::mkdirat(parent, last.as_os_str(), Mode::from_raw_mode(0o700))
                        .map_err(io_err(&name, "mkdir"))?;
                }
                if was_whiteout {
                    let dir = lfs::open_child_dir(parent, last).map_err(|e| self.dir_error(&name, e))?;
                    lfs::set_opaque(dir.as_fd()).map_err(io_err(&name, "mark opaque"))?;
                }
                self.deferred.push(Deferred { comps, meta });
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let fd = lfs::create_file(parent, last).map_err(io_err(&name, "create"))?;
                let mut file = std::fs::File::from(fd);
                let n = io::copy(entry, &mut file).map_err(|e| ExtractError::Io {
                    entry: name.clone(),
                    op: "write",
                    source: e,
                })?;
                self.report.bytes += n;
                self.apply(&name, file.as_fd(), &meta);
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| rejected(&name, "symlink without a target"))?;
                rfs::symlinkat(target.as_ref(), parent, last.as_os_str()).map_err(io_err(&name, "symlink"))?;
                self.symlink_meta(&name, parent, last, &meta);
            }
            EntryType::Link => self.hardlink(entry, &name, parent, last, existing.is_some())?,
            EntryType::Char | EntryType::Block => {
                let dev = (entry.header().device_major().ok().flatten(), entry.header().device_minor().ok().flatten());
                if kind == EntryType::Char && dev == (Some(0), Some(0)) {
                    lfs::make_whiteout(parent, last).map_err(io_err(&name, "mknod whiteout"))?;
                } else {
                    self.report.warnings.push(format!("{name}: device node skipped (an unprivileged user cannot create one; the container's /dev has its own)"));
                }
            }
            EntryType::Fifo => {
                rfs::mknodat(parent, last.as_os_str(), FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                    .map_err(io_err(&name, "mkfifo"))?;
                if let Ok(fd) = lfs::open_for_meta(parent, last) {
                    self.apply(&name, fd.as_fd(), &meta);
                }
            }
            other => self.report.warnings.push(format!("{name}: entry type {other:?} skipped")),
        }
        Ok(())
    }

    fn parent(&mut self, name: &str, parents: &[OsString]) -> Result<OwnedFd, ExtractError> {
        lfs::open_dir(self.root, parents, true).map_err(|e| self.dir_error(name, e))
    }

    fn dir_error(&self, name: &str, e: DirError) -> ExtractError {
        match e {
            DirError::Symlink => rejected(name, "its path goes through a symbolic link"),
            DirError::NotDir => rejected(name, "a component of its path is not a directory"),
            DirError::Missing => rejected(name, "a directory of its path does not exist"),
            DirError::Io(e) => {
                ExtractError::Io { entry: name.into(), op: "open the parent directory", source: e.into() }
            }
        }
    }

    fn whiteout(&mut self, name: &str, parent: BorrowedFd<'_>, target: &[u8]) -> Result<(), ExtractError> {
        if target == b".wh..opq" {
            return lfs::set_opaque(parent).map_err(io_err(name, "mark the directory opaque"));
        }
        if target.is_empty() || target == b"." || target == b".." || target.starts_with(b".wh.") {
            return Err(rejected(name, "malformed whiteout"));
        }
        let target = OsStr::from_bytes(target);
        // A name this layer already holds stays: a whiteout only hides what the layers below have.
        if lfs::kind_at(parent, target).is_none() {
            lfs::make_whiteout(parent, target).map_err(io_err(name, "mknod whiteout"))?;
        }
        Ok(())
    }

    fn hardlink<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        name: &str,
        parent: BorrowedFd<'_>,
        last: &OsStr,
        exists: bool,
    ) -> Result<(), ExtractError> {
        let target = entry.link_name_bytes().ok_or_else(|| rejected(name, "hard link without a target"))?;
        let tcomps = components(&target).map_err(|r| rejected(name, format!("hard link target: {r}")))?;
        let Some((tlast, tparents)) = tcomps.split_last() else {
            return Err(rejected(name, "hard link to the layer root"));
        };
        let tparent = lfs::open_dir(self.root, tparents, false).map_err(|e| match e {
            DirError::Io(e) => {
                ExtractError::Io { entry: name.into(), op: "open the link target's directory", source: e.into() }
            }
            _ => rejected(name, "hard link target is not a file of this layer (or goes through a symlink)"),
        })?;
        let tst = lfs::kind_at(tparent.as_fd(), tlast)
            .ok_or_else(|| rejected(name, "hard link target is not a file of this layer"))?;
        if FileType::from_raw_mode(tst.st_mode) == FileType::Directory {
            return Err(rejected(name, "hard link to a directory"));
        }
        if exists {
            if lfs::kind_at(parent, last).is_some_and(|s| (s.st_dev, s.st_ino) == (tst.st_dev, tst.st_ino)) {
                return Ok(());
            }
            lfs::remove_entry(parent, last).map_err(io_err(name, "remove the earlier entry"))?;
        }
        rfs::linkat(tparent.as_fd(), tlast.as_os_str(), parent, last, AtFlags::empty()).map_err(io_err(name, "link"))
    }

    fn meta<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, ExtractError> {
        let h = entry.header();
        let field = |r: io::Result<u64>, what: &str| r.map_err(|_| rejected(name, format!("malformed {what} field")));
        let mut meta = Meta {
            uid: field(h.uid(), "uid")?,
            gid: field(h.gid(), "gid")?,
            mode: h.mode().map_err(|_| rejected(name, "malformed mode field"))? & 0o7777,
            mtime: h.mtime().unwrap_or(0),
            xattrs: vec![],
        };
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                let Some(key) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) else { continue };
                if (key.starts_with("user.") && !key.starts_with("user.overlay.")) || key == "security.capability" {
                    meta.xattrs.push((key.to_string(), ext.value_bytes().to_vec()));
                } else {
                    self.dropped_xattrs.push(format!("{name}: {key}"));
                }
            }
        }
        Ok(meta)
    }

    /// Owner, then mode (chown clears set-ID bits), xattrs and times, all on the entry's own fd.
    fn apply(&mut self, name: &str, fd: BorrowedFd<'_>, meta: &Meta) {
        if self.opts.chown {
            let ids = (u32::try_from(meta.uid).ok(), u32::try_from(meta.gid).ok());
            let done = match ids {
                (Some(u), Some(g)) if u != u32::MAX && g != u32::MAX => {
                    rfs::fchown(fd, Some(rfs::Uid::from_raw(u)), Some(rfs::Gid::from_raw(g))).is_ok()
                }
                _ => false,
            };
            if !done {
                self.unmapped_owners += 1;
            }
        } else if meta.uid != 0 || meta.gid != 0 {
            self.foreign_owners += 1;
        }
        let _ = rfs::fchmod(fd, Mode::from_raw_mode(meta.mode));
        for (key, value) in &meta.xattrs {
            if rfs::fsetxattr(fd, key.as_str(), value, rfs::XattrFlags::empty()).is_err() {
                self.dropped_xattrs.push(format!("{name}: {key}"));
            }
        }
        let _ = rfs::futimens(fd, &times(meta.mtime));
    }

    fn symlink_meta(&mut self, _name: &str, parent: BorrowedFd<'_>, last: &OsStr, meta: &Meta) {
        if self.opts.chown {
            let ids = (u32::try_from(meta.uid).ok(), u32::try_from(meta.gid).ok());
            let ok = match ids {
                (Some(u), Some(g)) if u != u32::MAX && g != u32::MAX => rfs::chownat(
                    parent,
                    last,
                    Some(rfs::Uid::from_raw(u)),
                    Some(rfs::Gid::from_raw(g)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .is_ok(),
                _ => false,
            };
            if !ok {
                self.unmapped_owners += 1;
            }
        }
        let _ = rfs::utimensat(parent, last, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW);
    }

    /// Directory metadata, deepest first; a directory replaced since (by a symlink, say) is not followed.
    fn finish(mut self) -> Result<Report, ExtractError> {
        let deferred = std::mem::take(&mut self.deferred);
        for d in deferred.iter().rev() {
            let Ok(fd) = lfs::open_dir(self.root, &d.comps, false) else { continue };
            let name = d.comps.iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/");
            self.apply(&name, fd.as_fd(), &d.meta);
        }
        if self.unmapped_owners > 0 {
            self.report.warnings.push(format!(
                "{} entries keep root as their owner: their owner is outside this user's subordinate ID range",
                self.unmapped_owners
            ));
        }
        if self.foreign_owners > 0 {
            self.report.warnings.push(format!(
                "{} entries owned by other users or groups became root's (yours): without subordinate IDs only \
                 your own ID exists in a container (see `burrow doctor`)",
                self.foreign_owners
            ));
        }
        if let Some(first) = self.dropped_xattrs.first() {
            self.report.warnings.push(format!(
                "{} extended attributes not kept (only user.* and security.capability are; first: {first})",
                self.dropped_xattrs.len()
            ));
        }
        Ok(self.report)
    }
}

fn times(mtime: u64) -> Timestamps {
    let t = Timespec { tv_sec: i64::try_from(mtime).unwrap_or(0), tv_nsec: 0 };
    Timestamps { last_access: t, last_modification: t }
}
