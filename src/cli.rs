//! Command-line syntax (clap derive structs only; validation lives in `spec`).

use crate::idmap::UsernsMode;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "burrow", version, about = "Run a rootless container", propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command in a new rootless container.
    Run(Box<RunArgs>),
    /// Check what works on this machine and print the fix for what does not.
    Doctor(DoctorArgs),
    /// Pull an image from a registry into the store.
    Pull(PullArgs),
    /// Log in to a registry (stores the credentials where podman reads them).
    Login(LoginArgs),
    /// Remove the stored credentials of a registry.
    Logout(LogoutArgs),
}

/// How to reach a registry (shared by `pull` and `run IMAGE`); podman's flag names.
#[derive(Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Require HTTPS with a verified certificate; --tls-verify=false also accepts self-signed certificates and
    /// plain HTTP (tried after HTTPS).
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set, default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    pub tls_verify: bool,
    /// Credentials file (default: $REGISTRY_AUTH_FILE, else podman's: $XDG_RUNTIME_DIR/containers/auth.json,
    /// then ~/.config/containers/auth.json, then ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Credentials for this pull, USER:PASSWORD (overrides the auth files).
    #[arg(long, value_name = "USER:PASSWORD")]
    pub creds: Option<String>,
    /// Attempts after the first when the registry is unreachable, times out or answers 429/5xx.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub retry: u32,
    /// Delay between attempts (e.g. 500ms, 2s; default: 1s doubling up to 30s).
    #[arg(long, value_name = "DURATION")]
    pub retry_delay: Option<String>,
}

impl Default for RegistryArgs {
    fn default() -> Self {
        RegistryArgs { tls_verify: true, authfile: None, creds: None, retry: 3, retry_delay: None }
    }
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// The image store directory (default: $BURROW_STORE, else $XDG_DATA_HOME/burrow, else ~/.local/share/burrow).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The platform to pull from a multi-platform image (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// No progress bars; print only the image ID.
    #[arg(long, short)]
    pub quiet: bool,
    /// NAME[:TAG] or NAME@sha256:DIGEST (short names are docker.io/library/NAME).
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// User name (default: asked on the terminal).
    #[arg(long, short)]
    pub username: Option<String>,
    /// Password on the command line (visible to other users in ps: prefer --password-stdin).
    #[arg(long, short)]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Credentials file to write (default: $REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Require HTTPS with a verified certificate (false: also self-signed certificates and plain HTTP).
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set, default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    pub tls_verify: bool,
    /// HOST[:PORT], or HOST[:PORT]/NAMESPACE for credentials that apply to one namespace only.
    #[arg(value_name = "REGISTRY")]
    pub registry: String,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Remove the credentials of every registry.
    #[arg(long, short)]
    pub all: bool,
    /// Credentials file to change (default: as for login).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    #[arg(value_name = "REGISTRY")]
    pub registry: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct DoctorArgs {
    /// Print only failed checks.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum OverlayDriver {
    #[default]
    Auto,
    Kernel,
    Fuse,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LimitsMode {
    #[default]
    Strict,
    BestEffort,
}

#[derive(Args, Debug, Default)]
pub struct RunArgs {
    /// Directory to use as the container's root filesystem (default: the host's own `/`, read-only).
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// Make the --rootfs directory writable in place instead of copy-on-write.
    #[arg(long, conflicts_with_all = ["read_only", "upper"])]
    pub rootfs_rw: bool,
    /// A read-only root filesystem, without a copy-on-write layer.
    #[arg(long, conflicts_with = "upper")]
    pub read_only: bool,
    /// Keep the copy-on-write layer in DIR (DIR/upper and DIR/work) and reuse it on the next run.
    #[arg(long, value_name = "DIR")]
    pub upper: Option<PathBuf>,
    /// Copy-on-write driver: kernel overlayfs, burrow's FUSE overlay, or auto (kernel where it mounts).
    #[arg(long, value_enum, default_value = "auto")]
    pub overlay_driver: Option<OverlayDriver>,
    /// User namespace mapping.
    #[arg(long, value_enum, default_value = "auto")]
    pub userns: Option<UsernsMode>,
    /// Run the command as this user inside: UID[:GID] or NAME[:GROUP] from the container's /etc/passwd.
    #[arg(long, short = 'u', value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Network: auto (slirp4netns, else pasta, else none), slirp4netns, pasta, none (loopback only) or host.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub network: Option<crate::net::Mode>,
    /// Publish a container port on the host: [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp] (repeatable).
    #[arg(long = "publish", short = 'p', value_name = "SPEC")]
    pub publish: Vec<crate::net::PortSpec>,
    /// Who carries published ports: burrow (its splice forwarder, default), or the backend's own forwarding:
    /// slirp4netns (add_hostfwd through libslirp) or pasta (its -t/-u).
    #[arg(long, value_name = "HANDLER")]
    pub port_handler: Option<crate::net::PortHandler>,
    /// Let the container reach the host's loopback services as host.burrow.internal.
    #[arg(long)]
    pub allow_host_loopback: bool,
    /// DNS server for the container's /etc/resolv.conf (repeatable; default: the backend's forwarder).
    #[arg(long, value_name = "IP")]
    pub dns: Vec<std::net::IpAddr>,
    /// The container's hostname.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Bind a host path: SRC:DST[:ro|rw] (repeatable).
    #[arg(long = "volume", short = 'v', value_name = "SRC:DST[:ro|rw]")]
    pub volumes: Vec<String>,
    /// Mount a fresh tmpfs at DST (repeatable).
    #[arg(long, value_name = "DST")]
    pub tmpfs: Vec<PathBuf>,
    /// Set an environment variable: K=V, or K to copy it from burrow's environment (repeatable).
    #[arg(long = "env", short = 'e', value_name = "K[=V]")]
    pub env: Vec<String>,
    /// Read K=V lines from FILE (blank lines and # comments skipped).
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(long, short = 'w', value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Start from burrow's whole environment instead of a clean one.
    #[arg(long)]
    pub preserve_env: bool,
    /// Exec the command as PID 1 instead of under burrow's init.
    #[arg(long)]
    pub no_init: bool,
    /// Memory limit (memory.max), e.g. 512m, 2g.
    #[arg(long, value_name = "SIZE", value_parser = crate::cgroup::parse_size)]
    pub memory: Option<u64>,
    /// Swap limit (memory.swap.max), e.g. 1g.
    #[arg(long, value_name = "SIZE", value_parser = crate::cgroup::parse_size)]
    pub memory_swap: Option<u64>,
    /// Maximum number of processes (pids.max).
    #[arg(long, value_name = "N")]
    pub pids_limit: Option<u64>,
    /// CPU bandwidth in CPUs (cpu.max), e.g. 1.5.
    #[arg(long, value_name = "F", value_parser = crate::cgroup::parse_cpus)]
    pub cpus: Option<f64>,
    /// Relative CPU weight, 1-10000 (cpu.weight).
    #[arg(long, value_name = "N")]
    pub cpu_weight: Option<u64>,
    /// Relative IO weight, 1-10000 (io.weight).
    #[arg(long, value_name = "N")]
    pub io_weight: Option<u64>,
    /// Where the container's cgroup comes from.
    #[arg(long, value_enum, default_value = "auto")]
    pub cgroup_manager: Option<crate::cgroup::ManagerKind>,
    /// strict: a limit that cannot be enforced is an error; best-effort: warn and run without it.
    #[arg(long, value_enum, default_value = "strict")]
    pub limits: Option<LimitsMode>,
    /// Print peak memory, CPU time, peak processes and OOM kills at exit.
    #[arg(long)]
    pub stats: bool,
    /// Write the same figures as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Say what burrow decides (mappings, mounts).
    #[arg(long)]
    pub verbose: bool,
    /// The command and its arguments (default: /bin/sh).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

impl RunArgs {
    /// The cgroup part of the request.
    pub fn cgroup_request(&self) -> crate::cgroup::Request {
        crate::cgroup::Request {
            manager: self.cgroup_manager.unwrap_or_default(),
            limits: crate::cgroup::Limits {
                memory: self.memory,
                memory_swap: self.memory_swap,
                pids: self.pids_limit,
                cpus: self.cpus,
                cpu_weight: self.cpu_weight,
                io_weight: self.io_weight,
            },
            best_effort: self.limits == Some(LimitsMode::BestEffort),
            want_stats: self.stats || self.stats_json.is_some(),
        }
    }
}

impl RunArgs {
    /// The network part of the request.
    pub fn net_request(&self) -> crate::net::Request {
        crate::net::Request {
            mode: self.network.unwrap_or_default(),
            publish: self.publish.clone(),
            allow_host_loopback: self.allow_host_loopback,
            dns: self.dns.clone(),
            port_handler: self.port_handler,
        }
    }
}
