//! The container's filesystem: a pure plan of mount operations ([`plan`]) and the code that applies it inside
//! the container's mount namespace ([`apply`]).

pub mod apply;
mod home;
pub mod host;
mod layered;
pub mod plan;
pub mod resolve;
pub mod upper;
