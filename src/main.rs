// burrow's `main` is the C entry point, not Rust's runtime start (`std::rt::lang_start`), which before `main`
// read /proc/self/maps (glibc's pthread_getattr_np, for the main thread's stack guard) and set up an alternate
// signal stack with SIGSEGV/SIGBUS handlers that only print "stack overflow": ~0.1 ms of every start
// (docs/benchmarks.md). What burrow needs of it is in `sys::process_start`; `std::env::args_os` works without
// it (glibc hands argv to the standard library's initializer).
// `cargo test` also builds this file as a test binary, whose `main` is the test harness's: it keeps Rust's start.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code))]

use burrow::cli::{Cli, Command};

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: std::ffi::c_int, _argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    burrow::sys::process_start();
    burrow_main();
}

fn burrow_main() -> ! {
    let cli = match Cli::parse_args(std::env::args_os().collect()) {
        Ok(cli) => cli,
        // Help and version go to stdout whole; a usage error is one line (clap's first), exit 125.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            std::process::exit(0);
        }
        Err(e) => {
            let text = e.render().to_string();
            eprintln!("burrow: {}", text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: "));
            std::process::exit(125);
        }
    };
    let lazy_exit = matches!(&cli.command, Command::Run(_));
    let code = match cli.command {
        Command::Run(args) if args.detach => burrow::lifecycle::detach::run(&args),
        Command::Run(args) => match burrow::run::run(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("burrow: {}", one_line(&e));
                e.exit_code()
            }
        },
        Command::Doctor(args) => burrow::doctor::run(&args),
        Command::Keeper(args) => burrow::userns::keeper::main(&burrow::userns::keeper::Settings {
            dir: args.dir,
            idle: std::time::Duration::from_secs(args.idle),
        }),
        Command::Pull(args) => burrow::image::registry::commands::pull(&args),
        Command::Login(args) => burrow::image::registry::commands::login(&args),
        Command::Logout(args) => burrow::image::registry::commands::logout(&args),
        Command::Import(args) => burrow::image::commands::import(&args),
        Command::Images(args) => burrow::image::commands::images(&args),
        Command::Rmi(args) => burrow::image::commands::rmi(&args),
        Command::Prune(args) => burrow::image::commands::prune(&args),
        Command::LayerHelper(args) => burrow::image::helper::main(&args.args),
        other => burrow::lifecycle::main(other),
    };
    if lazy_exit {
        // Everything of the run is cleaned up by now; only burrow's own memory is left to unmap.
        use std::io::Write;
        let _ = std::io::stdout().flush();
        burrow::sys::exit_lazily(code)
    }
    std::process::exit(code);
}

/// The error and every cause in its chain, once: a cause whose text the message already carries (most of
/// burrow's errors include their source) is not repeated.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        cause = c.source();
    }
    line
}
