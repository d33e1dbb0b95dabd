//! Reports of sessions, as pure functions of [`SessionData`]: no store, no network. The web
//! layer serves them (`/api/sessions/{id}/report.json`, ...), the CLI writes them; the
//! formats are described in `docs/results.md`.
//!
//! - [`data`]: the input, a session with what its runs reported.
//! - [`compare`]: two sessions side by side, regressions first.

pub mod compare;
pub mod data;

pub use data::SessionData;
