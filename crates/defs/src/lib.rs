//! Suite and cluster definitions for xrdtest.
//!
//! Layout:
//! - [`error`] — one validation problem (`file:line: field: message`) and lists of them.
//! - [`source`] — reading a TOML file and turning parser byte spans into line numbers.
//! - [`units`] — sizes (`20G`) and durations (`10m`) as people write them.
//! - [`schedule`] — cron schedules, in string or XrdTest's table form.
//! - [`script`] — where a script comes from (`file://`, `http(s)://` or inline text).
//! - [`tags`] — `@tag@` expansion and the `@diskmounts@` commands.
//! - [`matrix`] — case instances of a `[matrix]` or `[[parametrize]]`.
//! - [`suite`] — `suites/<name>/suite.toml` and its `tc/<case>/` folders.
//! - [`cluster`] — `clusters/<name>/cluster.toml`: network, hosts, disks.
//! - [`links`] — a cluster's `[[links]]`: delay, loss and rate between its hosts.
//! - [`roles`] — machine roles (`server`, `client`) from hosts and a suite's `[roles]`.
//! - [`repository`] — loading a whole definitions repository, with checks across files.
//!
//! Loading never stops at the first problem: every file is read, every field checked, and
//! the valid definitions are returned beside the full list of errors, so a caller can keep
//! serving what is good and show what is broken.

pub mod cluster;
pub mod error;
pub mod links;
pub mod matrix;
pub mod repository;
pub mod roles;
pub mod schedule;
pub mod script;
pub mod source;
pub mod suite;
pub mod tags;
pub mod thresholds;
pub mod units;

pub use cluster::{Boot, Cluster, Disk, Host, Network};
pub use error::DefError;
pub use links::Link;
pub use matrix::CaseInstance;
pub use repository::{load_repository, load_repository_with, LoadReport, Repository};
pub use roles::{check_role_name, roles_of};
pub use schedule::Schedule;
pub use script::{ScriptSource, SourcePolicy};
pub use suite::{AlertPolicy, NotifyPolicy, Suite, TestCase};
pub use thresholds::{Better, Threshold};
