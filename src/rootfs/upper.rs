//! Mount points made in the copy-on-write layer itself, before it is mounted.
//!
//! A shared tree (an image directory on an HPC system, owned by root or by another user and read-only to the
//! caller) has an owner outside the container's ID map: inside, its directories belong to the overflow ID and
//! the container's root may not create anything in them. Overlayfs (kernel or FUSE) checks the merged
//! directory's permissions, which are the lower's, before any copy-up, so creating `/etc/hostname` or a bind
//! target through the merged view fails with EACCES although the upper directory is ours. So every mount point
//! the plan needs that the lower layers lack is created directly in the upper directory, its missing parents
//! mirrored as copy-up would make them (the lower's mode; the lower's owner when it is mapped, else the
//! container's root, since nobody can own a file as an unmapped ID), before the overlay is mounted.
//!
//! The upper directory may be kept across runs (`--upper`), so its contents are the container's: every step is
//! taken relative to an already opened directory, without following symlinks. The lower layers are read with
//! `RESOLVE_IN_ROOT`, like every other container path. A path whose lower component is a symlink or not a
//! directory is left to the mount stage, which resolves it inside the root.

use super::plan::clean_container_path;
use super::resolve::{open_in_root, Kind};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

/// A mount point the plan needs: its container path and what it must be.
pub type MountPoint = (PathBuf, Kind);

/// Creates in `upper` each of `points` that no layer of `lowers` (top-most first) has. Returns the paths
/// created, for --verbose and the tests.
pub fn prepare(lowers: &[PathBuf], upper: &Path, points: &[MountPoint]) -> io::Result<Vec<PathBuf>> {
    let lowers = lowers.iter().map(|l| open_dir(l)).collect::<io::Result<Vec<_>>>()?;
    let upper = open_dir(upper)?;
    let mut made = Vec::new();
    for (path, kind) in points {
        if lowers.iter().any(|l| open_in_root(l.as_fd(), "/proc", path, None).is_ok()) {
            continue; // a mount may cover what exists without writing anything
        }
        if create(&lowers, &upper, path, *kind, 0)? {
            made.push(path.clone());
        }
    }
    Ok(made)
}

fn open_dir(p: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(p, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// What a lower layer has at a container path (not following a final symlink).
struct Entry {
    kind: FileType,
    mode: u32,
    uid: u32,
    gid: u32,
    /// A symlink's target.
    link: Option<PathBuf>,
}

fn lower_entry(lowers: &[OwnedFd], path: &Path) -> Option<Entry> {
    let (parent, name) = (path.parent()?, path.file_name()?);
    lowers.iter().find_map(|l| {
        let dir = open_in_root(l.as_fd(), "/proc", parent, None).ok()?;
        let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        let kind = FileType::from_raw_mode(st.st_mode);
        let link = (kind == FileType::Symlink)
            .then(|| rustix::fs::readlinkat(&dir, name, Vec::new()).ok())
            .flatten()
            .map(|t| PathBuf::from(std::ffi::OsString::from_vec(t.into_bytes())));
        Some(Entry { kind, mode: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid, link })
    })
}

/// Symlinks followed, as the kernel's own limit for path walks.
const MAX_LINKS: u32 = 40;

/// Walks `path` down from the upper directory, mirroring lower directories and creating what no layer has. A
/// lower symlink on the way is followed inside the root (`/lib -> usr/lib`: the point is made under
/// `/usr/lib`), as the mount stage will resolve it. Returns false when the walk met something it leaves to the
/// mount stage (a non-directory, an entry of the kept upper that is not a directory).
fn create(lowers: &[OwnedFd], upper: &OwnedFd, path: &Path, kind: Kind, depth: u32) -> io::Result<bool> {
    if depth > MAX_LINKS {
        return Ok(false);
    }
    let names: Vec<_> =
        path.components().filter_map(|c| if let Component::Normal(n) = c { Some(n) } else { None }).collect();
    let mut dir: OwnedFd =
        rustix::fs::openat(upper, ".", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let mut here = PathBuf::from("/");
    for (i, name) in names.iter().enumerate() {
        here.push(name);
        let last = i + 1 == names.len();
        // The upper's own entry hides the lower's: only a directory is walked into.
        let in_upper = rustix::fs::statat(&dir, *name, AtFlags::SYMLINK_NOFOLLOW).ok();
        let lower = if in_upper.is_none() { lower_entry(lowers, &here) } else { None };
        match &lower {
            Some(Entry { link: Some(target), .. }) => {
                let mut next = here.parent().unwrap_or(Path::new("/")).join(target);
                names[i + 1..].iter().for_each(|n| next.push(n));
                return match clean_container_path(&next) {
                    Some(next) => create(lowers, upper, &next, kind, depth + 1),
                    None => Ok(false),
                };
            }
            Some(e) if e.kind != FileType::Directory || last => return Ok(false),
            _ => {}
        }
        if let Some(st) = &in_upper {
            if last || FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                return Ok(false);
            }
        } else if last && kind == Kind::File {
            let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            rustix::fs::openat(&dir, *name, flags, Mode::from_raw_mode(0o644))?;
            return Ok(true);
        } else {
            let mode = lower.as_ref().map_or(0o755, |e| e.mode);
            match rustix::fs::mkdirat(&dir, *name, Mode::from_raw_mode(mode)) {
                Ok(()) => mirror(&dir, name, lower.as_ref(), mode)?,
                Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Not following a symlink the container may have left in a kept upper directory.
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        dir = match rustix::fs::openat(&dir, *name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
    }
    Ok(true)
}

/// Gives a directory just made in the upper layer the lower's mode (mkdir applied the umask) and, when the
/// lower's owner is mapped, its owner.
fn mirror(parent: &OwnedFd, name: &std::ffi::OsStr, lower: Option<&Entry>, mode: u32) -> io::Result<()> {
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    if let Some(e) = lower {
        if e.uid != overflow("uid") && e.gid != overflow("gid") {
            // Best effort: a mapped owner is kept as copy-up keeps it; without CAP_CHOWN it stays ours.
            let _ =
                rustix::fs::fchown(&fd, Some(rustix::fs::Uid::from_raw(e.uid)), Some(rustix::fs::Gid::from_raw(e.gid)));
        }
    }
    Ok(())
}

/// The ID an unmapped owner shows as (/proc/sys/kernel/overflowuid, 65534 by default).
fn overflow(kind: &str) -> u32 {
    std::fs::read_to_string(format!("/proc/sys/kernel/overflow{kind}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65534)
}

/// The mount points of a plan that live in the root filesystem itself (not inside a filesystem the plan mounts
/// first, such as `/dev`), with what each must be. `is_dir` tells whether a host bind source is a
/// directory.
pub fn mount_points(ops: &[super::plan::Op], is_dir: impl Fn(&Path) -> bool) -> Vec<MountPoint> {
    use super::plan::Op;
    let fresh = ["/proc", "/sys", "/dev"];
    let inside_fresh = |p: &Path| fresh.iter().any(|f| p != Path::new(f) && p.starts_with(f));
    ops.iter()
        .filter_map(|op| match op {
            Op::Tmpfs { dst, .. } | Op::Proc { dst } | Op::Sysfs { dst, .. } => Some((dst.clone(), Kind::Dir)),
            Op::Dev { .. } => Some(("/dev".into(), Kind::Dir)),
            Op::Bind { src, dst, .. } => Some((dst.clone(), if is_dir(src) { Kind::Dir } else { Kind::File })),
            Op::File { dst, .. } => Some((dst.clone(), Kind::File)),
            _ => None,
        })
        .filter(|(p, _)| !inside_fresh(p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn missing_mount_points_are_made_in_the_upper_with_lower_modes() {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::create_dir_all(lower.join("srv")).unwrap();
        std::fs::create_dir(&upper).unwrap();
        std::fs::set_permissions(lower.join("etc"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::write(lower.join("etc/hosts"), "").unwrap();
        let points = vec![
            (PathBuf::from("/etc/hostname"), Kind::File),
            (PathBuf::from("/etc/hosts"), Kind::File),
            (PathBuf::from("/proc"), Kind::Dir),
            (PathBuf::from("/srv/a/b"), Kind::Dir),
        ];
        let made = prepare(std::slice::from_ref(&lower), &upper, &points).unwrap();
        assert_eq!(made, vec![PathBuf::from("/etc/hostname"), PathBuf::from("/proc"), PathBuf::from("/srv/a/b")]);
        assert!(upper.join("etc/hostname").is_file());
        assert!(!upper.join("etc/hosts").exists(), "present in the lower: nothing to make");
        assert_eq!(std::fs::metadata(upper.join("etc")).unwrap().permissions().mode() & 0o7777, 0o750);
        assert!(upper.join("srv/a/b").is_dir());
        // Over a kept upper: nothing more to make, and no error.
        assert_eq!(prepare(&[lower], &upper, &points).unwrap().len(), 0);
    }

    #[test]
    fn symlinks_in_lower_or_kept_upper_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        std::fs::create_dir_all(&lower).unwrap();
        std::fs::create_dir(&upper).unwrap();
        symlink(outside.path(), lower.join("etc")).unwrap();
        symlink(outside.path(), upper.join("data")).unwrap();
        let points = vec![(PathBuf::from("/etc/hostname"), Kind::File), (PathBuf::from("/data/x"), Kind::Dir)];
        let made = prepare(&[lower], &upper, &points).unwrap();
        // The lower's absolute link is followed inside the root; the kept upper's is left to the mount stage.
        assert_eq!(made, vec![PathBuf::from("/etc/hostname")]);
        assert!(upper.join(outside.path().strip_prefix("/").unwrap()).join("hostname").is_file());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "wrote through a symlink");
    }

    #[test]
    fn a_lower_symlink_is_followed_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        std::fs::create_dir_all(lower.join("usr/lib")).unwrap();
        std::fs::create_dir(&upper).unwrap();
        symlink("usr/lib", lower.join("lib")).unwrap();
        symlink("/usr/lib/../lib/../lib", lower.join("loop")).unwrap();
        let points = vec![(PathBuf::from("/lib/x/y"), Kind::Dir), (PathBuf::from("/loop/z"), Kind::File)];
        let made = prepare(std::slice::from_ref(&lower), &upper, &points).unwrap();
        assert_eq!(made.len(), 2, "{made:?}");
        assert!(upper.join("usr/lib/x/y").is_dir());
        assert!(upper.join("usr/lib/z").is_file());
        assert!(!upper.join("lib").exists(), "the symlink was shadowed by a directory");
    }

    #[test]
    fn mount_points_skip_what_fresh_filesystems_hold() {
        use super::super::plan::Op;
        let ops = vec![
            Op::Proc { dst: "/proc".into() },
            Op::Dev { tty_gid: None },
            Op::Tmpfs { dst: "/dev/shm".into(), mode: 0o1777 },
            Op::Bind { src: "/etc/passwd".into(), dst: "/x/passwd".into(), readonly: true },
            Op::File { dst: "/etc/hostname".into(), content: String::new() },
        ];
        let points = mount_points(&ops, |p| p.is_dir());
        assert_eq!(
            points,
            vec![
                (PathBuf::from("/proc"), Kind::Dir),
                (PathBuf::from("/dev"), Kind::Dir),
                (PathBuf::from("/x/passwd"), Kind::File),
                (PathBuf::from("/etc/hostname"), Kind::File),
            ]
        );
    }
}
