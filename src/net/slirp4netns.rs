//! slirp4netns: started with `--ready-fd` (waited on while watching the process), `--exit-fd`
//! (the write end stays in burrow, so slirp4netns exits when burrow dies, even by SIGKILL) and
//! `--api-socket`, over which published ports are added with `add_hostfwd`.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::fcntl::OFlag;

use super::helper::{self, Helper, Pending};
use super::publish::PortSpec;
use super::{dns, NetError, MTU, TAP_NAME};

pub const NAME: &str = "slirp4netns";

/// Optional hardening flags the installed slirp4netns understands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    pub sandbox: bool,
    pub seccomp: bool,
}

/// One `slirp4netns --version` run: `--enable-sandbox` and `--enable-seccomp` exist since 0.4.0;
/// seccomp also needs the build to link libseccomp, which `--version` lists. The answer is cached in
/// `cache_dir` under the binary's identity (device, inode, mtime, size), since an exec costs a few ms of
/// every run's startup.
pub fn detect(bin: &Path, cache_dir: Option<&Path>) -> Features {
    use std::os::unix::fs::MetadataExt;
    let identity = std::fs::metadata(bin).ok().map(|m| format!("{}:{}:{}:{}", m.dev(), m.ino(), m.mtime(), m.size()));
    let cache = cache_dir.map(|d| d.join("slirp4netns.features"));
    let cached = |id: &str| {
        let text = std::fs::read_to_string(cache.as_ref()?).ok()?;
        let rest = text.trim().strip_prefix(id)?.strip_prefix(' ')?;
        Some(Features { sandbox: rest.contains("sandbox"), seccomp: rest.contains("seccomp") })
    };
    if let Some(f) = identity.as_deref().and_then(cached) {
        return f;
    }
    let Ok(out) = Command::new(bin).arg("--version").output() else {
        return Features::default();
    };
    let features = parse_version(&String::from_utf8_lossy(&out.stdout));
    if let (Some(id), Some(path)) = (identity, cache) {
        let words = [(features.sandbox, "sandbox"), (features.seccomp, "seccomp")];
        let list: Vec<&str> = words.iter().filter(|(on, _)| *on).map(|(_, w)| *w).collect();
        // Written whole then renamed: a concurrent run reads the old or the new file, never half of one.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, format!("{id} {}\n", list.join(" "))).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
    features
}

pub fn parse_version(text: &str) -> Features {
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("slirp4netns version "))
        .map(|v| {
            v.trim()
                .split('.')
                .map(|n| n.trim_matches(|c: char| !c.is_ascii_digit()).parse::<u32>().unwrap_or(0))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let at_least_0_4 = matches!(version.as_slice(), [major, ..] if *major >= 1)
        || matches!(version.as_slice(), [0, minor, ..] if *minor >= 4);
    Features { sandbox: at_least_0_4, seccomp: at_least_0_4 && text.lines().any(|l| l.starts_with("libseccomp:")) }
}

/// The longest path a unix socket address holds (sun_path minus the NUL).
const SUN_PATH_MAX: usize = 107;

pub struct Start<'a> {
    pub bin: &'a Path,
    pub features: Features,
    pub allow_host_loopback: bool,
}

fn api_socket(state_dir: &Path) -> PathBuf {
    state_dir.join("slirp4netns.sock")
}

/// Starts slirp4netns on `pid`'s namespaces without waiting for it. Only after the ID maps are written: its
/// sandbox calls setegid(0), which fails in a user namespace without maps ("parent failed").
pub fn spawn(s: &Start<'_>, pid: i32, state_dir: &Path) -> Result<Pending, NetError> {
    let sock = api_socket(state_dir);
    let log = state_dir.join("slirp4netns.log");
    if sock.as_os_str().len() > SUN_PATH_MAX {
        return Err(NetError::SocketPathTooLong { path: sock });
    }
    let _ = std::fs::remove_file(&sock);
    let pipe = |what| {
        nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| NetError::Spawn { helper: NAME, source: std::io::Error::other(format!("{what} pipe: {e}")) })
    };
    let (ready_r, ready_w) = pipe("ready")?;
    let (exit_r, exit_w) = pipe("exit")?;
    let (out, err) = helper::log_file(NAME, &log)?;

    let mut cmd = Command::new(s.bin);
    cmd.args(["--configure", &format!("--mtu={MTU}")]);
    if !s.allow_host_loopback {
        cmd.arg("--disable-host-loopback");
    }
    if s.features.sandbox {
        cmd.arg("--enable-sandbox");
    }
    if s.features.seccomp {
        cmd.arg("--enable-seccomp");
    }
    cmd.arg(format!("--ready-fd={}", ready_w.as_raw_fd()))
        .arg(format!("--exit-fd={}", exit_r.as_raw_fd()))
        .arg("--api-socket")
        .arg(&sock)
        .arg(pid.to_string())
        .arg(TAP_NAME)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err);
    let child = crate::sys::net::spawn_with_fds(&mut cmd, &[ready_w.as_raw_fd(), exit_r.as_raw_fd()], false)
        .map_err(|source| NetError::Spawn { helper: NAME, source })?;
    // Only slirp4netns may hold these ends: the ready pipe then reports EOF if it dies, and the
    // exit pipe's only write end is the one kept in the Helper.
    drop((ready_w, exit_r));
    let helper = Helper { name: NAME, child, keep: vec![exit_w], files: vec![sock, log.clone()] };
    Ok(Pending { helper, ready: ready_r, log })
}

/// After slirp4netns is ready: asks it, over its API socket, to forward the published ports.
pub fn publish(state_dir: &Path, specs: &[PortSpec]) -> Result<(), NetError> {
    let sock = api_socket(state_dir);
    specs.iter().try_for_each(|spec| add_hostfwd(&sock, spec))
}

fn hostfwd_request(spec: &PortSpec) -> String {
    serde_json::json!({
        "execute": "add_hostfwd",
        "arguments": {
            "proto": spec.proto.as_str(),
            "host_addr": spec.host_ip.to_string(),
            "host_port": spec.host_port,
            "guest_addr": dns::CONTAINER_ADDR.to_string(),
            "guest_port": spec.container_port,
        }
    })
    .to_string()
}

/// One request per connection, as slirp4netns' API expects; the answer is `{"return": {...}}`
/// or `{"error": {"desc": ...}}`.
fn add_hostfwd(sock: &PathBuf, spec: &PortSpec) -> Result<(), NetError> {
    let fail = |desc: String| NetError::Hostfwd { spec: *spec, socket: sock.clone(), desc };
    let mut s = UnixStream::connect(sock).map_err(|e| fail(e.to_string()))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    s.write_all(hostfwd_request(spec).as_bytes()).map_err(|e| fail(e.to_string()))?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| fail(e.to_string()))?;
    let v: serde_json::Value =
        serde_json::from_str(&answer).map_err(|e| fail(format!("unreadable answer `{answer}`: {e}")))?;
    if let Some(err) = v.get("error") {
        let desc = err.get("desc").and_then(|d| d.as_str()).unwrap_or("unknown error");
        return Err(fail(desc.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_detection() {
        let f = parse_version("slirp4netns version 1.2.0\ncommit: x\nlibslirp: 4.7.0\nlibseccomp: 2.5.4\n");
        assert_eq!(f, Features { sandbox: true, seccomp: true });
        let f = parse_version("slirp4netns version 1.1.8\nlibslirp: 4.3.1\n");
        assert_eq!(f, Features { sandbox: true, seccomp: false });
        assert_eq!(parse_version("slirp4netns version 0.3.0\n"), Features::default());
        assert_eq!(parse_version(""), Features::default());
    }

    #[test]
    fn hostfwd_json() {
        let spec: PortSpec = "127.0.0.1:8080:80/udp".parse().unwrap();
        let v: serde_json::Value = serde_json::from_str(&hostfwd_request(&spec)).unwrap();
        assert_eq!(v["execute"], "add_hostfwd");
        assert_eq!(v["arguments"]["proto"], "udp");
        assert_eq!(v["arguments"]["host_port"], 8080);
        assert_eq!(v["arguments"]["guest_port"], 80);
        assert_eq!(v["arguments"]["host_addr"], "127.0.0.1");
    }
}
