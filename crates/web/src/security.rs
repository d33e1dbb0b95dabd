//! The security headers of the dashboard's responses, in one place.
//!
//! A handler says what kind of response it made: [`mark`] puts a [`Kind`] in the response's
//! extensions, and the [`write_headers`] middleware on the dashboard's router writes that
//! kind's headers. A response without a kind gets none: the JSON API, redirects, event
//! streams and plain-text refusals.
//!
//! | kind | `X-Frame-Options` | `X-Content-Type-Options` | `Content-Security-Policy` |
//! | --- | --- | --- | --- |
//! | [`Kind::Page`] | `DENY` | `nosniff` | — |
//! | [`Kind::LoginPage`] | `DENY` | `nosniff` | [`LOGIN_PAGE_POLICY`] |
//! | [`Kind::FilePage`] | — | `nosniff` | [`FILE_PAGE_POLICY`] |
//! | [`Kind::Download`] | — | `nosniff` | [`DOWNLOAD_POLICY`] |
//! | [`Kind::Certificate`] | — | `nosniff` | — |

use axum::http::header::{CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;

/// The login, logout and refusal pages: inline styles, and forms to this site only.
pub const LOGIN_PAGE_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";
/// A definitions file shown in a page: inline styles only.
pub const FILE_PAGE_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";
/// A definitions file as it is: nothing runs, should a browser render it.
pub const DOWNLOAD_POLICY: &str = "default-src 'none'; sandbox";

/// What a response is, for its security headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A dashboard page rendered from a template (error pages too).
    Page,
    /// The small self-contained login, logout and refusal pages.
    LoginPage,
    /// A definitions file shown in an HTML page (`?show`).
    FilePage,
    /// A definitions file, downloaded as it is.
    Download,
    /// The CA certificate.
    Certificate,
}

impl Kind {
    fn frame_options(self) -> Option<&'static str> {
        matches!(self, Kind::Page | Kind::LoginPage).then_some("DENY")
    }

    fn policy(self) -> Option<&'static str> {
        match self {
            Kind::LoginPage => Some(LOGIN_PAGE_POLICY),
            Kind::FilePage => Some(FILE_PAGE_POLICY),
            Kind::Download => Some(DOWNLOAD_POLICY),
            Kind::Page | Kind::Certificate => None,
        }
    }

    fn write(self, headers: &mut HeaderMap) {
        if let Some(value) = self.frame_options() {
            headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static(value));
        }
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if let Some(value) = self.policy() {
            headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(value));
        }
    }
}

/// `response`, marked as `kind` for [`write_headers`].
pub fn mark(mut response: Response, kind: Kind) -> Response {
    response.extensions_mut().insert(kind);
    response
}

/// The middleware (for `axum::middleware::map_response`) that writes the headers of each
/// response's [`Kind`].
pub async fn write_headers(mut response: Response) -> Response {
    if let Some(kind) = response.extensions().get::<Kind>().copied() {
        kind.write(response.headers_mut());
    }
    response
}
