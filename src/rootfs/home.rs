//! `$HOME` in the host-root sandbox (`--home cow|rw|ro|none`), applied by [`super::apply`] after the root and
//! `/tmp`, before the working directory's read-write bind (so a working directory inside `$HOME` stays
//! writable through to the host).
//!
//! `cow`, the default, is a kernel overlay of its own: the host's `$HOME` as the lower layer, the upper on the
//! container's scratch tmpfs (gone with the container) or, with `--upper DIR`, in `DIR/upper/.burrow-home`.
//! Programs write their caches and configuration; nothing reaches the real home (`~/.bashrc`, `~/.ssh`). Where
//! the kernel cannot layer it (a mount below `$HOME` locked to the namespace, a kernel before 5.11), `$HOME` is
//! bound read-only instead and the user is told.

use super::apply::{bind_at, target, MountError};
use super::plan::Home;
use super::resolve::Kind;
use crate::cli::HomeMode;
use crate::overlay::{self, OverlayConfig};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the ephemeral layer lives, on the scratch tmpfs that is `/` while the plan is applied.
const SCRATCH: &str = "/home-layer";

fn fail(what: String) -> impl FnOnce(io::Error) -> MountError {
    move |source| MountError { what, source, hint: String::new() }
}

/// Shows `home` at its path in the new root. `host` maps a host path to where the host's tree is now. Returns a
/// notice for the user when `cow` had to fall back to read-only.
pub(super) fn mount(
    root: &OwnedFd,
    home: &Home,
    host: impl Fn(&Path) -> PathBuf,
) -> Result<Option<String>, MountError> {
    let src = host(&home.path);
    let what = |how: &str| format!("{how} $HOME {}", home.path.display());
    match home.mode {
        HomeMode::Rw => bind_at(root, &src, &home.path, Kind::Dir, false, &what("bind")).map(|()| None),
        HomeMode::Ro => bind_at(root, &src, &home.path, Kind::Dir, true, &what("bind")).map(|()| None),
        HomeMode::None => {
            let (_fd, t) = target(root, &home.path, Kind::Dir)?;
            let data = format!("mode=0700,uid={},gid={}", home.owner.0, home.owner.1);
            let flags = nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV;
            nix::mount::mount(Some("tmpfs"), t.as_str(), Some("tmpfs"), flags, Some(data.as_str()))
                .map_err(|e| fail(what("mount an empty tmpfs on"))(e.into()))
                .map(|()| None)
        }
        HomeMode::Cow => cow(root, home, &src, &host),
    }
}

fn cow(
    root: &OwnedFd,
    home: &Home,
    src: &Path,
    host: &impl Fn(&Path) -> PathBuf,
) -> Result<Option<String>, MountError> {
    let (upper, work) = match &home.keep {
        Some(dir) => (host(dir).join("upper/.burrow-home"), host(dir).join("work/.burrow-home")),
        None => (Path::new(SCRATCH).join("upper"), Path::new(SCRATCH).join("work")),
    };
    for d in [&upper, &work] {
        std::fs::create_dir_all(d).map_err(fail(format!("mkdir {}", d.display())))?;
    }
    // The overlay's root takes the upper directory's mode and owner: keep $HOME's, so that a payload running
    // as the caller's own ID (--userns=keep-id) may still write at the top of its home.
    let meta = std::fs::metadata(src).map_err(fail(format!("stat $HOME {}", home.path.display())))?;
    let _ = std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(meta.mode() & 0o7777));
    let _ = std::os::unix::fs::chown(&upper, Some(meta.uid()), Some(meta.gid()));
    let (_fd, t) = target(root, &home.path, Kind::Dir)?;
    let cfg = OverlayConfig { lowers: vec![src.to_path_buf()], upper, work };
    match overlay::kernel::mount(&cfg, Path::new(&t)) {
        Ok(()) => Ok(None),
        Err(e) => {
            bind_at(root, src, &home.path, Kind::Dir, true, &format!("bind $HOME {} read-only", home.path.display()))?;
            let why = match super::overlay_error_parts(e) {
                (text, Some(source)) => format!("{text}: {source}"),
                (text, None) => text,
            };
            Ok(Some(format!(
                "burrow: notice: $HOME ({}) cannot be copy-on-write here ({why}); it is read-only instead: pass --home \
                 rw to write to it, or --home none to hide it",
                home.path.display()
            )))
        }
    }
}
