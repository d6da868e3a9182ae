//! Mounting the two drivers over the same layers inside the test's user+mount namespace.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

pub struct Layout {
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub mnt: PathBuf,
}

impl Layout {
    /// upper/work/mnt directories named `<prefix>-upper` etc. under `base`.
    pub fn new(base: &Path, prefix: &str, lowers: &[PathBuf]) -> std::io::Result<Self> {
        let l = Layout {
            lowers: lowers.to_vec(),
            upper: base.join(format!("{prefix}-upper")),
            work: base.join(format!("{prefix}-work")),
            mnt: base.join(format!("{prefix}-mnt")),
        };
        for d in [&l.upper, &l.work, &l.mnt] {
            fs::create_dir_all(d)?;
        }
        Ok(l)
    }

    fn options(&self) -> String {
        let lower: Vec<String> = self.lowers.iter().map(|p| p.display().to_string()).collect();
        format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), self.upper.display(), self.work.display())
    }
}

pub fn mount_kernel(l: &Layout) -> Result<(), String> {
    let data = std::ffi::CString::new(format!("{},userxattr", l.options())).map_err(|e| e.to_string())?;
    rustix::mount::mount("overlay", &l.mnt, "overlay", rustix::mount::MountFlags::empty(), data.as_c_str())
        .map_err(|e| format!("mount -t overlay {} on {}: {e}", l.options(), l.mnt.display()))
}

pub fn unmount(mnt: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match rustix::mount::unmount(mnt, rustix::mount::UnmountFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::BUSY) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                let _ = rustix::mount::unmount(mnt, rustix::mount::UnmountFlags::DETACH);
                return Err(format!("umount {}: {e}", mnt.display()));
            }
        }
    }
}

pub fn is_fuse_mounted(mnt: &Path) -> bool {
    rustix::fs::statfs(mnt).map(|s| s.f_type == FUSE_SUPER_MAGIC).unwrap_or(false)
}

pub struct FuseMount {
    pub child: Child,
    pub mnt: PathBuf,
}

/// Starts `prog -f -o lowerdir=...,upperdir=...,workdir=... MNT` (fuse-overlayfs' command
/// line) and waits until the mount point is a FUSE mount.
pub fn mount_fuse(prog: &Path, l: &Layout, log: &Path) -> Result<FuseMount, String> {
    let out = fs::File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new(prog)
        .arg("-f")
        .arg("-o")
        .arg(l.options())
        .arg(&l.mnt)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("start FUSE program {}: {e}", prog.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !is_fuse_mounted(&l.mnt) {
        if let Ok(Some(st)) = child.try_wait() {
            let text = fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "FUSE program {} exited ({st}) without mounting {}: {text}",
                prog.display(),
                l.mnt.display()
            ));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("FUSE program {} did not mount {} within 10 s", prog.display(), l.mnt.display()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(FuseMount { child, mnt: l.mnt.clone() })
}

impl Drop for FuseMount {
    /// A server left running would keep the test's mount namespace alive.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl FuseMount {
    /// Unmounts and waits for the server to exit by itself (it must, after an unmount).
    pub fn unmount(mut self) -> Result<(), String> {
        let r = unmount(&self.mnt);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return r,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    r?;
                    return Err(format!("FUSE server did not exit within 5 s after umount of {}", self.mnt.display()));
                }
            }
        }
    }
}
