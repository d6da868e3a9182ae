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
    /// notice.
    RootReady { driver: String, notice: Option<String> },
    /// P1 → P0: something the user must know while the container runs (P0 prints it as it is).
    Notice { text: String },
    /// Any stage → P0: setup failed; P0 prints it once and exits 125.
    Failed { stage: String, errno: i32, message: String },
    /// The payload's process → P0: exec failed (exit 126 or 127).
    ExecFailed { errno: i32, command: String, path_searched: Option<String> },
}
