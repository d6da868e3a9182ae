//! `ps`, `logs`, `stop`, `kill`, `wait`, `rm`: each reads the records (see [`super::record`]); those that
//! change a container take its operations lock first.

use super::cli::{KillArgs, LogsArgs, PsArgs, RmArgs, StopArgs, WaitArgs};
use super::logfile;
use super::proc;
use super::record::{self, Record, RecordError, Status};
use std::io::{Read, Seek, Write};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is running: stop it first, or use rm -f")]
    Running(String),
    #[error("unknown signal {0:?}: give a name (TERM, SIGKILL) or a number")]
    Signal(String),
    #[error("unknown --format {0:?}: use table or json")]
    Format(String),
    #[error("container {0} did not end within 10 s of SIGKILL")]
    Stuck(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// One line of `ps`, also its JSON form.
#[derive(serde::Serialize)]
struct Row {
    id: String,
    name: String,
    root: String,
    command: String,
    created: u64,
    status: String,
    exit_code: Option<i32>,
    running: bool,
    ports: Vec<String>,
}

fn row(r: &Record) -> Row {
    let status = r.status();
    let (text, exit_code) = match status {
        Status::Created => ("Created".to_string(), None),
        Status::Running => {
            let since = r.started().map(|s| s.at).unwrap_or(r.config.created);
            (format!("Up {}", ago(since)), None)
        }
        Status::Exited(Some(c)) => {
            let when = r.exit().map(|e| format!(" {} ago", ago(e.finished))).unwrap_or_default();
            (format!("Exited ({c}){when}"), Some(c))
        }
        Status::Exited(None) => ("Exited (unknown: its monitor was killed)".to_string(), None),
    };
    Row {
        id: r.config.id.clone(),
        name: r.display_name().to_string(),
        root: r.config.root.clone(),
        command: r.config.command.join(" "),
        created: r.config.created,
        status: text,
        exit_code,
        running: status == Status::Running || status == Status::Created,
        ports: r.config.ports.clone(),
    }
}

/// "5 seconds", "3 minutes", "2 hours", "4 days" since `t`.
fn ago(t: u64) -> String {
    let s = record::now().saturating_sub(t);
    match s {
        0..=119 => format!("{s} seconds"),
        120..=7199 => format!("{} minutes", s / 60),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86400),
    }
}

pub fn ps(args: &PsArgs) -> Result<i32, CommandError> {
    let rows: Vec<Row> = record::list()?.iter().map(row).filter(|r| args.all || r.running).collect();
    let mut out = std::io::stdout().lock();
    if args.quiet {
        rows.iter().for_each(|r| drop(writeln!(out, "{}", r.id)));
        return Ok(0);
    }
    match args.format.as_str() {
        "json" => {
            writeln!(out, "{}", serde_json::to_string_pretty(&rows).unwrap_or_default())?;
        }
        "table" => {
            let created = |r: &Row| format!("{} ago", ago(r.created));
            let cmd = |r: &Row| truncate(&r.command, 30);
            let w = |f: &dyn Fn(&Row) -> String, head: &str| {
                rows.iter().map(|r| f(r).len()).max().unwrap_or(0).max(head.len())
            };
            let (wn, wr, wc, wt, ws) = (
                w(&|r| r.name.clone(), "NAME"),
                w(&|r| r.root.clone(), "IMAGE/ROOT"),
                w(&cmd, "COMMAND"),
                w(&created, "CREATED"),
                w(&|r| r.status.clone(), "STATUS"),
            );
            writeln!(
                out,
                "{:<12}  {:<wn$}  {:<wr$}  {:<wc$}  {:<wt$}  {:<ws$}  PORTS",
                "ID", "NAME", "IMAGE/ROOT", "COMMAND", "CREATED", "STATUS"
            )?;
            for r in &rows {
                writeln!(
                    out,
                    "{:<12}  {:<wn$}  {:<wr$}  {:<wc$}  {:<wt$}  {:<ws$}  {}",
                    r.id,
                    r.name,
                    r.root,
                    cmd(r),
                    created(r),
                    r.status,
                    r.ports.join(", ")
                )?;
            }
        }
        other => return Err(CommandError::Format(other.into())),
    }
    Ok(0)
}

fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

pub fn logs(args: &LogsArgs) -> Result<i32, CommandError> {
    let r = record::find(&args.container)?;
    let mut all = std::fs::read(r.file("log.1")).unwrap_or_default();
    let older = all.len();
    let current = std::fs::File::open(r.file("log")).ok();
    if let Some(mut f) = current.as_ref() {
        f.read_to_end(&mut all)?;
    }
    // Only whole records: the monitor may be writing one (-f reads it on its next pass).
    let (records, whole) = logfile::records(&all);
    logfile::emit(logfile::tail(&records, args.tail), args.timestamps)?;
    if !args.follow {
        return Ok(0);
    }
    // Follow: print the records appended (a rotation starts a new file: reopen it) until the container ended
    // and nothing more came.
    let mut pos = whole.saturating_sub(older) as u64;
    let mut file = current;
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let running = r.running();
        let mut got = 0;
        if let Some(f) = file.as_mut() {
            f.seek(std::io::SeekFrom::Start(pos))?;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&buf[..n]);
                got += n;
                pos += n as u64;
            }
            let (records, whole) = logfile::records(&pending);
            logfile::emit(&records, args.timestamps)?;
            pending.drain(..whole);
        }
        let rotated = match (std::fs::metadata(r.file("log")), file.as_ref().map(|f| f.metadata())) {
            (Ok(now), Some(Ok(ours))) => {
                std::os::unix::fs::MetadataExt::ino(&now) != std::os::unix::fs::MetadataExt::ino(&ours)
            }
            (Ok(_), None) => true,
            _ => false,
        };
        if rotated {
            file = std::fs::File::open(r.file("log")).ok();
            pos = 0;
            pending.clear();
            continue;
        }
        if !running && got == 0 {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Signals the container's init (which forwards the signal to the payload; SIGKILL ends the container).
fn signal(r: &Record, sig: i32) -> Result<(), CommandError> {
    let started = r.started().filter(|_| r.running()).ok_or_else(|| CommandError::NotRunning(r.config.id.clone()))?;
    if !proc::signal(started.init, started.init_start, sig) {
        return Err(CommandError::NotRunning(r.config.id.clone()));
    }
    Ok(())
}

/// Waits until the container ended, at most `limit`; true if it did.
fn ended_within(r: &Record, limit: Duration) -> bool {
    let start = Instant::now();
    while r.running() {
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// SIGTERM, then SIGKILL after `grace`; returns once the container ended.
fn stop_one(r: &Record, grace: Duration) -> Result<(), CommandError> {
    if !r.running() {
        return Ok(());
    }
    let _ = signal(r, libc::SIGTERM);
    if ended_within(r, grace) {
        return Ok(());
    }
    let _ = signal(r, libc::SIGKILL);
    if ended_within(r, Duration::from_secs(10)) {
        return Ok(());
    }
    Err(CommandError::Stuck(r.config.id.clone()))
}

/// Runs `f` on each container, printing what it was called as on success (podman's output) and the error
/// otherwise; the exit status is 125 if any failed.
fn each(names: &[String], mut f: impl FnMut(&Record) -> Result<(), CommandError>) -> i32 {
    let mut code = 0;
    for name in names {
        match record::find(name).map_err(CommandError::from).and_then(|r| f(&r)) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("burrow: {e}");
                code = 125;
            }
        }
    }
    code
}

pub fn stop(args: &StopArgs) -> i32 {
    each(&args.containers, |r| {
        let _ops = r.lock_ops()?;
        stop_one(r, Duration::from_secs(args.time))
    })
}

pub fn kill(args: &KillArgs) -> i32 {
    let Some(sig) = proc::parse_signal(&args.signal) else {
        eprintln!("burrow: {}", CommandError::Signal(args.signal.clone()));
        return 125;
    };
    each(&args.containers, |r| {
        let _ops = r.lock_ops()?;
        signal(r, sig)
    })
}

pub fn wait(args: &WaitArgs) -> i32 {
    let mut code = 0;
    for name in &args.containers {
        match record::find(name) {
            Ok(r) => match r.wait_ended() {
                Some(e) => println!("{}", e.code),
                None => println!("-1"),
            },
            Err(e) => {
                eprintln!("burrow: {e}");
                code = 125;
            }
        }
    }
    code
}

pub fn rm(args: &RmArgs) -> i32 {
    each(&args.containers, |r| {
        let _ops = r.lock_ops()?;
        if r.running() {
            if !args.force {
                return Err(CommandError::Running(r.config.id.clone()));
            }
            let _ = signal(r, libc::SIGKILL);
            if !ended_within(r, Duration::from_secs(10)) {
                return Err(CommandError::Stuck(r.config.id.clone()));
            }
        }
        Ok(record::remove(r)?)
    })
}
