//! The xrdtest slave: connects to the master and runs the stage scripts it is sent.
//!
//! Layout:
//! - [`config`] — `slave.toml`.
//! - [`client`] — the connection to the master: connect with backoff, handshake, reattach
//!   after a reconnect, receive stages, send their output, results and logs.
//! - [`executor`] — runs one stage's script under bash in its own process group, streams its
//!   output (stderr merged) as timestamped lines, enforces the timeout and output cap.
//! - [`logs`] — reads the tails of the log files a suite asks for.
//! - [`functions`] — the shell library (`log`, `stamp`, `assert_fail`, ...) scripts can source.
//! - [`faults`] — faults the master has this host apply: partitions, netem, paused and
//!   signalled processes, each held until healed.
//! - [`fault_command`] — the `fault` subcommand's client (`fault_*` of functions.sh).
//! - [`session_scope`] — each session's processes kept together (a cgroup, an environment
//!   marker) and ended when it ends; old session work folders removed.
//! - [`sync`] — the scripts' sync socket (`$XRDTEST_SYNC`) and the `sync` subcommand's client.

pub mod client;
pub mod config;
pub mod executor;
pub mod fault_command;
pub mod faults;
pub mod functions;
pub mod logs;
pub mod results;
pub mod session_files;
pub mod session_scope;
pub mod sync;
