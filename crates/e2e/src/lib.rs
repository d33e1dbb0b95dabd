//! Helpers for the end-to-end tests in `tests/`: they start the real `xrdtest-master`,
//! `xrdtest-slave` and `xrdtest` binaries (built by `cargo build --workspace --bins`) on
//! loopback and talk to them over real sockets.
