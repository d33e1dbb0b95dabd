//! End-to-end tests: the real `xrdtest-master`, `xrdtest-slave` and `xrdtest` binaries as
//! child processes on loopback, each test with its own ports, folders and suites. One test
//! binary, so that the harness runs the tests in parallel (`cargo build --workspace --bins`
//! first: the binaries are not built by `cargo test -p xrdtest-e2e`).

mod alerts;
mod barrier;
mod browser;
mod cancel;
mod clean_slate;
mod cli;
mod connections;
mod credentials;
mod definitions;
mod failure_rules;
mod faults;
mod frames;
mod git;
mod held;
mod notify;
mod plans;
mod refusals;
mod reports;
mod restart;
mod results;
mod retention;
mod scheduling;
mod soak;
mod store_faults;
mod sync;
mod timeout;
mod tokens;
mod trends_compare;
