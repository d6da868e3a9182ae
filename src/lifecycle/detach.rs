//! `burrow run -d` (in progress).

pub fn run(_args: &crate::cli::RunArgs) -> i32 {
    eprintln!("burrow: run -d: not built yet on this branch");
    125
}
