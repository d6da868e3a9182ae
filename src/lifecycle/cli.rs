//! Syntax of the lifecycle commands (clap derive structs only).

use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Default)]
pub struct PsArgs {
    /// Show every container, not only running ones.
    #[arg(long, short = 'a')]
    pub all: bool,
    /// Output format: table (default) or json.
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    pub format: String,
    /// Print only the IDs.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Args, Debug, Default)]
pub struct LogsArgs {
    /// Keep printing what the container writes until it ends.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Print only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Put the time each line was written (RFC 3339, UTC) before it.
    #[arg(long, short = 't')]
    pub timestamps: bool,
    /// The container (name, ID or unique ID prefix).
    pub container: String,
}

#[derive(Args, Debug, Default)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(long, short = 'i')]
    pub interactive: bool,
    /// Give the command a pseudo-terminal from the container's devpts.
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Run as this user inside: UID[:GID] or NAME[:GROUP] from the container's /etc/passwd.
    #[arg(long, short = 'u', value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Set an environment variable: K=V, or K to copy it from burrow's environment (repeatable).
    #[arg(long = "env", short = 'e', value_name = "K[=V]")]
    pub env: Vec<String>,
    /// Working directory inside the container (default: the container's).
    #[arg(long, short = 'w', value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// The container (name, ID or unique ID prefix).
    pub container: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(long, short = 't', value_name = "SECONDS", default_value = "10")]
    pub time: u64,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct KillArgs {
    /// The signal: a name (TERM, SIGTERM) or a number.
    #[arg(long, short = 's', value_name = "SIGNAL", default_value = "KILL")]
    pub signal: String,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct WaitArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct RmArgs {
    /// Stop a running container first (SIGKILL).
    #[arg(long, short = 'f')]
    pub force: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}
