//! Per-container runtime state (sockets, the overlay's mount point and ephemeral upper directory).
//!
//! The base is `$XDG_RUNTIME_DIR/burrow` when XDG_RUNTIME_DIR is a 0700 directory of the caller, else a private
//! `burrow-UID` directory under the temporary directory — HPC login nodes, `su` and cron have no runtime
//! directory. A base under /tmp is refused unless the caller owns it and nobody else can enter it, so another
//! user cannot pre-create it. Paths stay short enough for unix socket addresses (108 bytes).
//!
//! A run that needs no state (no networking helper, no overlay) creates nothing. A run killed before it could
//! clean up leaves its directory; the next run removes it (see [`StateDir`]).

use nix::fcntl::{Flock, FlockArg};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("state directory {path} is not a private directory of uid {uid} (owner {owner}, mode {mode:o}), and HOME is unset for a pointer to another one: set HOME or XDG_RUNTIME_DIR")]
    Unsafe { path: PathBuf, uid: u32, owner: u32, mode: u32 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.to_path_buf(), source }
}

/// Where burrow keeps state for the caller.
///
/// Without a usable XDG_RUNTIME_DIR: `TMP/burrow-UID`, unless another user planted something there (a
/// symlink, a directory of theirs, a directory others can enter) before the caller's first run. burrow then
/// uses a private directory with a random name, `TMP/burrow-UID-XXXXXXXXXXXX` (created with mkdir, which
/// fails on anything planted), and finds it again through a pointer only the caller can write,
/// `$HOME/.cache/burrow/runtime-HOSTNAME` (per host: homes may be shared over NFS while /tmp is not). The
/// pointer is read first, so that `ps` keeps finding containers even once the planted entry is gone.
pub fn base_dir() -> Result<PathBuf, StateError> {
    let uid = nix::unistd::getuid().as_raw();
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        if private_to(&xdg, uid) {
            let base = xdg.join("burrow");
            ensure_private(&base, uid)?;
            return Ok(base);
        }
    }
    let tmp = std::env::var_os("TMPDIR").map(PathBuf::from).filter(|p| p.is_absolute()).unwrap_or("/tmp".into());
    let pointer = pointer_file();
    if let Some(dir) = pointer.as_deref().and_then(|p| read_pointer(p, &tmp, uid)) {
        return Ok(dir);
    }
    let base = tmp.join(format!("burrow-{uid}"));
    let denied = match ensure_private(&base, uid) {
        Ok(()) => return Ok(base),
        Err(e @ StateError::Unsafe { .. }) => e,
        Err(e) => return Err(e),
    };
    let Some(pointer) = pointer else { return Err(denied) };
    for _ in 0..8 {
        let dir = tmp.join(format!("burrow-{uid}-{}", new_id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                write_pointer(&pointer, &dir)?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(&dir)(e)),
        }
    }
    Err(denied)
}

/// `$HOME/.cache/burrow/runtime-HOSTNAME`, when HOME is set.
fn pointer_file() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from).filter(|h| h.is_absolute())?;
    let host = nix::unistd::gethostname().ok()?.to_string_lossy().into_owned();
    Some(home.join(".cache/burrow").join(format!("runtime-{host}")))
}

/// The directory the pointer names, if it is still ours: a file of the caller that only the caller can
/// write, naming `TMP/burrow-UID-*`, a private directory of the caller.
fn read_pointer(pointer: &Path, tmp: &Path, uid: u32) -> Option<PathBuf> {
    let m = std::fs::symlink_metadata(pointer).ok()?;
    if !m.is_file() || m.uid() != uid || m.mode() & 0o022 != 0 {
        return None;
    }
    let dir = PathBuf::from(std::fs::read_to_string(pointer).ok()?.trim());
    let named = dir.parent() == Some(tmp)
        && dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("burrow-{uid}-")));
    (named && private_to(&dir, uid)).then_some(dir)
}

fn write_pointer(pointer: &Path, dir: &Path) -> Result<(), StateError> {
    let parent = pointer.parent().unwrap_or(Path::new("/"));
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(io(parent))?;
    let tmp = pointer.with_extension(format!("new-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, dir.as_os_str().as_encoded_bytes()))
        .and_then(|()| std::fs::rename(&tmp, pointer))
        .map_err(io(pointer))
}

fn private_to(path: &Path, uid: u32) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0)
}

fn ensure_private(path: &Path, uid: u32) -> Result<(), StateError> {
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(path)(e)),
    }
    let m = std::fs::symlink_metadata(path).map_err(io(path))?;
    if !m.is_dir() || m.uid() != uid || m.mode() & 0o077 != 0 {
        return Err(StateError::Unsafe { path: path.into(), uid, owner: m.uid(), mode: m.mode() & 0o7777 });
    }
    Ok(())
}

/// One container's state directory, removed when dropped.
///
/// It holds `lock`, flock'ed by burrow. P1, the FUSE server and the container's init inherit the descriptor
/// by fork (exec closes it), so the lock is held for as long as any process of the run lives. A directory
/// whose lock nobody holds was left by a run killed (SIGKILL, OOM) before any of its processes could remove
/// it; the next run that creates a state directory removes it.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    /// None where the filesystem has no locks (NFS without lockd): the directory is then never swept.
    _lock: Option<Flock<std::fs::File>>,
}

/// The lock file of a state directory (created as `lock.new`, locked, then renamed: a run that looks at
/// `lock` never finds it unlocked while its owner is alive).
const LOCK: &str = "lock";
const LOCK_NEW: &str = "lock.new";

impl StateDir {
    /// Creates `BASE/<id>`, locks it, and removes the directories of runs that are gone.
    pub fn create(id: &str) -> Result<StateDir, StateError> {
        let base = base_dir()?;
        let path = base.join(id);
        std::fs::DirBuilder::new().mode(0o700).create(&path).map_err(io(&path))?;
        let lock = match take_lock(&path) {
            Ok(lock) => lock,
            Err(e) => {
                remove_tree(&path);
                return Err(io(&path)(e));
            }
        };
        sweep(&base, id);
        Ok(StateDir { path, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        remove_tree(&self.path);
    }
}

fn take_lock(dir: &Path) -> std::io::Result<Option<Flock<std::fs::File>>> {
    let new = dir.join(LOCK_NEW);
    let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&new)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => {
            std::fs::rename(&new, dir.join(LOCK))?;
            Ok(Some(lock))
        }
        // No `lock` file then: a sweep leaves a directory without one alone once the run has put anything in it.
        Err((_, nix::errno::Errno::ENOLCK | nix::errno::Errno::EOPNOTSUPP)) => {
            std::fs::remove_file(&new)?;
            Ok(None)
        }
        Err((_, e)) => Err(e.into()),
    }
}

/// Removes the state directories under `base` that no live run holds (see [`StateDir`]). A directory without
/// a lock file goes only when it holds nothing else either (a run killed between its mkdir and its lock) and
/// is older than a minute; one with other files (made by a burrow without locks) stays, and so do names that
/// are not container ids.
fn sweep(base: &Path, own: &str) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == own || !is_id(name) {
            continue;
        }
        let dir = entry.path();
        match std::fs::File::open(dir.join(LOCK)) {
            // Held while removing, so that two runs sweeping at once do not both work on it.
            Ok(file) => {
                if let Ok(_held) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                    remove_tree(&dir);
                }
            }
            // Killed between its mkdir and the rename of its lock: nothing else in it yet.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let old = std::fs::symlink_metadata(&dir)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > std::time::Duration::from_secs(60)));
                let unstarted = std::fs::read_dir(&dir).is_ok_and(|d| d.flatten().all(|e| e.file_name() == LOCK_NEW));
                if old && unstarted {
                    remove_tree(&dir);
                }
            }
            Err(_) => {}
        }
    }
}

/// Whether `name` is an id from [`new_id`].
fn is_id(name: &str) -> bool {
    name.len() == 12 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Removes a state directory; files the container created may need write permission added first.
pub fn remove_tree(path: &Path) {
    if std::fs::remove_dir_all(path).is_ok() || !path.exists() {
        return;
    }
    // Make every directory writable and try again (an upper layer can contain 0555 directories).
    fn open_up(p: &Path) {
        if let Ok(entries) = std::fs::read_dir(p) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o700));
                    open_up(&e.path());
                }
            }
        }
    }
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
    open_up(path);
    let _ = std::fs::remove_dir_all(path);
}

/// A short random container id (12 hex digits from the kernel's random pool).
pub fn new_id() -> String {
    let mut bytes = [0u8; 6];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes)).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        bytes.copy_from_slice(&(t.as_nanos() as u64 ^ u64::from(std::process::id())).to_le_bytes()[..6]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_foreign_or_open_base_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let uid = nix::unistd::getuid().as_raw();
        assert!(matches!(ensure_private(&open, uid), Err(StateError::Unsafe { .. })));
        assert!(matches!(ensure_private(&open, uid + 1), Err(StateError::Unsafe { .. })));
        let fresh = t.path().join("fresh");
        ensure_private(&fresh, uid).unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn a_pointer_counts_only_for_a_private_directory_of_ours_under_tmp() {
        let t = tempfile::tempdir().unwrap();
        let uid = nix::unistd::getuid().as_raw();
        let (tmp, home) = (t.path().join("tmp"), t.path().join("home"));
        std::fs::create_dir_all(&tmp).unwrap();
        let pointer = home.join(".cache/burrow/runtime-h");
        let ours = tmp.join(format!("burrow-{uid}-0123456789ab"));
        std::fs::DirBuilder::new().mode(0o700).create(&ours).unwrap();
        write_pointer(&pointer, &ours).unwrap();
        assert_eq!(std::fs::metadata(&pointer).unwrap().mode() & 0o777, 0o600);
        assert_eq!(read_pointer(&pointer, &tmp, uid), Some(ours.clone()));
        // Another TMPDIR, another uid, an open directory, a wrong name, a pointer others may write: not used.
        assert_eq!(read_pointer(&pointer, &t.path().join("elsewhere"), uid), None);
        assert_eq!(read_pointer(&pointer, &tmp, uid + 1), None);
        std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(read_pointer(&pointer, &tmp, uid), None);
        std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o700)).unwrap();
        let odd = tmp.join("somebody-else");
        std::fs::DirBuilder::new().mode(0o700).create(&odd).unwrap();
        write_pointer(&pointer, &odd).unwrap();
        assert_eq!(read_pointer(&pointer, &tmp, uid), None);
        write_pointer(&pointer, &ours).unwrap();
        std::fs::set_permissions(&pointer, std::fs::Permissions::from_mode(0o622)).unwrap();
        assert_eq!(read_pointer(&pointer, &tmp, uid), None);
    }

    #[test]
    fn ids_are_twelve_hex_digits_and_differ() {
        let (a, b) = (new_id(), new_id());
        assert!(a.len() == 12 && a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn the_sweep_removes_only_directories_nobody_holds() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path();
        let mk = |name: &str, lock: bool, file: bool| {
            let d = base.join(name);
            std::fs::create_dir(&d).unwrap();
            if lock {
                std::fs::write(d.join(LOCK), "").unwrap();
            }
            if file {
                std::fs::write(d.join("slirp4netns.sock"), "").unwrap();
            }
            d
        };
        let gone = mk("0123456789ab", true, true);
        let held = mk("bbbbbbbbbbbb", true, true);
        let _holder = Flock::lock(std::fs::File::open(held.join(LOCK)).unwrap(), FlockArg::LockExclusive).unwrap();
        let own = mk("cccccccccccc", true, true);
        let legacy = mk("dddddddddddd", false, true);
        let young_empty = mk("eeeeeeeeeeee", false, false);
        let old_empty = mk("ffffffffffff", false, false);
        std::fs::write(old_empty.join(LOCK_NEW), "").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
        std::fs::File::open(&old_empty).unwrap().set_modified(old).unwrap();
        let not_an_id = mk("keep-me", true, true);
        sweep(base, "cccccccccccc");
        assert!(!gone.exists(), "a directory nobody holds was kept");
        assert!(!old_empty.exists(), "an old directory with nothing but lock.new was kept");
        for kept in [&held, &own, &legacy, &young_empty, &not_an_id] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
    }

    #[test]
    fn a_new_state_directory_is_locked_while_it_lives() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("0123456789ab");
        std::fs::create_dir(&dir).unwrap();
        let lock = take_lock(&dir).unwrap().expect("tmpfs has locks");
        assert!(!dir.join(LOCK_NEW).exists());
        let other = std::fs::File::open(dir.join(LOCK)).unwrap();
        let other = Flock::lock(other, FlockArg::LockExclusiveNonblock).map(|_| ()).map_err(|(_, e)| e);
        assert_eq!(other, Err(nix::errno::Errno::EWOULDBLOCK));
        drop(lock);
        sweep(t.path(), "");
        assert!(!dir.exists());
    }

    #[test]
    fn remove_tree_copes_with_read_only_directories() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("s/a/b");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("f"), "x").unwrap();
        std::fs::set_permissions(t.path().join("s/a"), std::fs::Permissions::from_mode(0o555)).unwrap();
        remove_tree(&t.path().join("s"));
        assert!(!t.path().join("s").exists());
    }
}
