//! Kernel overlayfs in its unprivileged `userxattr` flavour (Linux >= 5.11 in a user namespace).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags};

use super::{OverlayConfig, OverlayError};

/// Escapes a layer path for the overlay option string: `:` separates lower layers and `\`
/// escapes; a `,` cannot be escaped in mount(2) data, so such a path is refused.
fn escape(path: &Path) -> Result<String, OverlayError> {
    let s = path.to_str().ok_or_else(|| OverlayError::Option {
        option: path.display().to_string(),
        reason: "layer path is not UTF-8".into(),
    })?;
    if s.contains(',') {
        return Err(OverlayError::Option {
            option: s.into(),
            reason: "kernel overlayfs cannot take a layer path containing ','".into(),
        });
    }
    Ok(s.replace('\\', "\\\\").replace(':', "\\:"))
}

fn options(cfg: &OverlayConfig) -> Result<CString, OverlayError> {
    if cfg.lowers.is_empty() {
        return Err(OverlayError::NoLower);
    }
    let lowers = cfg.lowers.iter().map(|l| escape(l)).collect::<Result<Vec<_>, _>>()?.join(":");
    let data = format!("lowerdir={lowers},upperdir={},workdir={},userxattr", escape(&cfg.upper)?, escape(&cfg.work)?);
    CString::new(data.into_bytes())
        .map_err(|_| OverlayError::Option { option: "overlay options".into(), reason: "contains a NUL byte".into() })
}

/// Mounts kernel overlayfs (`userxattr`) on `target`, nosuid and nodev like the FUSE driver's mount (a
/// launcher that wants setuid binaries to work clears nosuid on its own bind of it).
pub fn mount(cfg: &OverlayConfig, target: &Path) -> Result<(), OverlayError> {
    let data = options(cfg)?;
    let flags = MountFlags::NOSUID | MountFlags::NODEV;
    rustix::mount::mount("overlay", target, "overlay", flags, Some(data.as_c_str()))
        .map_err(|e| OverlayError::KernelMount { path: target.to_owned(), source: e.into() })
}

/// Whether a kernel overlay mount of these lowers over an upper on `cfg.upper`'s filesystem
/// works here: mounts once on a scratch directory inside `cfg.work` and removes it again.
/// Needs a private mount namespace, like [`mount`].
pub fn probe(cfg: &OverlayConfig) -> bool {
    let scratch = cfg.work.join(format!("burrow-probe-{}", std::process::id()));
    let ok = try_probe(cfg, &scratch).unwrap_or(false);
    let _ = std::fs::remove_dir_all(&scratch);
    ok
}

fn try_probe(cfg: &OverlayConfig, scratch: &Path) -> std::io::Result<bool> {
    let dir = |name: &str| -> std::io::Result<PathBuf> {
        let p = scratch.join(name);
        std::fs::create_dir_all(&p)?;
        Ok(p)
    };
    let (upper, work, target) = (dir("u")?, dir("w")?, dir("m")?);
    // The overlay format needs user xattrs on the upper filesystem (opaque directories).
    if rustix::fs::setxattr(&upper, "user.overlay.probe", b"y", rustix::fs::XattrFlags::empty()).is_err() {
        return Ok(false);
    }
    let _ = rustix::fs::removexattr(&upper, "user.overlay.probe");
    let probe_cfg = OverlayConfig { lowers: cfg.lowers.clone(), upper, work };
    if mount(&probe_cfg, &target).is_err() {
        return Ok(false);
    }
    let written = std::fs::write(target.join(".burrow-probe"), b"").is_ok();
    rustix::mount::unmount(&target, UnmountFlags::DETACH)?;
    let _ = target.as_os_str().as_bytes();
    Ok(written)
}
