//! The `xrdtest` command's parts, as a library so that `xrdtest-demo` follows a session
//! with the same output. It links the data contract, the definitions and an HTTP client,
//! never a server crate (`scripts/test` checks).

pub mod client;
pub mod clusters;
pub mod commands;
pub mod compare;
pub mod demo;
pub mod peers;
pub mod reports;
pub mod tokens;
pub mod validate;
