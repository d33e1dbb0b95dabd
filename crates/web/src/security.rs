//! The security headers of the dashboard's responses, in one place.
//!
//! A handler says what kind of response it made: [`mark`] puts a [`Kind`] in the response's
//! extensions, and the [`write_headers`] middleware on the dashboard's router writes that
//! kind's headers. A response without a kind gets none: the JSON API, redirects, event
//! streams and plain-text refusals.
//!
//! | kind | `X-Frame-Options` | `X-Content-Type-Options` | `Content-Security-Policy` |
//! | --- | --- | --- | --- |
//! | [`Kind::Page`] | `DENY` | `nosniff` | [`page_policy`], set by `pages::render` |
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

/// The scripts the dashboard's templates carry (each a `{% raw %}` block after `<script>`),
/// trimmed: only a rendered script equal to one of them is allowed to run.
fn template_scripts() -> &'static [String] {
    static SCRIPTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| {
        let templates = [
            include_str!("../templates/dashboard.html"),
            include_str!("../templates/macros.html"),
            include_str!("../templates/session.html"),
            include_str!("../templates/stage.html"),
            include_str!("../templates/suites.html"),
        ];
        let mut scripts = Vec::new();
        for template in templates {
            let mut rest = template;
            while let Some(start) = rest.find("{% raw %}") {
                let body = &rest[start + "{% raw %}".len()..];
                let Some(end) = body.find("{% endraw %}") else { break };
                scripts.push(body[..end].trim().to_string());
                rest = &body[end..];
            }
        }
        scripts
    })
}

/// A dashboard page's policy: its own inline scripts, by the SHA-256 of each as rendered,
/// and only those that are one of the templates' scripts (a `<script>` injected into the
/// page is not hashed, so it does not run); scripts, live updates, images and forms from
/// this site only, inline styles, no frames, plugins or `<base>`.
pub fn page_policy(html: &str) -> String {
    use base64::Engine as _;
    let known = template_scripts();
    let mut hashes = String::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let Some(open_end) = rest[start..].find('>') else { break };
        let body = &rest[start + open_end + 1..];
        let Some(end) = body.find("</script>") else { break };
        let script = &body[..end];
        if known.iter().any(|k| k == script.trim()) {
            let digest = ring::digest::digest(&ring::digest::SHA256, script.as_bytes());
            hashes
                .push_str(&format!(" 'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest.as_ref())));
        }
        rest = &body[end..];
    }
    format!(
        "default-src 'self'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )
}

/// Which `Host` headers the dashboard and API answer (against DNS rebinding: a page of
/// another site whose name was made to resolve to this master would send its own name).
#[derive(Debug, Clone)]
pub struct HostCheck {
    /// Names and addresses allowed besides loopback ones; empty with `open`: any.
    allowed: Vec<String>,
    /// No list and a listener not on loopback: every host name is accepted.
    open: bool,
}

impl HostCheck {
    /// With no list, a dashboard on loopback answers loopback names only (`localhost`,
    /// `127.0.0.1`, `[::1]`) and one on another address answers any; with a list, loopback
    /// names, the listed ones and the listening address.
    pub fn new(allowed: &[String], listen: std::net::SocketAddr) -> HostCheck {
        let open = allowed.is_empty() && !listen.ip().is_loopback();
        let mut allowed: Vec<String> = allowed.iter().map(|h| h.to_ascii_lowercase()).collect();
        if !listen.ip().is_unspecified() {
            allowed.push(listen.ip().to_string());
        }
        HostCheck { allowed, open }
    }

    /// Whether a request with this `Host` value (port included, or not) is answered.
    pub fn allows(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => host.rsplit_once(':').map_or(host, |(name, _)| name),
        }
        .trim_end_matches('.')
        .to_ascii_lowercase();
        if self.open || name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        if name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
            return true;
        }
        self.allowed.contains(&name)
    }
}

/// The middleware that answers 421 to a request for a host this master does not serve.
pub async fn check_host(
    axum::extract::State(check): axum::extract::State<std::sync::Arc<HostCheck>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    match host {
        Some(host) if !check.allows(&host) => {
            let text = format!(
                "this master does not serve the host `{host}`: list it in [web] allowed_hosts of master.toml\n"
            );
            axum::response::IntoResponse::into_response((axum::http::StatusCode::MISDIRECTED_REQUEST, text))
        }
        _ => next.run(request).await,
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_allows_exactly_its_own_inline_scripts() {
        let known = &template_scripts()[0];
        let page =
            format!("<p>x</p><script>\n{known}\n</script><script>alert(1)</script><script type=x>evil()</script>");
        let policy = page_policy(&page);
        assert_eq!(policy.matches("'sha256-").count(), 1, "only the template's script: {policy}");
        use base64::Engine as _;
        let digest = ring::digest::digest(&ring::digest::SHA256, format!("\n{known}\n").as_bytes());
        let expected = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        assert!(policy.contains(&format!("'sha256-{expected}'")), "{policy}");
        assert!(!policy.contains("script-src 'self' 'unsafe-inline'"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert_eq!(page_policy("<p>no script</p>").matches("sha256").count(), 0);
        assert_eq!(template_scripts().len(), 5, "each template's script is known");
    }

    #[test]
    fn hosts_a_dashboard_answers() {
        let loopback = HostCheck::new(&[], "127.0.0.1:20080".parse().unwrap());
        for host in ["127.0.0.1:20080", "localhost:20080", "[::1]:20080", "LOCALHOST"] {
            assert!(loopback.allows(host), "{host}");
        }
        assert!(!loopback.allows("evil.example.com:20080"), "a rebound name is refused");
        let any = HostCheck::new(&[], "0.0.0.0:20080".parse().unwrap());
        assert!(any.allows("master.lab:20080"));
        let listed = HostCheck::new(&["Master.Lab".into()], "0.0.0.0:20080".parse().unwrap());
        assert!(listed.allows("master.lab:20080") && listed.allows("master.lab.") && listed.allows("localhost"));
        assert!(!listed.allows("evil.example.com"));
        let on_address = HostCheck::new(&["master.lab".into()], "192.0.2.5:20080".parse().unwrap());
        assert!(on_address.allows("192.0.2.5:20080"));
    }
}
