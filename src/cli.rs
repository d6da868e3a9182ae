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
    /// List containers (running ones; all with -a).
    Ps(crate::lifecycle::cli::PsArgs),
    /// Print what a detached container wrote.
    Logs(crate::lifecycle::cli::LogsArgs),
    /// Run a command in a running container.
    Exec(crate::lifecycle::cli::ExecArgs),
    /// Stop containers: SIGTERM, then SIGKILL after a timeout.
    Stop(crate::lifecycle::cli::StopArgs),
    /// Send a signal to containers.
    Kill(crate::lifecycle::cli::KillArgs),
    /// Wait for containers to end and print their exit codes.
    Wait(crate::lifecycle::cli::WaitArgs),
    /// Remove containers.
    Rm(crate::lifecycle::cli::RmArgs),
    /// The per-user user-namespace keeper (started by `burrow run`, not by hand).
    #[command(name = "__keeper", hide = true)]
    Keeper(KeeperArgs),
    /// Pull an image from a registry into the store.
    Pull(PullArgs),
    /// Log in to a registry (stores the credentials where podman reads them).
    Login(LoginArgs),
    /// Remove the stored credentials of a registry.
    Logout(LogoutArgs),
    /// Import images from a docker-archive, an OCI archive or an OCI layout directory.
    Import(ImportArgs),
    /// List the images in the store.
    Images(ImagesArgs),
    /// Remove images (by name or ID) and the layers no other image uses.
    Rmi(RmiArgs),
    /// Remove layers and blobs no image references, and interrupted extractions.
    Prune(StoreArgs),
    /// Internal: layer extraction and removal inside the store's user namespace.
    #[command(name = "__layer-helper", hide = true)]
    LayerHelper(LayerHelperArgs),
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
    #[command(flatten)]
    pub store: StoreArgs,
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

/// Where the image store is.
#[derive(Args, Debug, Default, Clone)]
pub struct StoreArgs {
    /// The image store directory (default: $BURROW_STORE, else $XDG_DATA_HOME/burrow, else ~/.local/share/burrow).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Name the image NAME[:TAG] instead of using the archive's own tag.
    #[arg(long, value_name = "NAME[:TAG]")]
    pub name: Option<String>,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
    /// docker-archive or OCI archive (a tar, optionally gzip or zstd compressed), or OCI layout directory.
    #[arg(value_name = "ARCHIVE")]
    pub path: PathBuf,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print only image IDs.
    #[arg(long, short)]
    pub quiet: bool,
    /// Show full image IDs.
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Image names (NAME[:TAG], NAME@DIGEST) or IDs (a prefix of at least 4 hex digits).
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LayerHelperArgs {
    #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KeeperArgs {
    /// The runtime directory holding keeper-1.sock and keeper-1.lock.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Seconds without a client after which the keeper exits.
    #[arg(long, value_name = "SECS")]
    pub idle: u64,
}

/// on or off.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    On,
    Off,
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

/// How the host-root sandbox shows `$HOME` (see docs/man/burrow-run.md, --home).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HomeMode {
    /// Copy-on-write: programs write their caches, nothing reaches the real home.
    #[default]
    Cow,
    /// Read-write: the real home.
    Rw,
    /// Read-only.
    Ro,
    /// Hidden behind an empty tmpfs.
    None,
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
    /// The image to run (from the store; see `burrow images`). Without it: --rootfs, or the host's own `/`.
    #[arg(value_name = "IMAGE")]
    pub image: Option<String>,
    /// Replace the image's Entrypoint (a program, or a JSON array; "" clears it). Drops the image's Cmd.
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// When to pull IMAGE: missing (default), always, never, newer.
    #[arg(long, value_enum, value_name = "POLICY", default_value = "missing")]
    pub pull: Option<crate::image::run::PullPolicy>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The platform to pull from a multi-platform IMAGE (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", requires = "image")]
    pub platform: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Make the --rootfs directory writable in place instead of copy-on-write.
    #[arg(long, conflicts_with_all = ["read_only", "upper"])]
    pub rootfs_rw: bool,
    /// A read-only root filesystem, without a copy-on-write layer.
    #[arg(long, conflicts_with = "upper")]
    pub read_only: bool,
    /// Without --rootfs: how $HOME is shown (cow: copy-on-write, rw, ro, none: an empty tmpfs). The current
    /// directory stays writable unless it is $HOME or holds it.
    #[arg(long, value_enum, value_name = "MODE")]
    pub home: Option<HomeMode>,
    /// Keep the copy-on-write layer in DIR (DIR/upper and DIR/work) and reuse it on the next run.
    #[arg(long, value_name = "DIR")]
    pub upper: Option<PathBuf>,
    /// Copy-on-write driver: kernel overlayfs, burrow's FUSE overlay, or auto (kernel where it mounts).
    #[arg(long, value_enum, default_value = "auto")]
    pub overlay_driver: Option<OverlayDriver>,
    /// User namespace mapping.
    #[arg(long, value_enum, default_value = "auto")]
    pub userns: Option<UsernsMode>,
    /// Use (and start) the per-user user-namespace keeper, which saves newuidmap/newgidmap on later starts
    /// (default on, unless a config file says `keeper = false`; see burrow-run(1)).
    #[arg(long, value_enum, value_name = "on|off", env = "BURROW_USERNS_KEEPER")]
    pub userns_keeper: Option<Switch>,
    /// Run the command as this user inside: UID[:GID] or NAME[:GROUP] from the container's /etc/passwd.
    #[arg(long, short = 'u', value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Network: auto (slirp4netns, else pasta, else none), slirp4netns, pasta, none (loopback only) or host.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub network: Option<crate::net::Mode>,
    /// Publish a container port on the host: [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp] (repeatable).
    #[arg(long = "publish", short = 'p', value_name = "SPEC")]
    pub publish: Vec<crate::net::PortSpec>,
    /// Publish every port the image exposes (ExposedPorts) and every --expose port on a free host port of all
    /// addresses (see them in `burrow ps`; a foreground run prints them).
    #[arg(long, short = 'P')]
    pub publish_all: bool,
    /// A container port for --publish-all besides the image's: PORT[/tcp|/udp] (repeatable).
    #[arg(long, value_name = "PORT[/PROTO]")]
    pub expose: Vec<crate::net::Exposed>,
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
    #[command(flatten)]
    pub security: SecurityArgs,
    /// Keep stdin open (without it the payload's stdin is /dev/null).
    #[arg(long, short = 'i')]
    pub interactive: bool,
    /// Give the payload a pseudo-terminal of its own (needs a terminal on stdin unless -d).
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Run in the background under a monitor; print the container's ID.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// The container's name (unique among the caller's containers).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Remove the container's state when it ends (a foreground run never leaves any).
    #[arg(long)]
    pub rm: bool,
    /// The command and its arguments: after IMAGE, or after `--` (default: the image's, else /bin/sh). Options
    /// after IMAGE belong to the command, as with docker and podman.
    #[arg(value_name = "CMD", trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// The payload's hardening (docs/security.md): every flag loosens or tightens one default.
#[derive(Args, Debug, Default, Clone)]
pub struct SecurityArgs {
    /// Add a capability to the payload's set (NAME or CAP_NAME, or all; repeatable).
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability from the payload's set (NAME or CAP_NAME, or all; repeatable).
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Let setuid/setgid binaries and file capabilities take effect (turns off no_new_privs and nosuid mounts).
    #[arg(long)]
    pub allow_setuid: bool,
    /// Let the payload create user namespaces (nested containers, sandboxing browsers).
    #[arg(long)]
    pub allow_nested: bool,
    /// Seccomp filter: default, unconfined, or an OCI/containers seccomp JSON profile.
    #[arg(long, value_name = "PROFILE")]
    pub seccomp: Option<String>,
    /// Pass N descriptors besides 0-2 (3 to 3+N-1) to the payload; every other one is closed.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Also confine filesystem access to the container's tree with Landlock (where the kernel has it).
    #[arg(long)]
    pub landlock: bool,
    /// Leave a masked or read-only kernel path (and those below it) as the kernel shows it, or all of them.
    #[arg(long, value_name = "PATH|all")]
    pub unmask: Vec<String>,
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
    /// The network part of the request; `image_ports` are those the image exposes, published (with the
    /// `--expose` ones) on free host ports when `-P` asks for it.
    pub fn net_request(&self, image_ports: &[crate::net::Exposed]) -> crate::net::Request {
        let mut publish = self.publish.clone();
        if self.publish_all {
            let exposed: Vec<crate::net::Exposed> = image_ports.iter().chain(&self.expose).copied().collect();
            publish.extend(crate::net::publish::publish_all(&self.publish, &exposed));
        }
        crate::net::Request {
            mode: self.network.unwrap_or_default(),
            publish,
            allow_host_loopback: self.allow_host_loopback,
            dns: self.dns.clone(),
            port_handler: self.port_handler,
        }
    }
}

impl Cli {
    /// Parses the command line. `burrow run -- CMD` and `burrow run IMAGE CMD` put their first word in the same
    /// positional slot; a word after `--` is never an image, so it goes back to the command.
    pub fn parse_args(argv: Vec<std::ffi::OsString>) -> Result<Cli, clap::Error> {
        let mut cli = match run_without_image(&argv) {
            Some(cli) => cli,
            None => Cli::try_parse_from(&argv)?,
        };
        if let Command::Run(args) = &mut cli.command {
            if let (Some(image), Some(dashes)) = (&args.image, argv.iter().position(|a| a == "--")) {
                let image_before = match Cli::try_parse_from(&argv[..dashes]) {
                    Ok(Cli { command: Command::Run(before), .. }) => before.image.is_some(),
                    _ => true,
                };
                if !image_before {
                    args.command.insert(0, image.clone());
                    args.image = None;
                }
            }
            let conflict = |what: &str| Err(clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, what));
            match (&args.image, &args.rootfs) {
                (Some(_), Some(_)) => {
                    return conflict("--rootfs and IMAGE are two roots: give one (a command goes after --)\n")
                }
                (Some(_), None) if args.rootfs_rw => return conflict("--rootfs-rw needs --rootfs, not IMAGE\n"),
                (None, _) if args.entrypoint.is_some() => return conflict("--entrypoint needs IMAGE\n"),
                _ => {}
            }
        }
        Ok(cli)
    }
}

/// A parser that knows `run` alone: the same `RunArgs`, so what it accepts it parses exactly as [`Cli`] does, but
/// without building every other subcommand's arguments (about half of a parse, 0.1-0.2 ms of every start).
#[derive(Parser, Debug)]
#[command(name = "burrow", version, propagate_version = true)]
struct RunOnly {
    #[command(subcommand)]
    command: RunCommand,
}

#[derive(Subcommand, Debug)]
enum RunCommand {
    Run(Box<RunArgs>),
}

/// `burrow run [OPTIONS] -- CMD...` without IMAGE (`--rootfs`, the host's root), parsed once: the options before
/// `--` by [`RunOnly`], the words after it are the command. None for anything else (IMAGE, an error, `--help`),
/// which the full parser then handles, so that help, errors and the IMAGE rules stay the full parser's.
fn run_without_image(argv: &[std::ffi::OsString]) -> Option<Cli> {
    if argv.get(1)? != "run" {
        return None;
    }
    let dashes = argv.iter().position(|a| a == "--")?;
    let RunCommand::Run(mut args) = RunOnly::try_parse_from(&argv[..dashes]).ok()?.command;
    if args.image.is_some() || !args.command.is_empty() {
        return None;
    }
    args.command = argv[dashes + 1..].iter().map(|a| a.to_str().map(String::from)).collect::<Option<_>>()?;
    Some(Cli { command: Command::Run(args) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(argv: &[&str]) -> (Option<String>, Vec<String>) {
        let argv = std::iter::once("burrow").chain(argv.iter().copied()).map(Into::into).collect();
        match Cli::parse_args(argv).unwrap().command {
            Command::Run(a) => (a.image.clone(), a.command.clone()),
            _ => unreachable!(),
        }
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn image_and_command_positionals_follow_docker() {
        assert_eq!(run(&["run", "--", "ls", "-l"]), (None, v(&["ls", "-l"])));
        assert_eq!(run(&["run", "--rootfs", "/r", "--", "sh"]), (None, v(&["sh"])));
        assert_eq!(run(&["run"]), (None, vec![]));
        assert_eq!(run(&["run", "img"]), (Some("img".into()), vec![]));
        assert_eq!(run(&["run", "img", "--", "ls", "-e"]), (Some("img".into()), v(&["ls", "-e"])));
        // Options after IMAGE belong to the command, even burrow's own (-e, -w).
        assert_eq!(
            run(&["run", "-e", "A=1", "img", "grep", "-e", "x", "-w"]),
            (Some("img".into()), v(&["grep", "-e", "x", "-w"]))
        );
        assert_eq!(run(&["run", "img", "sh", "-c", "echo -- x"]), (Some("img".into()), v(&["sh", "-c", "echo -- x"])));
        assert_eq!(run(&["run", "img", "ls", "--", "-x"]), (Some("img".into()), v(&["ls", "--", "-x"])));
        let err = |argv: &[&str]| {
            let argv = std::iter::once("burrow").chain(argv.iter().copied()).map(Into::into).collect();
            Cli::parse_args(argv).err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert!(err(&["run", "--rootfs", "/r", "img"]).contains("two roots"));
        assert!(err(&["run", "--entrypoint", "x", "--", "ls"]).contains("needs IMAGE"));
        assert!(err(&["run", "--rootfs-rw", "img"]).contains("needs --rootfs"));
    }

    /// The one-parse path of `run [OPTIONS] -- CMD` gives what the full parser gives, and leaves everything else
    /// (IMAGE, errors, help) to it.
    #[test]
    fn run_without_image_parses_as_the_full_parser_does() {
        let os = |argv: &[&str]| -> Vec<std::ffi::OsString> { argv.iter().map(Into::into).collect() };
        let full = |argv: &[&str]| {
            let Command::Run(mut args) = Cli::try_parse_from(os(argv)).unwrap().command else { panic!() };
            if let Some(image) = args.image.take() {
                args.command.insert(0, image);
            }
            format!("{args:?}")
        };
        let quick = |argv: &[&str]| match run_without_image(&os(argv)).map(|c| c.command) {
            Some(Command::Run(args)) => Some(format!("{args:?}")),
            _ => None,
        };
        for argv in [
            &["burrow", "run", "--network", "none", "--rootfs", "/r", "--", "/bin/true"][..],
            &["burrow", "run", "-e", "A=1", "--cap-add", "all", "-v", "/a:/b", "--", "sh", "-c", "x", "--", "-e"],
            &["burrow", "run", "--"],
            &["burrow", "run", "--rootfs-rw", "--rootfs", "/r", "--", "ls", "--rootfs"],
        ] {
            assert_eq!(quick(argv), Some(full(argv)), "{argv:?}");
        }
        for argv in [
            &["burrow", "run", "img", "--", "ls"][..],
            &["burrow", "run", "--help", "--", "ls"],
            &["burrow", "run", "--no-such-flag", "--", "ls"],
            &["burrow", "run", "--hostname", "--", "ls"],
            &["burrow", "ps", "--", "x"],
            &["burrow", "run", "--rootfs", "/r", "ls"],
        ] {
            assert_eq!(quick(argv), None, "{argv:?}");
        }
    }
}
