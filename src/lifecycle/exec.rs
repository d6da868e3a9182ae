//! `burrow exec`: asks the running container's init, over its control socket, to run a command (see
//! [`crate::launch::control`]); relays the pty with -t, forwards signals, and returns the command's code.

use super::cli::ExecArgs;
use super::record::{self, RecordError};
use crate::launch::channel::{Channel, ChannelError};
use crate::launch::msg::{ExecRequest, Msg};
use crate::launch::signals;
use crate::terminal::{Relay, TerminalError};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
use std::os::fd::{AsFd, BorrowedFd};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} runs without burrow's init (--no-init): exec needs it")]
    NoInit(String),
    #[error("container {id}: connect to its control socket {path}: {source}")]
    Connect { id: String, path: String, source: nix::Error },
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Terminal(#[from] TerminalError),
    #[error("malformed --env {0:?}: expected K=V or K")]
    Env(String),
    #[error("{0}: {1}")]
    Sys(&'static str, nix::Error),
}

pub fn main(args: &ExecArgs) -> i32 {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("burrow: {e}");
            125
        }
    }
}

fn env(args: &ExecArgs) -> Result<Vec<(String, String)>, ExecError> {
    args.env
        .iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            None if !e.is_empty() => Ok((e.clone(), std::env::var(e).unwrap_or_default())),
            _ => Err(ExecError::Env(e.clone())),
        })
        .collect()
}

fn connect(r: &record::Record) -> Result<Channel, ExecError> {
    let path = r.file("ctl");
    let err = |source| ExecError::Connect { id: r.config.id.clone(), path: path.display().to_string(), source };
    let fd = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).map_err(err)?;
    let addr = UnixAddr::new(&path).map_err(err)?;
    socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).map_err(err)?;
    Ok(Channel::from_fd(fd))
}

fn run(args: &ExecArgs) -> Result<i32, ExecError> {
    let r = record::find(&args.container)?;
    if !r.config.has_init {
        return Err(ExecError::NoInit(r.config.id));
    }
    if !r.running() {
        return Err(ExecError::NotRunning(r.config.id));
    }
    let terminal = match args.tty {
        true => Some(crate::terminal::require_stdin_terminal()?),
        false => None,
    };
    let req = ExecRequest {
        command: args.command.clone(),
        env: env(args)?,
        user: args.user.clone(),
        workdir: args.workdir.clone(),
        terminal,
    };
    let chan = connect(&r)?;
    signals::block().map_err(|e| ExecError::Sys("block signals", e))?;
    if terminal.is_some() {
        chan.send(&Msg::Exec(req))?;
    } else {
        let null;
        let input = std::io::stdin();
        let stdin: BorrowedFd<'_> = match args.interactive {
            true => input.as_fd(),
            false => {
                null = std::fs::File::open("/dev/null").map_err(|e| {
                    ExecError::Sys("open /dev/null", nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
                })?;
                null.as_fd()
            }
        };
        let (out, err) = (std::io::stdout(), std::io::stderr());
        chan.send_with_fds(&Msg::Exec(req), &[stdin, out.as_fd(), err.as_fd()])?;
    }
    relay(&chan, args.interactive)
}

/// Until init says the command ended: the pty relayed, signals passed on.
fn relay(chan: &Channel, interactive: bool) -> Result<i32, ExecError> {
    let sfd = signals::signalfd().map_err(|e| ExecError::Sys("signalfd", e))?;
    let mut relay: Option<Relay> = None;
    let mut failure: Option<crate::launch::parent::LaunchError> = None;
    let outcome = loop {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN), PollFd::new(chan.as_fd(), PollFlags::POLLIN)];
        fds.extend(relay.as_ref().map(|r| r.poll_fds()).unwrap_or_default());
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => break Err(ExecError::Sys("poll", e)),
        }
        let chan_ready = fds[1].revents().is_some_and(|r| !r.is_empty());
        let events: Vec<PollFlags> = fds[2..].iter().map(|f| f.revents().unwrap_or(PollFlags::empty())).collect();
        drop(fds);
        if let Some(r) = relay.as_mut() {
            r.service(&events);
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            let signo = info.ssi_signo as i32;
            match (signo, relay.as_ref()) {
                (libc::SIGCHLD, _) => {}
                (libc::SIGWINCH, Some(r)) => r.resize(),
                (libc::SIGWINCH, None) => {}
                _ => {
                    let _ = chan.send(&Msg::Signal { signo });
                }
            }
        }
        if !chan_ready {
            continue;
        }
        match chan.recv_with_fds()? {
            (Some(Msg::Attach { terminal: true, .. }), fds) => {
                if let Some(master) = fds.into_iter().next() {
                    relay = Some(Relay::new(master, interactive)?);
                }
            }
            (Some(Msg::Exited { code }), _) => break Ok(Some(code)),
            (Some(m), _) => failure = failure.or(crate::launch::parent::failure(m)),
            (None, _) => break Ok(None),
        }
    };
    if let Some(r) = relay {
        r.finish();
    }
    if let Some(f) = failure {
        eprintln!("burrow: {f}");
        return Ok(f.exit_code());
    }
    match outcome? {
        Some(code) => Ok(code),
        None => {
            // init is gone: the container ended, and took the command with it.
            eprintln!("burrow: the container ended while the command ran");
            Ok(137)
        }
    }
}
