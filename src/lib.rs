//! burrow: a rootless container runner.
