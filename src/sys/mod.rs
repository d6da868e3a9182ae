//! The only place with `unsafe`: raw calls wrapped in safe functions.

pub mod net;
