use burrow::cli::{Cli, Command};
use clap::Parser;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 125 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let code = match cli.command {
        Command::Run(args) => match burrow::run::run(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("burrow: {e}");
                e.exit_code()
            }
        },
        Command::Doctor(args) => burrow::doctor::run(&args),
    };
    std::process::exit(code);
}
