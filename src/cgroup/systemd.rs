//! The systemd user manager: finding it without D-Bus (preflight runs before any fork, and zbus
//! starts threads), and asking it over D-Bus for a transient scope with `Delegate=yes` (attach).
//!
//! D-Bus goes through the session bus. The manager's private socket `$XDG_RUNTIME_DIR/systemd/private`
//! (peer to peer, as systemctl uses it) would save the dbus-daemon hop, but systemd stamps its messages
//! there with the sender `org.freedesktop.systemd1`, which zbus 5 (and 6) rejects with a panic in its
//! executor thread (it requires a unique name; zbus issue 965). The private socket is still used by
//! preflight, without speaking D-Bus on it, to learn the manager's pid from SO_PEERCRED.

use std::collections::BTreeSet;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_lite::StreamExt;
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
use zbus::message::{self, Message};
use zbus::zvariant::{OwnedObjectPath, Value};
use zbus::MessageStream;

use super::detect::{self, Host};
use super::limits::Controller;
use super::CgroupError;

/// Everything D-Bus gets, connecting included: a manager that does not answer in time is treated as
/// absent (auto) or an error, never a hang.
pub const DBUS_TIMEOUT: Duration = Duration::from_secs(3);
const SYSTEMD: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER_IFACE: &str = "org.freedesktop.systemd1.Manager";

/// A running systemd user manager of this user, found through its private socket.
#[derive(Clone, Debug)]
pub struct Manager {
    /// its root cgroup, e.g. /user.slice/user-1000.slice/user@1000.service
    pub cgroup: String,
    pub dir: PathBuf,
    /// the controllers it can delegate (its root cgroup's cgroup.controllers)
    pub controllers: BTreeSet<Controller>,
    /// the session bus: a socket path, or a D-Bus address that is not a plain unix path
    pub bus: Bus,
}

#[derive(Clone, Debug)]
pub enum Bus {
    Path(PathBuf),
    Address(String),
}

/// The session bus as libsystemd and zbus find it: $DBUS_SESSION_BUS_ADDRESS, else $XDG_RUNTIME_DIR/bus.
fn session_bus() -> Bus {
    match std::env::var("DBUS_SESSION_BUS_ADDRESS") {
        Ok(addr) if !addr.is_empty() => {
            let path = addr
                .split(';')
                .next()
                .and_then(|a| a.strip_prefix("unix:"))
                .and_then(|params| params.split(',').find_map(|kv| kv.strip_prefix("path=")));
            match path {
                Some(p) => Bus::Path(PathBuf::from(p)),
                None => Bus::Address(addr),
            }
        }
        _ => Bus::Path(runtime_dir().join("bus")),
    }
}

/// `$XDG_RUNTIME_DIR`, or /run/user/UID where the variable is unset (sudo, cron, ssh without pam).
fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(format!("/run/user/{}", nix::unistd::getuid())),
    }
}

/// Finds the user manager without speaking D-Bus: connect to its private socket (instant: a unix
/// socket either accepts or refuses), read the peer's pid with SO_PEERCRED, then its cgroup.
/// `Err` carries the reason the manager cannot be used, for messages.
pub fn probe(host: &Host) -> Result<Manager, String> {
    let private_socket = runtime_dir().join("systemd/private");
    let stream = connect_nonblocking(&private_socket)
        .map_err(|e| format!("no systemd user manager ({}: {e})", private_socket.display()))?;
    let cred = socket::getsockopt(&stream, sockopt::PeerCredentials)
        .map_err(|e| format!("SO_PEERCRED on {}: {e}", private_socket.display()))?;
    drop(stream);
    if cred.uid() != nix::unistd::getuid().as_raw() {
        return Err(format!("{} belongs to uid {}, not to this user", private_socket.display(), cred.uid()));
    }
    let pid = cred.pid();
    let path = detect::cgroup2_path_of(pid).map_err(|e| e.to_string())?;
    // The manager moves itself into init.scope of its root cgroup; units go beside it.
    let cgroup = path.strip_suffix("/init.scope").unwrap_or(&path).to_string();
    let dir = host
        .dir_of(&cgroup)
        .ok_or_else(|| format!("the user manager's cgroup {cgroup} is not visible under any cgroup2 mount"))?;
    let controllers = detect::read_controllers(&dir.join("cgroup.controllers")).map_err(|e| e.to_string())?;
    let bus = session_bus();
    if let Bus::Path(path) = &bus {
        connect_nonblocking(path).map_err(|e| {
            format!(
                "the user manager runs but its session bus {} cannot be reached ({e}): install dbus-user-session",
                path.display()
            )
        })?;
    }
    Ok(Manager { cgroup, dir, controllers, bus })
}

/// A unix stream socket connected without ever blocking (a full backlog gives EAGAIN).
fn connect_nonblocking(path: &Path) -> nix::Result<UnixStream> {
    let fd =
        socket::socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)?;
    socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &UnixAddr::new(path)?)?;
    Ok(UnixStream::from(fd))
}

/// A transient scope unit name for container `name`: unit names allow only `[A-Za-z0-9:_.\-]`.
pub fn scope_name(name: &str) -> String {
    let clean: String =
        name.chars().take(200).map(|c| if c.is_ascii_alphanumeric() || ":_.-".contains(c) { c } else { '_' }).collect();
    format!("burrow-{clean}.scope")
}

/// Asks the manager for scope `unit` holding `pids`, with `Delegate=yes`, collected when it ends
/// (also when it fails), and waits until the start job has finished.
pub fn start_scope(manager: &Manager, pids: &[i32], unit: &str) -> Result<(), CgroupError> {
    let failed = |reason: String| CgroupError::Systemd { unit: unit.to_string(), reason };
    let work = async {
        let conn = connect(manager).await?;
        start_scope_on(&conn, pids, unit).await
    };
    let timeout = async {
        async_io::Timer::after(DBUS_TIMEOUT).await;
        Err(format!("no answer from the systemd user manager within {} s", DBUS_TIMEOUT.as_secs()))
    };
    async_io::block_on(futures_lite::future::or(work, timeout)).map_err(failed)
}

/// Connects to the session bus (Hello included).
async fn connect(manager: &Manager) -> Result<zbus::Connection, String> {
    let builder = match &manager.bus {
        Bus::Path(path) => {
            let stream = connect_nonblocking(path)
                .map_err(|e| format!("cannot connect to the session bus {}: {e}", path.display()))?;
            zbus::connection::Builder::async_io_unix_stream(stream)
        }
        Bus::Address(addr) => zbus::connection::Builder::address(addr.as_str())
            .map_err(|e| format!("invalid DBUS_SESSION_BUS_ADDRESS '{addr}': {e}"))?,
    };
    builder.build().await.map_err(|e| format!("cannot connect to the session bus: {e}"))
}

/// One round trip: AddMatch and Subscribe go out without waiting for their replies, right before
/// StartTransientUnit. The bus handles one connection's messages in order, so the match rule and the
/// subscription are in force before the job can end; replies and signals are then read off one
/// stream of every incoming message (a JobRemoved may come before the reply naming the job).
async fn start_scope_on(conn: &zbus::Connection, pids: &[i32], unit: &str) -> Result<(), String> {
    let dbus = |e: zbus::Error| e.to_string();
    let mut incoming = MessageStream::from(conn);
    let rule = format!(
        "type='signal',sender='{SYSTEMD}',path='{MANAGER_PATH}',interface='{MANAGER_IFACE}',member='JobRemoved'"
    );
    let add_match = no_reply_call(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "AddMatch",
        &(rule.as_str(),),
    )
    .map_err(dbus)?;
    // On the bus, systemd only emits signals while someone is subscribed.
    let subscribe = no_reply_call(SYSTEMD, MANAGER_PATH, MANAGER_IFACE, "Subscribe", &()).map_err(dbus)?;
    let pid_list = pids.iter().map(|&p| u32::try_from(p).map_err(|_| format!("invalid pid {p}")));
    let pid_list: Vec<u32> = pid_list.collect::<Result<_, _>>()?;
    let pid = pids.first().copied().unwrap_or_default();
    let properties: Vec<(&str, Value<'_>)> = vec![
        ("Description", Value::from("burrow container")),
        ("PIDs", Value::from(pid_list)),
        ("Delegate", Value::from(true)),
        ("CollectMode", Value::from("inactive-or-failed")),
    ];
    let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
    let start = Message::method_call(MANAGER_PATH, "StartTransientUnit")
        .and_then(|b| b.destination(SYSTEMD))
        .and_then(|b| b.interface(MANAGER_IFACE))
        .and_then(|b| b.build(&(unit, "fail", properties, aux)))
        .map_err(dbus)?;
    for msg in [&add_match, &subscribe, &start] {
        conn.send(msg).await.map_err(dbus)?;
    }
    let serial = start.primary_header().serial_num();
    let mut job: Option<OwnedObjectPath> = None;
    let mut ended: Vec<(OwnedObjectPath, String)> = Vec::new();
    while let Some(msg) = incoming.next().await {
        let msg = msg.map_err(dbus)?;
        let header = msg.header();
        let is_reply = header.reply_serial() == Some(serial);
        match msg.message_type() {
            message::Type::MethodReturn if is_reply => {
                job = Some(msg.body().deserialize().map_err(dbus)?);
            }
            message::Type::Error if is_reply => {
                let name = header.error_name().map(|n| n.to_string()).unwrap_or_default();
                let text: String = msg.body().deserialize().unwrap_or_default();
                return Err(format!("{name}: {text}"));
            }
            message::Type::Signal if header.member().is_some_and(|m| m == "JobRemoved") => {
                if let Ok((_, path, _, result)) = msg.body().deserialize::<(u32, OwnedObjectPath, String, String)>() {
                    ended.push((path, result));
                }
            }
            _ => continue,
        }
        let Some(job) = &job else { continue };
        if let Some((_, result)) = ended.iter().find(|(path, _)| path == job) {
            return match result.as_str() {
                "done" => Ok(()),
                other => Err(format!(
                    "its start job ended with result '{other}' (see `journalctl --user -u {unit}`; \
                     the manager must be able to move process {pid} into its subtree, which needs write \
                     access to cgroup.procs of the closest common ancestor cgroup)"
                )),
            };
        }
    }
    Err("the connection to the user manager closed before the start job ended".into())
}

/// A method call whose reply nobody waits for.
fn no_reply_call<B>(dest: &str, path: &str, iface: &str, method: &str, body: &B) -> zbus::Result<Message>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    Message::method_call(path, method)?
        .destination(dest)?
        .interface(iface)?
        .with_flags(message::Flags::NoReplyExpected)?
        .build(body)
}
