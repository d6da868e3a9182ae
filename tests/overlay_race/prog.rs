//! The hostile program (race.c, compiled static at test time so it runs in any root filesystem)
//! and a runner that watches the host canary while it runs.

use super::canary::fingerprint;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SOURCE: &str = include_str!("race.c");

/// Seconds each race runs (`BURROW_RACE_SECS`, default 10: a CI run; minutes for a long run).
pub fn secs() -> u64 {
    env_u64("BURROW_RACE_SECS", 10)
}

/// Worker threads (`BURROW_RACE_THREADS`, default 4) and the swapper's pause between cycles in
/// sched_yield calls (`BURROW_RACE_HOLD`, default 0).
pub fn tuning() -> (u64, u64) {
    (env_u64("BURROW_RACE_THREADS", 4), env_u64("BURROW_RACE_HOLD", 0))
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Compiles race.c with `gcc -static` into `dir/race`; `Err` says what is missing.
pub fn build(dir: &Path) -> Result<PathBuf, String> {
    let src = dir.join("race.c");
    std::fs::write(&src, SOURCE).map_err(|e| format!("write {}: {e}", src.display()))?;
    let exe = dir.join("race");
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .map_err(|e| format!("gcc not found ({e}): install gcc and libc6-dev (scripts/ci-setup.sh)"))?;
    if !out.status.success() {
        return Err(format!(
            "gcc -static race.c failed (libc6-dev provides the static libc): {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(exe)
}

/// The arguments after ROOT and WORKDIR: HOSTDIR SECONDS VARIANT THREADS HOLD.
pub fn args(canary: &Path, variant: &str) -> Vec<String> {
    let (threads, hold) = tuning();
    vec![canary.display().to_string(), secs().to_string(), variant.to_string(), threads.to_string(), hold.to_string()]
}

pub struct Watched {
    pub status: Option<std::process::ExitStatus>,
    pub output: String,
    /// When the canary was first seen changed, counted from the start.
    pub changed_after: Option<Duration>,
    pub ran: Duration,
}

/// Runs `cmd` (stdout and stderr captured) until it exits or `limit` passes, fingerprinting the
/// canary every 50 ms; a changed canary ends the run at once (the answer is known, and the
/// program may go on damaging the copy).
pub fn run_watched(mut cmd: Command, canary: &Path, limit: Duration) -> Watched {
    let before = fingerprint(canary);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("start the race program");
    let readers = [reader(child.stdout.take()), reader(child.stderr.take())];
    let mut changed_after = None;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for the race program") {
            break Some(st);
        }
        if changed_after.is_none() && fingerprint(canary) != before {
            changed_after = Some(start.elapsed());
            kill(&mut child);
            break None;
        }
        if start.elapsed() > limit {
            kill(&mut child);
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if changed_after.is_none() && fingerprint(canary) != before {
        changed_after = Some(start.elapsed());
    }
    let ran = start.elapsed();
    let output = readers.map(|r| r.join().unwrap_or_default()).concat();
    Watched { status, output, changed_after, ran }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn reader<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = r {
            let _ = r.read_to_string(&mut s);
        }
        s
    })
}
