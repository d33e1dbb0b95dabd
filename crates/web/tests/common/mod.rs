//! The web tests' HTTP(S) client, on ureq: one request as the test writes it (the target is
//! sent as given: `..`, `//` and `%2e` stay as they are), redirects not followed, and every
//! status an answer rather than an error.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use ureq::http::Response;
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::{Agent, Body, RequestBuilder};

/// The security headers of a reply: `X-Frame-Options`, `X-Content-Type-Options` and
/// `Content-Security-Policy`.
pub type Security<'a> = [Option<&'a str>; 3];

/// The login, logout and refusal pages'.
pub const LOGIN_PAGE: Security = [
    Some("DENY"),
    Some("nosniff"),
    Some("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
];
/// What [`security`] shows for a dashboard page's policy: its own inline scripts by hash.
pub const PAGE_POLICY: &str = "<page policy: the page's own inline scripts by SHA-256>";
/// Every other dashboard page's, error pages included.
pub const PAGE: Security = [Some("DENY"), Some("nosniff"), Some(PAGE_POLICY)];
/// Those of redirects, the JSON API, event streams and plain-text refusals: none.
pub const NONE: Security = [None, None, None];

/// A client of the master's web listener.
pub struct Client {
    agent: Agent,
    base: String,
}

impl Client {
    /// Plain HTTP to `addr`.
    pub fn http(addr: SocketAddr) -> Client {
        Client { agent: agent(TlsConfig::default()), base: format!("http://{addr}") }
    }

    /// HTTPS to `addr`, trusting only the CA certificate `ca_pem`; the server's certificate
    /// must name `addr`'s IP address.
    pub fn https(addr: SocketAddr, ca_pem: &[u8]) -> Client {
        let ca = Certificate::from_pem(ca_pem).expect("a CA certificate in PEM");
        let tls = TlsConfig::builder().root_certs(RootCerts::new_with_certs(&[ca])).build();
        Client { agent: agent(tls), base: format!("https://{addr}") }
    }

    /// `method target`, with these cookies (`name=value`) and, for a POST, this form.
    pub fn request(&self, method: &str, target: &str, cookies: &[&str], form: Option<&[(&str, &str)]>) -> Reply {
        self.try_request(method, target, cookies, form).unwrap_or_else(|err| panic!("{method} {target}: {err}"))
    }

    /// [`Client::request`], with transport and protocol failures as errors.
    pub fn try_request(
        &self,
        method: &str,
        target: &str,
        cookies: &[&str],
        form: Option<&[(&str, &str)]>,
    ) -> Result<Reply, ureq::Error> {
        let url = format!("{}{target}", self.base);
        let mut response = match (method, form) {
            ("GET", None) => with_cookies(self.agent.get(&url), cookies).call(),
            ("HEAD", None) => with_cookies(self.agent.head(&url), cookies).call(),
            ("POST", Some(form)) => with_cookies(self.agent.post(&url), cookies).send_form(form.iter().copied()),
            ("POST", None) => with_cookies(self.agent.post(&url), cookies).send_empty(),
            _ => panic!("the tests send no {method} with a form: {form:?}"),
        }?;
        let body = response.body_mut().read_to_vec()?;
        Ok(Reply { status: response.status().as_u16(), headers: headers(&response), body })
    }

    /// `GET target` whose body is read as it comes (a server-sent event stream): the
    /// response with its body unread.
    pub fn open(&self, target: &str, cookies: &[&str]) -> Response<Body> {
        // An event stream may be quiet for a while: no limit on reading it.
        let request = with_cookies(self.agent.get(format!("{}{target}", self.base)), cookies);
        request.config().timeout_global(None).build().call().unwrap_or_else(|err| panic!("GET {target}: {err}"))
    }
}

fn agent(tls: TlsConfig) -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(20)))
        .tls_config(tls)
        .build()
        .into()
}

fn with_cookies<B>(request: RequestBuilder<B>, cookies: &[&str]) -> RequestBuilder<B> {
    if cookies.is_empty() {
        request
    } else {
        request.header("Cookie", cookies.join("; "))
    }
}

/// Every header of `response` as (name, value), in order.
pub fn headers<B>(response: &Response<B>) -> Vec<(String, String)> {
    let text = |value: &ureq::http::HeaderValue| String::from_utf8_lossy(value.as_bytes()).into_owned();
    response.headers().iter().map(|(name, value)| (name.to_string(), text(value))).collect()
}

/// An HTTP answer.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The body as text (every body the tests read as text is UTF-8).
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a UTF-8 body")
    }

    pub fn security(&self) -> Security<'_> {
        security(&self.headers)
    }

    /// The whole `Set-Cookie` value for cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    /// `name=value` of a cookie this reply sets.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookie(name).map(|v| v.split(';').next().unwrap().to_string())
    }

    /// The value of the (first) hidden form field `name`.
    pub fn hidden(&self, name: &str) -> Option<String> {
        let text = self.text();
        let marker = format!("name=\"{name}\" value=\"");
        let start = text.find(&marker)? + marker.len();
        Some(text[start..start + text[start..].find('"')?].to_string())
    }
}

/// The first value of header `name`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// The security headers among `headers`.
pub fn security(headers: &[(String, String)]) -> Security<'_> {
    let [frames, sniff, policy] =
        ["x-frame-options", "x-content-type-options", "content-security-policy"].map(|name| header(headers, name));
    [frames, sniff, policy.map(|p| if is_page_policy(p) { PAGE_POLICY } else { p })]
}

/// Whether `policy` is a page's: `page_policy` of a page without scripts plus nothing but
/// `'sha256-<base64>'` sources in `script-src`.
fn is_page_policy(policy: &str) -> bool {
    let mut rest = policy.to_string();
    while let Some(start) = rest.find(" 'sha256-") {
        let Some(len) = rest[start + 9..].find('\'') else { return false };
        let digest = &rest[start + 9..start + 9 + len];
        if digest.len() != 44 || !digest.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) {
            return false;
        }
        rest.replace_range(start..start + 9 + len + 1, "");
    }
    rest == xrdtest_web::security::page_policy("")
}

/// A master started in-process on loopback (peer and web ports chosen by the system), its
/// state and definitions in a temporary folder.
pub struct TestMaster {
    pub _dir: tempfile::TempDir,
    pub master: std::sync::Arc<xrdtest_master::master::Master>,
    pub web: SocketAddr,
    pub peer: SocketAddr,
    pub ca: std::path::PathBuf,
}

/// Starts a master whose definitions `definitions` writes into the folder it is given, with
/// `web_section` as the body of `[web]`.
pub async fn start_master(web_section: &str, definitions: impl FnOnce(&std::path::Path)) -> TestMaster {
    let dir = tempfile::tempdir().unwrap();
    definitions(&dir.path().join("defs"));
    let config = xrdtest_master::config::MasterConfig::from_toml(
        &format!(
            "listen = \"127.0.0.1:0\"\nweb_listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\nsecret = \"web-test-secret\"\n\
             definitions = \"{}\"\n[web]\n{web_section}\n",
            dir.path().join("state").display(),
            dir.path().join("defs").display()
        ),
        std::path::Path::new("/"),
    )
    .unwrap();
    let running = xrdtest_master_daemon::start(config).await.unwrap();
    TestMaster {
        _dir: dir,
        master: running.master,
        web: running.web_address,
        peer: running.peer_address,
        ca: running.ca_cert_path,
    }
}
