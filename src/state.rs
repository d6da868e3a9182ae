//! Per-container runtime state (sockets, the overlay's mount point and ephemeral upper directory).
//!
//! The base is `$XDG_RUNTIME_DIR/burrow` when XDG_RUNTIME_DIR is a 0700 directory of the caller, else a private
//! `burrow-UID` directory under the temporary directory — HPC login nodes, `su` and cron have no runtime
//! directory. A base under /tmp is refused unless the caller owns it and nobody else can enter it, so another
//! user cannot pre-create it. Paths stay short enough for unix socket addresses (108 bytes).
//!
//! A run that needs no state (no networking helper, no overlay) creates nothing.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("state directory {path} is not a private directory of uid {uid} (owner {owner}, mode {mode:o}): remove it or set XDG_RUNTIME_DIR")]
    Unsafe { path: PathBuf, uid: u32, owner: u32, mode: u32 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.to_path_buf(), source }
}

/// Where burrow keeps state for the caller.
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
    let base = tmp.join(format!("burrow-{uid}"));
    ensure_private(&base, uid)?;
    Ok(base)
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
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Creates `BASE/<id>`.
    pub fn create(id: &str) -> Result<StateDir, StateError> {
        let path = base_dir()?.join(id);
        std::fs::DirBuilder::new().mode(0o700).create(&path).map_err(io(&path))?;
        Ok(StateDir { path })
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
    fn ids_are_twelve_hex_digits_and_differ() {
        let (a, b) = (new_id(), new_id());
        assert!(a.len() == 12 && a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
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
