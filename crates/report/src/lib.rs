//! Reports of sessions, as pure functions of [`SessionData`]: no store, no network. The web
//! layer serves them (`/api/sessions/{id}/report.json`, ...), the CLI writes them; the
//! formats are described in `docs/results.md`.
//!
//! - [`data`]: the input, a session with what its runs reported, and the views the formats
//!   share (case instances with their stages, failed runs, result columns).
//! - [`json`], [`junit`], [`csv`], [`tap`], [`html`]: one format each.
//! - [`export`]: the export folder (the reports, every run's output and logs) and its
//!   .tar.gz writer.
//! - [`compare`]: two sessions side by side, regressions first.
//! - [`format`], [`xml`]: times, numbers and safe file names; XML 1.0 escaping.

pub mod compare;
pub mod csv;
pub mod data;
pub mod export;
pub mod format;
pub mod html;
pub mod json;
pub mod junit;
pub mod tap;
pub mod xml;

#[cfg(test)]
mod testdata;

pub use csv::csv;
pub use data::SessionData;
pub use html::html;
pub use json::json;
pub use junit::junit;
pub use tap::tap;
