use burrow::cli::{Cli, Command};

fn main() {
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
    let code = match cli.command {
        Command::Run(args) => match burrow::run::run(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("burrow: {e}");
                e.exit_code()
            }
        },
        Command::Doctor(args) => burrow::doctor::run(&args),
        Command::Pull(args) => burrow::image::registry::commands::pull(&args),
        Command::Login(args) => burrow::image::registry::commands::login(&args),
        Command::Logout(args) => burrow::image::registry::commands::logout(&args),
        Command::Import(args) => burrow::image::commands::import(&args),
        Command::Images(args) => burrow::image::commands::images(&args),
        Command::Rmi(args) => burrow::image::commands::rmi(&args),
        Command::Prune(args) => burrow::image::commands::prune(&args),
        Command::LayerHelper(args) => burrow::image::helper::main(&args.args),
    };
    std::process::exit(code);
}
