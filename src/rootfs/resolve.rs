//! Resolving container paths inside the container root, never onto the host.
//!
//! Every lookup uses `openat2(RESOLVE_IN_ROOT)`: absolute symlinks and `..` are resolved as if the root directory
//! were `/`, so a rootfs that contains `etc -> /etc` or `x -> ../../..` cannot redirect a mount onto the host.
//! Missing components are created one at a time relative to an already resolved parent.

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// What to create when the last component is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

fn flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

/// Opens container path `path` below `root` as an `O_PATH` descriptor, creating it (and its parents) when
/// `create` is set.
pub fn open_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    create: Option<Kind>,
) -> io::Result<OwnedFd> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let open = || {
        openat2(
            root,
            rel,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            flags(),
        )
    };
    match open() {
        Err(rustix::io::Errno::NOENT) if create.is_some() => {}
        other => return other.map_err(io::Error::from),
    }
    let (parent, name) = match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) => (parent, name),
        _ => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
    };
    let parent_fd = open_in_root(root, &Path::new("/").join(parent), Some(Kind::Dir))?;
    let created = match create {
        Some(Kind::Dir) => rustix::fs::mkdirat(&parent_fd, name, Mode::from_raw_mode(0o755)),
        _ => rustix::fs::openat(
            &parent_fd,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o644),
        )
        .map(drop),
    };
    match created {
        Ok(()) | Err(rustix::io::Errno::EXIST) => open().map_err(io::Error::from),
        Err(e) => Err(e.into()),
    }
}

/// The `/proc/self/fd/N` path through which mount(2) reaches exactly the object behind `fd`.
pub fn fd_path(proc_root: &str, fd: &impl AsFd) -> String {
    use std::os::fd::AsRawFd;
    format!("{proc_root}/self/fd/{}", fd.as_fd().as_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn real_path(fd: &OwnedFd) -> std::path::PathBuf {
        std::fs::read_link(fd_path("/proc", fd)).unwrap()
    }

    #[test]
    fn absolute_and_dotdot_symlinks_stay_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        symlink("/", root.join("escape")).unwrap();
        symlink("../../../../..", root.join("etc/up")).unwrap();
        let rfd = std::fs::File::open(&root).unwrap();
        let fd = open_in_root(rfd.as_fd(), Path::new("/escape/tmp/made"), Some(Kind::Dir)).unwrap();
        assert_eq!(
            real_path(&fd),
            root.canonicalize().unwrap().join("tmp/made")
        );
        let fd = open_in_root(rfd.as_fd(), Path::new("/etc/up/x/file"), Some(Kind::File)).unwrap();
        assert_eq!(real_path(&fd), root.canonicalize().unwrap().join("x/file"));
        assert!(root.join("x/file").is_file());
    }

    #[test]
    fn missing_without_create_is_enoent_and_root_itself_resolves() {
        let t = tempfile::tempdir().unwrap();
        let rfd = std::fs::File::open(t.path()).unwrap();
        let err = open_in_root(rfd.as_fd(), Path::new("/nope"), None).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        let fd = open_in_root(rfd.as_fd(), Path::new("/"), None).unwrap();
        assert_eq!(real_path(&fd), t.path().canonicalize().unwrap());
    }

    #[test]
    fn a_dangling_symlink_as_last_component_is_not_followed_out() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path().join("new"), t.path().join("link")).unwrap();
        let rfd = std::fs::File::open(t.path()).unwrap();
        match open_in_root(rfd.as_fd(), Path::new("/link"), Some(Kind::Dir)) {
            Ok(fd) => assert!(real_path(&fd).starts_with(t.path().canonicalize().unwrap())),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT)),
        }
        assert!(
            !outside.path().join("new").exists(),
            "created outside the root"
        );
    }
}
