//! Resolving container paths inside the container root, never onto the host.
//!
//! Every lookup uses `openat2(RESOLVE_IN_ROOT)`: absolute symlinks and `..` are resolved as if the root directory
//! were `/`, so a rootfs that contains `etc -> /etc` or `x -> ../../..` cannot redirect a mount onto the host.
//! Missing components are created one at a time relative to an already resolved parent.

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
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
/// `create` is set. A missing target behind a symlink is created where the symlink points, inside the root.
/// `proc` is where a procfs is mounted in the caller's current root (`/proc`, or `/oldroot/proc` mid-pivot).
pub fn open_in_root(root: BorrowedFd<'_>, proc: &str, path: &Path, create: Option<Kind>) -> io::Result<OwnedFd> {
    open_depth(&Walk { root, proc }, path, create, 0)
}

struct Walk<'a> {
    root: BorrowedFd<'a>,
    proc: &'a str,
}

/// Symlinks followed while creating, as the kernel's own limit for path walks.
const MAX_LINKS: u32 = 40;

fn open_depth(w: &Walk<'_>, path: &Path, create: Option<Kind>, depth: u32) -> io::Result<OwnedFd> {
    let root = w.root;
    if depth > MAX_LINKS {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    let open = || openat2(root, rel, OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), flags());
    match open() {
        Err(rustix::io::Errno::NOENT) if create.is_some() => {}
        other => return other.map_err(io::Error::from),
    }
    let (parent, name) = match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) => (parent, name),
        _ => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
    };
    let parent_fd = open_depth(w, &Path::new("/").join(parent), Some(Kind::Dir), depth)?;
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
        Ok(()) => open().map_err(io::Error::from),
        Err(rustix::io::Errno::EXIST) => match rustix::fs::readlinkat(&parent_fd, name, Vec::new()) {
            // A dangling symlink: create what it points to, resolved inside the root.
            Ok(target) => {
                let target = Path::new(std::ffi::OsStr::from_bytes(target.as_bytes()));
                let next = if target.is_absolute() {
                    target.to_path_buf()
                } else {
                    container_path(w, &parent_fd)?.join(target)
                };
                open_depth(w, &next, create, depth + 1)
            }
            Err(_) => open().map_err(io::Error::from),
        },
        Err(e) => Err(e.into()),
    }
}

/// Reads the file at container path `path` of the tree `root` (a host directory), resolved inside it: an
/// absolute symlink such as `etc/passwd -> /etc/passwd` names the tree's own file, never the host's.
pub fn read_in_root(root: &Path, path: &Path) -> io::Result<String> {
    let dir = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let rel = path.strip_prefix("/").unwrap_or(path);
    let fd = openat2(&dir, rel, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY, Mode::empty(), flags())?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text)?;
    Ok(text)
}

/// The container path of `dir` (an already resolved descriptor below `root`).
fn container_path(w: &Walk<'_>, dir: &OwnedFd) -> io::Result<std::path::PathBuf> {
    let host_root = std::fs::read_link(fd_path(w.proc, &w.root))?;
    let host_dir = std::fs::read_link(fd_path(w.proc, dir))?;
    let rel = host_dir.strip_prefix(&host_root).map_err(|_| io::Error::from_raw_os_error(libc::EXDEV))?;
    Ok(Path::new("/").join(rel))
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
        let fd = open_in_root(rfd.as_fd(), "/proc", Path::new("/escape/tmp/made"), Some(Kind::Dir)).unwrap();
        assert_eq!(real_path(&fd), root.canonicalize().unwrap().join("tmp/made"));
        let fd = open_in_root(rfd.as_fd(), "/proc", Path::new("/etc/up/x/file"), Some(Kind::File)).unwrap();
        assert_eq!(real_path(&fd), root.canonicalize().unwrap().join("x/file"));
        assert!(root.join("x/file").is_file());
    }

    #[test]
    fn files_are_read_inside_the_root_through_absolute_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("passwd"), "host\n").unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        symlink(host.path().join("passwd"), t.path().join("etc/passwd")).unwrap();
        // The link's target does not exist inside the root: not the host's file.
        let e = read_in_root(t.path(), Path::new("/etc/passwd")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        let inside = t.path().join(host.path().strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::write(inside.join("passwd"), "inside\n").unwrap();
        assert_eq!(read_in_root(t.path(), Path::new("/etc/passwd")).unwrap(), "inside\n");
    }

    #[test]
    fn missing_without_create_is_enoent_and_root_itself_resolves() {
        let t = tempfile::tempdir().unwrap();
        let rfd = std::fs::File::open(t.path()).unwrap();
        let err = open_in_root(rfd.as_fd(), "/proc", Path::new("/nope"), None).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        let fd = open_in_root(rfd.as_fd(), "/proc", Path::new("/"), None).unwrap();
        assert_eq!(real_path(&fd), t.path().canonicalize().unwrap());
    }

    #[test]
    fn a_dangling_symlink_as_last_component_is_not_followed_out() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path().join("new"), t.path().join("link")).unwrap();
        let rfd = std::fs::File::open(t.path()).unwrap();
        match open_in_root(rfd.as_fd(), "/proc", Path::new("/link"), Some(Kind::Dir)) {
            Ok(fd) => assert!(real_path(&fd).starts_with(t.path().canonicalize().unwrap())),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT)),
        }
        assert!(!outside.path().join("new").exists(), "created outside the root");
    }
}
