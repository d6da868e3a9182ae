//! burrow-overlayfs: burrow's FUSE overlay as a standalone mount program, with
//! fuse-overlayfs's command line so podman can use it as `mount_program`.
//!
//! `burrow-overlayfs [-f] [-d] [-o OPT[,OPT...]]... MOUNTPOINT`
//!
//! Like fuse-overlayfs it returns once the mount is live and keeps serving in the background,
//! unless `-f` keeps it in the foreground.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};
use burrow::overlay::{fuse, options};

/// Hidden flag: this process is the background server started by the foreground one.
const DAEMON_CHILD: &str = "--burrow-daemon-child";
const READY: &str = "burrow-overlayfs: ready";

struct Args {
    foreground: bool,
    daemon_child: bool,
    opts: Vec<String>,
    mountpoint: PathBuf,
}

const USAGE: &str = "usage: burrow-overlayfs [-f] [-d] -o lowerdir=A[:B...],upperdir=U,workdir=W MOUNTPOINT";

fn parse_args() -> Result<Args> {
    let mut args = std::env::args_os().skip(1);
    let (mut foreground, mut daemon_child, mut opts, mut mountpoint) = (false, false, Vec::new(), None);
    while let Some(arg) = args.next() {
        let s = arg.to_string_lossy().into_owned();
        match s.as_str() {
            "-f" => foreground = true,
            "-d" | "--debug" => foreground = true,
            "-h" | "--help" => bail!("{USAGE}"),
            "-V" | "--version" => {
                println!("burrow-overlayfs {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            DAEMON_CHILD => daemon_child = true,
            "-o" => opts.push(args.next().context("-o needs an option list")?.to_string_lossy().into_owned()),
            o if o.starts_with("-o") => opts.push(o[2..].to_owned()),
            o if o.starts_with('-') => bail!("unknown flag {o}\n{USAGE}"),
            _ if mountpoint.is_none() => mountpoint = Some(PathBuf::from(arg)),
            _ => bail!("unexpected argument {s}\n{USAGE}"),
        }
    }
    let mountpoint = mountpoint.with_context(|| format!("missing MOUNTPOINT\n{USAGE}"))?;
    Ok(Args { foreground, daemon_child, opts, mountpoint })
}

fn serve(args: &Args, announce: bool) -> Result<()> {
    let mut parsed = options::parse(&args.opts)?;
    let mountpoint = &args.mountpoint;
    // A read-only overlay (no upperdir) gets an empty private upper and work directory that the read-only
    // mount never writes to; removed when serving ends.
    let scratch = match parsed.read_only_scratch {
        true => Some(tempfile_dir()?),
        false => None,
    };
    if let Some(dir) = &scratch {
        parsed.config.upper = dir.join("upper");
        parsed.config.work = dir.join("work");
    }
    let served = fuse::mount_and_serve_with(&parsed.config, mountpoint, parsed.flags, || {
        if announce {
            let mut out = std::io::stdout();
            let _ = writeln!(out, "{READY}");
            let _ = out.flush();
        }
    })
    .with_context(|| format!("cannot serve overlay on {}", mountpoint.display()));
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    served
}

/// A fresh private directory with empty `upper` and `work` in it, under $TMPDIR.
fn tempfile_dir() -> Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for n in 0..100u32 {
        let dir = base.join(format!("burrow-overlayfs-ro.{}.{n}", std::process::id()));
        if std::fs::DirBuilder::new().mode(0o700).create(&dir).is_ok() {
            for sub in ["upper", "work"] {
                std::fs::create_dir(dir.join(sub)).with_context(|| format!("mkdir {}", dir.join(sub).display()))?;
            }
            return Ok(dir);
        }
    }
    anyhow::bail!("cannot create a scratch directory in {}", base.display())
}

/// Starts the server as a detached child and waits until it reports the mount live (exit 0)
/// or fails (its error, exit 1). The child keeps no descriptor of our caller: podman waits for
/// EOF on our output, which would never come if the server inherited it.
fn daemonize() -> Result<()> {
    let exe = std::env::current_exe().context("cannot find own executable")?;
    let mut child = Command::new(exe)
        .arg(DAEMON_CHILD)
        .args(std::env::args_os().skip(1))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start the background server")?;
    let mut line = String::new();
    let stdout = child.stdout.take().context("no pipe from the background server")?;
    BufReader::new(stdout).read_line(&mut line)?;
    if line.trim_end() == READY {
        return Ok(());
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let _ = child.wait();
    let err = err.trim().trim_start_matches("burrow-overlayfs: ");
    if err.is_empty() {
        bail!("the background server exited before the mount was ready");
    }
    bail!("{err}")
}

fn run() -> Result<()> {
    let args = parse_args()?;
    // Validate before forking, so a typo fails in the caller's own process.
    options::parse(&args.opts)?;
    if args.daemon_child {
        let _ = rustix::process::setsid();
        return serve(&args, true);
    }
    if args.foreground {
        return serve(&args, false);
    }
    daemonize()
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("burrow-overlayfs: {e:#}");
            ExitCode::from(1)
        }
    }
}
