//! Logins for the dashboard: the configured password (XrdTest's `suite_run_pass`), a signed
//! session cookie, CSRF tokens, and rate-limited wrong passwords.
//!
//! # For page handlers
//!
//! - [`Viewer`] is an extractor (`FromRequestParts<Arc<WebState>>`) that never fails:
//!   `viewer.logged_in` says whether the request carries a valid session cookie, and
//!   `viewer.csrf` is the token every form must carry in a hidden field named `csrf`:
//!   `<input type="hidden" name="csrf" value="{{ viewer.csrf }}">`. For a logged-in viewer it
//!   is tied to the session; for others it is tied to the login form's cookie (and empty when
//!   they have none yet: the only form anonymous viewers get is the one on `/login`).
//! - [`require_reader`]`(&viewer, &state, path)` first thing in every page handler: `Err` is
//!   a redirect to `/login?next=<path>` when `[web] require_login` is set and the viewer is
//!   not logged in. Pass the request's path (and query), e.g. `uri.to_string()`.
//! - [`require_writer`]`(&viewer, &form.csrf)` first thing in every handler that starts or
//!   cancels: `Err` is a 403 page (not logged in, or a missing or wrong CSRF token).
//! - [`AuthState::logins_enabled`] (a password is configured: show the login link and write
//!   buttons) and [`AuthState::require_login`].
//! - [`login_url`]`(next)` is `/login?next=...`.
//! - Logging out is a form: `<form method="post" action="/logout">` with the `csrf` field.
//!
//! # Routes
//!
//! `GET /login` (the form; `?next=/local/path`), `POST /login` (fields `password`, `csrf`,
//! `next`: 303 to `next` when it is a local path, else to `/`), `POST /logout` (field `csrf`:
//! 303 to `/`).
//!
//! # Cookies
//!
//! `xrdtest_session` = `<expiry>.<session id>.<HMAC-SHA256>`, `HttpOnly; SameSite=Strict;
//! Path=/` (+ `Secure` over HTTPS), valid until its expiry unless logged out. The key is the
//! HMAC of the cookie key file's bytes and the password's digest, so a new password (or a new
//! key file) ends every login. `xrdtest_csrf` is a random nonce set by `GET /login`; the
//! login form's token is its HMAC (a signed double-submit cookie). A logged-in viewer's token
//! is the HMAC of the session id.
//!
//! # Wrong passwords
//!
//! Per client address (IPv6 by /64): after 5 wrong passwords every further login attempt is
//! refused with 429 and `Retry-After` for 2 s, doubling with each wrong password, up to
//! 15 min; forgotten 15 min after the last one. There is no limit over all clients: one
//! guessing from many addresses must not lock every user out. A successful login clears
//! its address's count. While refused, the password is not even looked at. The address is
//! the TCP peer's: behind a reverse proxy every client shares the proxy's.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use tracing::{error, info, warn};
use xrdtest_master::handle::{WebConfig, WebTls};
use xrdtest_proto::handshake::secrets_match;

use crate::escape;
use crate::security::{mark, Kind};
use crate::WebState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "xrdtest_session";
/// The login form's double-submit cookie.
pub const LOGIN_CSRF_COOKIE: &str = "xrdtest_csrf";
/// Bytes of a new cookie key file.
pub const COOKIE_KEY_BYTES: usize = 32;

const IP_FREE_FAILURES: u32 = 5;
const IP_FIRST_WAIT: Duration = Duration::from_secs(2);
const IP_MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// A client's wrong passwords are forgotten this long after its last one.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Most client addresses tracked at once (the global count still counts the others).
const MAX_TRACKED_CLIENTS: usize = 4096;

/// Reads the cookie-signing key, or creates it (32 random bytes, mode 0600) when the file
/// does not exist. Call it at start to fail early on an unusable key file.
pub fn cookie_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read(path) {
        Ok(key) if key.len() >= 16 => return Ok(key),
        Ok(key) => anyhow::bail!("{}: {} bytes; a cookie key needs at least 16", path.display(), key.len()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
    let mut key = vec![0u8; COOKIE_KEY_BYTES];
    SystemRandom::new().fill(&mut key).map_err(|_| anyhow::anyhow!("no random numbers from the system"))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut file) => {
            file.write_all(&key)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            info!(path = %path.display(), "created the web cookie key");
            Ok(key)
        }
        // Made meanwhile by someone else: use theirs.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        }
        Err(err) => Err(err).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// Logins, session cookies and the wrong-password limiter.
pub struct AuthState {
    key: hmac::Key,
    password: Option<String>,
    require_login: bool,
    lifetime: Duration,
    secure_cookies: bool,
    rng: SystemRandom,
    limiter: Mutex<RateLimiter>,
    /// Logged-out session ids, until their cookies expire (unix seconds).
    revoked: Mutex<HashMap<String, u64>>,
}

impl AuthState {
    /// From `[web]`. An unusable cookie key file is logged and replaced by a key kept in
    /// memory only (logins then end with a restart); [`cookie_key`] at start catches it first.
    pub fn new(web: &WebConfig) -> AuthState {
        let file_key = match cookie_key(&web.cookie_key_file) {
            Ok(key) => key,
            Err(err) => {
                error!(error = %format!("{err:#}"), "web cookie key unusable: logins will not survive a restart");
                let mut key = vec![0u8; COOKIE_KEY_BYTES];
                // Without system randomness nothing else would work either.
                SystemRandom::new().fill(&mut key).expect("system random numbers");
                key
            }
        };
        AuthState::with_key(
            &file_key,
            web.password.clone(),
            web.require_login,
            web.session_lifetime,
            web.tls != WebTls::None,
        )
    }

    fn with_key(
        file_key: &[u8],
        password: Option<String>,
        require_login: bool,
        lifetime: Duration,
        secure_cookies: bool,
    ) -> AuthState {
        let digest = ring::digest::digest(&ring::digest::SHA256, password.as_deref().unwrap_or("").as_bytes());
        let mut context = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, file_key));
        context.update(b"xrdtest web v1\0");
        context.update(digest.as_ref());
        let key = hmac::Key::new(hmac::HMAC_SHA256, context.sign().as_ref());
        AuthState {
            key,
            password,
            require_login,
            lifetime,
            secure_cookies,
            rng: SystemRandom::new(),
            limiter: Mutex::new(RateLimiter::default()),
            revoked: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a password is configured, so that logging in (and writing) is possible.
    pub fn logins_enabled(&self) -> bool {
        self.password.is_some()
    }

    /// Whether reading the pages needs a login.
    pub fn require_login(&self) -> bool {
        self.require_login
    }

    fn mac(&self, purpose: &str, value: &str) -> String {
        hex::encode(hmac::sign(&self.key, format!("{purpose}|{value}").as_bytes()))
    }

    fn random_hex(&self) -> String {
        let mut bytes = [0u8; 16];
        self.rng.fill(&mut bytes).expect("system random numbers");
        hex::encode(bytes)
    }

    fn new_session(&self) -> (String, u64) {
        let expiry = unix_now().saturating_add(self.lifetime.as_secs());
        let payload = format!("{expiry}.{}", self.random_hex());
        (format!("{payload}.{}", self.mac("session", &payload)), expiry)
    }

    /// The session id of a valid session cookie value.
    fn check_session(&self, value: &str) -> Option<String> {
        let (payload, mac) = value.rsplit_once('.')?;
        let (expiry, id) = payload.split_once('.')?;
        let mac = hex::decode(mac).ok()?;
        hmac::verify(&self.key, format!("session|{payload}").as_bytes(), &mac).ok()?;
        let expiry: u64 = expiry.parse().ok()?;
        let now = unix_now();
        if expiry <= now || expiry > now.saturating_add(self.lifetime.as_secs()) {
            return None;
        }
        let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        revoked.retain(|_, until| *until > now);
        (!revoked.contains_key(id)).then(|| id.to_string())
    }

    fn session_of(&self, headers: &HeaderMap) -> Option<String> {
        cookies(headers, SESSION_COOKIE).find_map(|value| self.check_session(value))
    }

    fn login_nonce(headers: &HeaderMap) -> Option<&str> {
        cookies(headers, LOGIN_CSRF_COOKIE).find(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    fn cookie(&self, name: &str, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        let text = format!("{name}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict{secure}");
        HeaderValue::from_str(&text).expect("cookie values are plain ASCII")
    }
}

/// Who is looking: logged in or not, and the CSRF token their forms must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub logged_in: bool,
    /// The value of the hidden `csrf` field of every form (empty: no form can be sent yet).
    pub csrf: String,
}

impl FromRequestParts<Arc<WebState>> for Viewer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<WebState>) -> Result<Viewer, Infallible> {
        Ok(viewer_of(&state.auth, &parts.headers))
    }
}

fn viewer_of(auth: &AuthState, headers: &HeaderMap) -> Viewer {
    match auth.session_of(headers) {
        Some(id) => Viewer { logged_in: true, csrf: auth.mac("csrf", &id) },
        None => Viewer {
            logged_in: false,
            csrf: AuthState::login_nonce(headers).map(|nonce| auth.mac("login-csrf", nonce)).unwrap_or_default(),
        },
    }
}

/// For page handlers: `Err` is a redirect to the login page (with `next` = `path`) when
/// reading needs a login and the viewer has none.
#[allow(clippy::result_large_err)]
pub fn require_reader(viewer: &Viewer, state: &WebState, path: &str) -> Result<(), Response> {
    if state.auth.require_login && !viewer.logged_in {
        return Err(see_other(&login_url(path)));
    }
    Ok(())
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

/// What the API's read guard needs: the login state and the API token.
pub struct ApiGuard {
    pub auth: Arc<AuthState>,
    /// Tells which bearer tokens are in force (`api_token`, and `xrdtest token create`'s).
    pub core: xrdtest_master::handle::CoreHandle,
}

/// Middleware of the API's routes: with `require_login`, a call needs a login cookie or the
/// API token (`Authorization: Bearer ...`), else 401; `/api/health` stays open for probes.
/// Without `require_login` it lets everything through (writes check the token themselves).
pub async fn guard_api_reads(
    State(guard): State<Arc<ApiGuard>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !guard.auth.require_login || request.uri().path() == "/api/health" {
        return next.run(request).await;
    }
    let headers = request.headers();
    let logged_in = guard.auth.session_of(headers).is_some();
    let token_given = bearer_token(headers);
    let token_ok = token_given.is_some_and(|given| guard.core.token_scope(given).is_some());
    if logged_in || token_ok {
        return next.run(request).await;
    }
    let body = serde_json::json!({
        "error": "reading needs a login: log in on the dashboard, or send an API token as `Authorization: Bearer <token>`"
    });
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

/// For handlers that start or cancel: `Err` is a 403 page unless the viewer is logged in and
/// the form's `csrf` field is their token.
#[allow(clippy::result_large_err)]
pub fn require_writer(viewer: &Viewer, form_csrf: &str) -> Result<(), Response> {
    if !viewer.logged_in {
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "Login needed",
            "Starting and cancelling runs, and starting and stopping clusters, need a login: \
             <a href=\"/login\">log in</a> first. \
             (If the login page says that logins are disabled, set <code>password</code> in the \
             <code>[web]</code> section of the master's configuration.)",
        ));
    }
    if !secrets_match(&viewer.csrf, form_csrf) {
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "Form refused",
            "The form's security token does not match your login (CSRF check failed): \
             go back, reload the page and try again.",
        ));
    }
    Ok(())
}

/// `/login?next=<next>`.
pub fn login_url(next: &str) -> String {
    format!("/login?next={}", escape::url_path(next))
}

/// `next` if it is a path on this site (not `//host` or `/\host`, which browsers take for
/// another site), else `/`.
fn local_path(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && next.len() <= 2048
        && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    if local {
        next
    } else {
        "/"
    }
}

pub fn routes() -> Router<Arc<WebState>> {
    Router::new().route("/login", get(login_page).post(login)).route("/logout", post(logout))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NextQuery {
    next: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginForm {
    password: String,
    csrf: String,
    next: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LogoutForm {
    csrf: String,
}

async fn login_page(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Response {
    let auth = &state.auth;
    let next = local_path(&query.next);
    let viewer = viewer_of(auth, &headers);
    if viewer.logged_in {
        let body = format!(
            "<p>You are logged in.</p><p><a href=\"{next}\">Continue</a></p>\
             <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\">Log out</button></form>",
            next = escape::html(next),
            csrf = escape::html(&viewer.csrf)
        );
        return html(StatusCode::OK, "Logged in", &body);
    }
    login_form(auth, &headers, next, StatusCode::OK, None)
}

/// The login page; sets the login CSRF cookie when the browser has none.
fn login_form(
    auth: &AuthState,
    headers: &HeaderMap,
    next: &str,
    status: StatusCode,
    problem: Option<&str>,
) -> Response {
    if !auth.logins_enabled() {
        return html(
            StatusCode::OK,
            "Logins disabled",
            "<p>Logins are disabled: the master has no <code>password</code> in the <code>[web]</code> \
             section of its configuration, so nobody can start or cancel runs from the dashboard.</p>",
        );
    }
    let (nonce, new_cookie) = match AuthState::login_nonce(headers) {
        Some(nonce) => (nonce.to_string(), false),
        None => (auth.random_hex(), true),
    };
    let problem = problem.map(|p| format!("<p class=\"problem\">{}</p>", escape::html(p))).unwrap_or_default();
    let body = format!(
        "{problem}<form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\" autofocus required></label> \
         <button type=\"submit\">Log in</button></form>",
        csrf = escape::html(&auth.mac("login-csrf", &nonce)),
        next = escape::html(next),
    );
    let mut response = html(status, "Log in", &body);
    if new_cookie {
        response.headers_mut().append(SET_COOKIE, auth.cookie(LOGIN_CSRF_COOKIE, &nonce, 24 * 3600));
    }
    response
}

async fn login(State(state): State<Arc<WebState>>, parts: ClientRequest, Form(form): Form<LoginForm>) -> Response {
    let ClientRequest(headers, client) = parts;
    let auth = &state.auth;
    let now = Instant::now();
    if let Err(wait) = auth.limiter.lock().unwrap_or_else(|e| e.into_inner()).check(client, now) {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many wrong passwords",
            &format!("Too many wrong passwords: try again in {seconds} s."),
        );
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
        return response;
    }
    let expected = AuthState::login_nonce(&headers).map(|nonce| auth.mac("login-csrf", nonce));
    if !expected.is_some_and(|expected| secrets_match(&expected, &form.csrf)) {
        return refusal(
            StatusCode::FORBIDDEN,
            "Form refused",
            "The login form expired or came from another site (CSRF check failed): \
             <a href=\"/login\">reload the login page</a> and try again.",
        );
    }
    let Some(password) = &auth.password else {
        return login_form(auth, &headers, "/", StatusCode::FORBIDDEN, None);
    };
    let next = local_path(&form.next);
    // An argon2 check takes tens of milliseconds of CPU and 19 MiB: off the async workers,
    // and two at a time, so a flood of parallel logins cannot exhaust the master's memory.
    static CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
    let Ok(_permit) = CHECKS.acquire().await else {
        return login_form(auth, &headers, next, StatusCode::SERVICE_UNAVAILABLE, Some("Try again."));
    };
    let (configured, given) = (password.clone(), form.password.clone());
    let right =
        tokio::task::spawn_blocking(move || crate::password::matches(&configured, &given)).await.unwrap_or(false);
    if !right {
        auth.limiter.lock().unwrap_or_else(|e| e.into_inner()).failure(client, now);
        warn!(client = ?client, "web login with a wrong password");
        return login_form(auth, &headers, next, StatusCode::UNAUTHORIZED, Some("Wrong password."));
    }
    auth.limiter.lock().unwrap_or_else(|e| e.into_inner()).success(client);
    info!(client = ?client, "web login");
    let (token, _) = auth.new_session();
    let mut response = see_other(next);
    response.headers_mut().append(SET_COOKIE, auth.cookie(SESSION_COOKIE, &token, auth.lifetime.as_secs()));
    response
}

async fn logout(State(state): State<Arc<WebState>>, headers: HeaderMap, Form(form): Form<LogoutForm>) -> Response {
    let auth = &state.auth;
    if let Some(id) = auth.session_of(&headers) {
        if !secrets_match(&auth.mac("csrf", &id), &form.csrf) {
            return refusal(
                StatusCode::FORBIDDEN,
                "Form refused",
                "The form's security token does not match your login (CSRF check failed): \
                 go back, reload the page and try again.",
            );
        }
        let expiry = unix_now().saturating_add(auth.lifetime.as_secs());
        auth.revoked.lock().unwrap_or_else(|e| e.into_inner()).insert(id, expiry);
    }
    let mut response = see_other("/");
    response.headers_mut().append(SET_COOKIE, auth.cookie(SESSION_COOKIE, "", 0));
    response
}

/// The request's headers and the client's address (when the server records it).
struct ClientRequest(HeaderMap, Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientRequest {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientRequest, Infallible> {
        let client = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
        Ok(ClientRequest(parts.headers.clone(), client))
    }
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let location = HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/"));
    response.headers_mut().insert(LOCATION, location);
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A refusal page; `message` is HTML.
fn refusal(status: StatusCode, title: &str, message: &str) -> Response {
    html(status, title, &format!("<p>{message}</p>"))
}

/// A small self-contained page; `body` is HTML.
fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} — xrdtest</title><style>body{{font-family:sans-serif;max-width:40em;margin:3em auto;padding:0 1em}}\
         .problem{{color:#b00}}</style></head><body><h1>{title}</h1>{body}\
         <p><a href=\"/\">xrdtest dashboard</a></p></body></html>\n",
        title = escape::html(title)
    );
    let mut response = (status, page).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    mark(response, Kind::LoginPage)
}

/// The values of the cookies named `name`.
fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(move |pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value.trim_matches('"'))
        })
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Wrong passwords of one client, or of all.
#[derive(Default, Clone, Copy)]
struct Failures {
    count: u32,
    last: Option<Instant>,
    blocked_until: Option<Instant>,
}

impl Failures {
    fn wait(&self, now: Instant) -> Option<Duration> {
        self.blocked_until.and_then(|until| until.checked_duration_since(now)).filter(|wait| !wait.is_zero())
    }

    fn forgotten(&self, now: Instant) -> bool {
        self.wait(now).is_none() && self.last.is_none_or(|last| now.duration_since(last) >= FORGET_AFTER)
    }

    fn record(&mut self, now: Instant, free: u32, first_wait: Duration, max_wait: Duration) {
        if self.forgotten(now) {
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.last = Some(now);
        if self.count >= free {
            let doublings = (self.count - free).min(20);
            let wait = first_wait.saturating_mul(1 << doublings).min(max_wait);
            self.blocked_until = Some(now + wait);
        }
    }
}

/// Refuses logins for a while after too many wrong passwords, per client address only.
#[derive(Default)]
struct RateLimiter {
    clients: HashMap<IpAddr, Failures>,
}

/// Requests whose address is unknown share one count.
const UNKNOWN_CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

/// IPv6 clients are counted by /64 (one machine usually has a whole /64); IPv4-mapped
/// addresses as IPv4.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

impl RateLimiter {
    /// `Err(wait)` while logins from `client` are refused.
    fn check(&self, client: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let key = client_key(client.unwrap_or(UNKNOWN_CLIENT));
        match self.clients.get(&key).and_then(|f| f.wait(now)) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    fn failure(&mut self, client: Option<IpAddr>, now: Instant) {
        let key = client_key(client.unwrap_or(UNKNOWN_CLIENT));
        if !self.clients.contains_key(&key) && self.clients.len() >= MAX_TRACKED_CLIENTS {
            self.clients.retain(|_, failures| !failures.forgotten(now));
            if self.clients.len() >= MAX_TRACKED_CLIENTS {
                return;
            }
        }
        self.clients.entry(key).or_default().record(now, IP_FREE_FAILURES, IP_FIRST_WAIT, IP_MAX_WAIT);
    }

    fn success(&mut self, client: Option<IpAddr>) {
        if let Some(ip) = client {
            self.clients.remove(&client_key(ip));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(password: Option<&str>) -> AuthState {
        AuthState::with_key(&[7u8; 32], password.map(String::from), false, Duration::from_secs(3600), false)
    }

    fn with_cookie(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    #[test]
    fn sessions_are_signed_and_expire() {
        let auth = state(Some("pw"));
        let (token, _) = auth.new_session();
        let id = auth.check_session(&token).expect("a fresh session is valid");
        let viewer = viewer_of(&auth, &with_cookie(&format!("other=1; {SESSION_COOKIE}={token}")));
        assert_eq!(viewer, Viewer { logged_in: true, csrf: auth.mac("csrf", &id) });
        // Tampering with any part, or another key or password, breaks it.
        let (payload, mac) = token.rsplit_once('.').unwrap();
        let (expiry, id) = payload.split_once('.').unwrap();
        let later = expiry.parse::<u64>().unwrap() + 100;
        assert!(auth.check_session(&format!("{later}.{id}.{mac}")).is_none());
        assert!(auth.check_session(&format!("{expiry}.{}.{mac}", "0".repeat(32))).is_none());
        assert!(auth.check_session(&format!("{payload}.{}", "0".repeat(64))).is_none());
        assert!(auth.check_session("garbage").is_none());
        assert!(state(Some("other")).check_session(&token).is_none(), "a new password ends logins");
        assert!(state(Some("pw")).check_session(&token).is_some(), "the same key file and password keep them");
        // Expired (a correctly signed past expiry).
        let past = format!("{}.{id}", unix_now() - 1);
        assert!(auth.check_session(&format!("{past}.{}", auth.mac("session", &past))).is_none());
        // Logged out.
        auth.revoked.lock().unwrap().insert(id.to_string(), unix_now() + 60);
        assert!(auth.check_session(&token).is_none());
    }

    #[test]
    fn anonymous_viewers_and_writers() {
        let auth = state(Some("pw"));
        let anonymous = viewer_of(&auth, &HeaderMap::new());
        assert_eq!(anonymous, Viewer { logged_in: false, csrf: String::new() });
        let nonce = "ab".repeat(16);
        let with_nonce = viewer_of(&auth, &with_cookie(&format!("{LOGIN_CSRF_COOKIE}={nonce}")));
        assert_eq!(with_nonce.csrf, auth.mac("login-csrf", &nonce));
        assert_eq!(require_writer(&with_nonce, &with_nonce.csrf).unwrap_err().status(), StatusCode::FORBIDDEN);
        let writer = Viewer { logged_in: true, csrf: "token".into() };
        assert!(require_writer(&writer, "token").is_ok());
        assert_eq!(require_writer(&writer, "").unwrap_err().status(), StatusCode::FORBIDDEN);
        assert_eq!(require_writer(&writer, "tokem").unwrap_err().status(), StatusCode::FORBIDDEN);
        let empty = Viewer { logged_in: true, csrf: String::new() };
        assert!(require_writer(&empty, "").is_err(), "an empty token never matches");
    }

    #[test]
    fn next_must_stay_on_the_site() {
        for good in ["/", "/sessions/12?x=1", "/suites/ts_demo"] {
            assert_eq!(local_path(good), good);
        }
        for bad in ["", "//evil.example", "/\\evil.example", "http://evil.example/", "/a b", "/\nx", "evil"] {
            assert_eq!(local_path(bad), "/", "{bad:?}");
        }
        assert_eq!(login_url("/sessions?suite=a&x=é"), "/login?next=/sessions%3Fsuite%3Da%26x%3D%C3%A9");
    }

    #[test]
    fn wrong_passwords_are_rate_limited() {
        let mut limiter = RateLimiter::default();
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let start = Instant::now();
        for _ in 0..IP_FREE_FAILURES - 1 {
            assert!(limiter.check(Some(one), start).is_ok());
            limiter.failure(Some(one), start);
        }
        assert!(limiter.check(Some(one), start).is_ok());
        limiter.failure(Some(one), start);
        assert_eq!(limiter.check(Some(one), start), Err(IP_FIRST_WAIT));
        assert!(limiter.check(Some(other), start).is_ok(), "other clients go on");
        let later = start + IP_FIRST_WAIT;
        assert!(limiter.check(Some(one), later).is_ok());
        limiter.failure(Some(one), later);
        assert_eq!(limiter.check(Some(one), later), Err(IP_FIRST_WAIT * 2), "the wait doubles");
        limiter.success(Some(one));
        assert!(limiter.check(Some(one), later).is_ok());
        // Forgotten after a quiet while.
        let mut limiter = RateLimiter::default();
        for _ in 0..IP_FREE_FAILURES - 1 {
            limiter.failure(Some(one), start);
        }
        limiter.failure(Some(one), start + FORGET_AFTER);
        assert!(limiter.check(Some(one), start + FORGET_AFTER).is_ok());
        // Many addresses guessing never lock out another one; IPv6 counts by /64.
        let mut limiter = RateLimiter::default();
        for i in 0..1000u32 {
            for _ in 0..IP_FREE_FAILURES + 2 {
                limiter.failure(Some(IpAddr::V4([10, 0, (i / 250) as u8, (i % 250) as u8].into())), start);
            }
        }
        assert_eq!(limiter.check(Some(other), start), Ok(()), "no lock-out of everyone");
        let mut limiter = RateLimiter::default();
        for i in 0..IP_FREE_FAILURES {
            limiter.failure(Some(format!("2001:db8::{i}").parse().unwrap()), start);
        }
        assert!(limiter.check(Some("2001:db8::99".parse().unwrap()), start).is_err());
        assert!(limiter.check(Some("2001:db8:0:1::1".parse().unwrap()), start).is_ok());
        let mut capped = Failures { count: 1000, last: Some(start), blocked_until: None };
        capped.record(start, IP_FREE_FAILURES, IP_FIRST_WAIT, IP_MAX_WAIT);
        assert_eq!(capped.wait(start), Some(IP_MAX_WAIT));
    }

    #[test]
    fn cookie_key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/web-cookie.key");
        let key = cookie_key(&path).unwrap();
        assert_eq!(key.len(), COOKIE_KEY_BYTES);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(cookie_key(&path).unwrap(), key);
        std::fs::write(&path, b"short").unwrap();
        assert!(cookie_key(&path).unwrap_err().to_string().contains("at least 16"));
    }
}
