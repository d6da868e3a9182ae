//! `burrow run --name NAME` in the foreground: the container is registered while it runs, so that `ps` lists
//! it and `exec`, `stop`, `kill` and `wait` reach it from other shells. Its output stays on the user's
//! terminal (no log), and its record goes when it ends: a foreground run leaves nothing behind. Its exit
//! code is written into the record's lock file just before the lock is let go, for the `wait`s that hold
//! that file open. A record left
//! by a run killed with SIGKILL is removed by the next `ps` (its lock is free).

use super::record::{self, Config};
use crate::cli::RunArgs;
use crate::run::{Prepared, RunError};

pub fn run(mut prepared: Prepared, args: &RunArgs) -> Result<i32, RunError> {
    let config = Config::of_run(&prepared, args, true);
    let new = record::create(config)?;
    prepared.spec.control = (!args.no_init).then(|| new.record.file("ctl"));
    prepared.spec.watch_start = true;
    let me = nix::unistd::getpid();
    let on_start = |_p1| super::monitor::write_started(&new.record, me);
    let result = crate::run::launch(prepared, args, Some(&on_start));
    if let Ok(code) = &result {
        record::write_exit_to_lock(&new.lock, &record::Exit { code: *code, finished: record::now() });
    }
    let _ = record::remove(&new.record);
    drop(new.lock);
    result
}
