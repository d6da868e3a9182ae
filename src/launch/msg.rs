//! The one message type of the parent/child synchronisation protocol (see docs/design/launch-sequence.md).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// P1 → P0: P1 has unshared its user, mount, UTS, IPC (and network) namespaces; write its ID maps.
    Unshared,
    /// P0 → P1: maps written by newuidmap/newgidmap, cgroup and network attached; go on.
    Go,
    /// P0 → P1: as `Go`, but a single-ID map was written (setgroups is denied inside).
    GoSingle,
    /// P0 → the container's init: the network backend has configured the namespace (sent only when there is a
    /// backend, which starts while the root filesystem is built).
    NetReady,
    /// P1 → P0, only when there is something to tell the user: the copy-on-write driver (with --verbose) and a
    /// notice; or when P1 has work after the container's end (`linger`: a FUSE server to stop), so that P0
    /// waits for P1 too.
    RootReady { driver: String, notice: Option<String>, linger: bool },
    /// P1 → P0: something the user must know while the container runs (P0 prints it as it is).
    Notice { text: String },
    /// Any stage → P0: setup failed; P0 prints it once and exits 125.
    Failed { stage: String, errno: i32, message: String },
    /// The payload's process → P0: exec failed (exit 126 or 127).
    ExecFailed { errno: i32, command: String, path_searched: Option<String> },
    /// init → P0 (with `-t` or `-d`), descriptors attached in this order: the master of the payload's pty
    /// (`terminal`), then the read end of a close-on-exec pipe whose end of file says the payload has exec'd
    /// (`watch`).
    Attach { terminal: bool, watch: bool },
    /// `burrow exec` → the container's init over its control socket; stdin, stdout and stderr attached unless
    /// a terminal is asked for (init then answers with `Attach { terminal: true, .. }` and the master).
    Exec(ExecRequest),
    /// init → `burrow exec`: the command ended with this code (128 + signal when killed).
    Exited { code: i32 },
    /// `burrow exec` → init: deliver this signal to the command.
    Signal { signo: i32 },
}

/// What `burrow exec` asks the container's init to run (the rest comes from the container's payload:
/// environment, user, hardening).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub command: Vec<String>,
    /// Added to (or replacing) the container's environment.
    pub env: Vec<(String, String)>,
    /// `-u USER[:GROUP]`, resolved in the container's /etc/passwd and /etc/group.
    pub user: Option<String>,
    pub workdir: Option<std::path::PathBuf>,
    /// A new pty of this size from the container's devpts.
    pub terminal: Option<crate::sys::tty::WinSize>,
}
