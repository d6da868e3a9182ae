//! Mounts a [`HostLayout`]: a tmpfs root holding one kernel overlay per top-level directory of the host.

use super::apply::MountError;
use super::host::HostLayout;
use super::upper::MountPoint;
use crate::overlay::{self, OverlayConfig};
use nix::mount::{mount, MsFlags};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn fail(what: String) -> impl FnOnce(io::Error) -> MountError {
    move |source| MountError { what, source, hint: String::new() }
}

/// Builds the layered host root at `new`, with the host's tree at `old`. The ephemeral layers live on a tmpfs
/// at `/layers` of the current (scratch) root, which goes away with the container's mount namespace. The plan's
/// `points` that a layered directory lacks are made in its upper directory first (see [`super::upper`]): the
/// host's directories belong to IDs outside the container's map, so they cannot be made through the overlay.
pub fn mount_layout(layout: &HostLayout, old: &Path, new: &Path, points: &[MountPoint]) -> Result<(), MountError> {
    let host = |p: &Path| old.join(p.strip_prefix("/").unwrap_or(p));
    let nix_fail = |what: String| move |e: nix::Error| MountError { what, source: e.into(), hint: String::new() };
    mount(Some("tmpfs"), new, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755"))
        .map_err(nix_fail("mount the root tmpfs".into()))?;
    let base = match &layout.keep {
        Some(dir) => host(dir),
        None => {
            let scratch = Path::new("/layers");
            std::fs::create_dir(scratch).map_err(fail("mkdir /layers".into()))?;
            mount(Some("tmpfs"), scratch, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0700"))
                .map_err(nix_fail("mount the layers' tmpfs".into()))?;
            scratch.to_path_buf()
        }
    };
    let inside = |p: &Path| new.join(p.strip_prefix("/").unwrap_or(p));
    for dir in &layout.empty {
        std::fs::create_dir(inside(dir)).map_err(fail(format!("mkdir {}", dir.display())))?;
    }
    for (link, target) in &layout.links {
        std::os::unix::fs::symlink(target, inside(link)).map_err(fail(format!("symlink {}", link.display())))?;
    }
    for path in &layout.readonly {
        read_only(&host(path), &inside(path), path)?;
    }
    for dir in &layout.layered {
        let target = inside(dir);
        std::fs::create_dir(&target).map_err(fail(format!("mkdir {}", dir.display())))?;
        let name = dir.strip_prefix("/").unwrap_or(dir);
        let (upper, work) = (base.join("upper").join(name), base.join("work").join(name));
        for d in [&upper, &work] {
            std::fs::create_dir_all(d).map_err(fail(format!("mkdir {}", d.display())))?;
        }
        // The overlay's root takes the upper directory's mode: keep the host directory's (e.g. /root 0700).
        if let Ok(meta) = std::fs::metadata(host(dir)) {
            let _ = std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(meta.permissions().mode()));
        }
        let below: Vec<MountPoint> = points
            .iter()
            .filter_map(|(p, kind)| Some((Path::new("/").join(p.strip_prefix(dir).ok()?), *kind)))
            .filter(|(p, _)| p != Path::new("/"))
            .collect();
        super::upper::prepare(&[host(dir)], &upper, &below)
            .map_err(fail(format!("create the mount points below {} in its copy-on-write layer", dir.display())))?;
        let cfg = OverlayConfig { lowers: vec![host(dir)], upper, work };
        match overlay::kernel::mount(&cfg, &target) {
            Ok(()) => {}
            Err(e) if layout.strict => {
                let (what, source) = match super::overlay_error_parts(e) {
                    (what, Some(source)) => (what, source),
                    (text, None) => (format!("cannot layer {}", dir.display()), io::Error::other(text)),
                };
                return Err(MountError { what, source, hint: String::new() });
            }
            // auto: what cannot be layered stays visible, read-only.
            Err(_) => read_only(&host(dir), &target, dir)?,
        }
    }
    Ok(())
}

fn read_only(src: &Path, dst: &Path, name: &Path) -> Result<(), MountError> {
    if src.is_dir() {
        let _ = std::fs::create_dir(dst);
    } else {
        std::fs::write(dst, b"").map_err(fail(format!("create {}", name.display())))?;
    }
    let what = format!("bind {} read-only", name.display());
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(move |e| MountError { what, source: e.into(), hint: String::new() })?;
    super::apply::set_readonly(dst, &format!("bind {}", name.display()))
}
