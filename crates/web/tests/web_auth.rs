//! The dashboard's access rules and the slave-facing files, over real HTTP(S) against a
//! master started in-process: the login form and its CSRF protection, the session cookie
//! (attributes, tampering, logout, reuse by a restarted master), wrong passwords rate-limited,
//! `require_login`, refused writes, file downloads and path traversal attempts, `/ca.crt`,
//! and HTTPS with the master's CA or given files.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Client, Reply, LOGIN_PAGE, NONE, PAGE};
use xrdtest_master::config::MasterConfig;

const PASSWORD: &str = "correct horse battery";
const API_TOKEN: &str = "token-of-the-web-tests";
const SECRET_OUTSIDE: &str = "TOP-SECRET-OUTSIDE-THE-REPOSITORY";
const SCRIPT: &str = "#!/bin/bash\n# <script>alert('x')</script> & more\necho \"run on @slavename@\"\n";

/// A master serving a temporary definitions folder, on loopback.
struct Env {
    runtime: Option<tokio::runtime::Runtime>,
    web: SocketAddr,
    state_dir: PathBuf,
    defs: PathBuf,
    client: Client,
    _dir: tempfile::TempDir,
}

impl Env {
    /// `web` is the body of the `[web]` section.
    fn start(web: &str) -> Env {
        Env::start_with(web, |_| {})
    }

    fn start_with(web: &str, prepare: impl FnOnce(&Path)) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let defs = dir.path().join("defs");
        let suite = defs.join("suites/ts_web");
        std::fs::create_dir_all(suite.join("tc/one")).unwrap();
        std::fs::create_dir_all(defs.join("clusters")).unwrap();
        std::fs::write(
            suite.join("suite.toml"),
            "name = \"ts_web\"\nmachines = [\"slave1\"]\ntests = [\"one\"]\ninitialize = \"file://suite_init.sh\"\n",
        )
        .unwrap();
        std::fs::write(suite.join("suite_init.sh"), SCRIPT).unwrap();
        std::fs::write(suite.join("tc/one/init.sh"), "true\n").unwrap();
        std::fs::write(suite.join("tc/one/run.sh"), "true\n").unwrap();
        std::fs::write(suite.join("data.bin"), b"\x00\x01\x02binary\xff").unwrap();
        // What must never come out.
        std::fs::write(dir.path().join("outside.txt"), SECRET_OUTSIDE).unwrap();
        std::fs::create_dir_all(defs.join(".git")).unwrap();
        std::fs::write(defs.join(".git/config"), SECRET_OUTSIDE).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.txt"), defs.join("link-out")).unwrap();
        std::os::unix::fs::symlink("../outside.txt", suite.join("relative-link-out")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", defs.join("passwd")).unwrap();
        std::os::unix::fs::symlink(".git/config", defs.join("git-config")).unwrap();
        std::os::unix::fs::symlink("suite_init.sh", suite.join("alias.sh")).unwrap();
        prepare(dir.path());
        let state_dir = dir.path().join("state");
        let config = MasterConfig::from_toml(
            &format!(
                "listen = \"127.0.0.1:0\"\nweb_listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\nsecret = \"s\"\n\
                 api_token = \"{API_TOKEN}\"\n\
                 tls_names = [\"127.0.0.1\"]\ndefinitions = \"{}\"\n[scheduler]\nenabled = false\n[web]\n{web}\n",
                state_dir.display(),
                defs.display()
            ),
            dir.path(),
        )
        .unwrap();
        let https = config.web.tls != xrdtest_master::config::WebTls::None;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let running = runtime.block_on(xrdtest_master_daemon::start(config)).unwrap();
        let web = running.web_address;
        // Over HTTPS, trusting the master's CA only.
        let client = match https {
            false => Client::http(web),
            true => Client::https(web, &std::fs::read(&running.ca_cert_path).unwrap()),
        };
        Env { runtime: Some(runtime), web, state_dir, defs, client, _dir: dir }
    }

    fn request(&self, method: &str, target: &str, cookies: &[&str], form: Option<&[(&str, &str)]>) -> Reply {
        self.client.request(method, target, cookies, form)
    }

    fn get(&self, target: &str, cookies: &[&str]) -> Reply {
        self.request("GET", target, cookies, None)
    }

    fn post(&self, target: &str, cookies: &[&str], form: &[(&str, &str)]) -> Reply {
        self.request("POST", target, cookies, Some(form))
    }

    /// The login page's CSRF cookie (`name=value`) and token.
    fn login_form(&self) -> (String, String) {
        let page = self.get("/login", &[]);
        assert_eq!(page.status, 200, "{}", page.text());
        assert_eq!(page.security(), LOGIN_PAGE);
        let cookie = page.cookie("xrdtest_csrf").expect("the login page sets its CSRF cookie");
        let set = page.set_cookie("xrdtest_csrf").unwrap();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
        (cookie, page.hidden("csrf").expect("the login form has a csrf field"))
    }

    /// Logs in; the session cookie (`name=value`).
    fn log_in(&self) -> String {
        let (csrf_cookie, csrf) = self.login_form();
        let reply = self.post("/login", &[&csrf_cookie], &[("password", PASSWORD), ("csrf", &csrf), ("next", "/")]);
        assert_eq!(reply.status, 303, "{}", reply.text());
        reply.cookie("xrdtest_session").expect("a session cookie")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Let the master's tasks end before the folders go.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// Never the content of anything outside the repository.
fn assert_no_leak(reply: &Reply, what: &str) {
    let text = reply.text();
    assert!(!text.contains(SECRET_OUTSIDE) && !text.contains("root:x:0:0"), "{what} leaked: {text}");
    assert!(matches!(reply.status, 400 | 404), "{what}: status {} ({text})", reply.status);
}

fn web_config(extra: &str) -> String {
    format!("password = \"{PASSWORD}\"\n{extra}")
}

#[test]
fn login_needs_the_password_and_the_forms_csrf_token() {
    let env = Env::start(&web_config(""));
    let (csrf_cookie, csrf) = env.login_form();
    assert!(!csrf.is_empty());
    let good = [("password", PASSWORD), ("csrf", csrf.as_str()), ("next", "/sessions?suite=ts_web")];

    // The right password without the form's token, with another token, or without the cookie.
    let no_token = env.post("/login", &[&csrf_cookie], &[("password", PASSWORD), ("next", "/")]);
    assert_eq!(no_token.status, 403, "{}", no_token.text());
    assert!(no_token.text().contains("CSRF"), "{}", no_token.text());
    assert_eq!(no_token.security(), LOGIN_PAGE);
    assert!(no_token.cookie("xrdtest_session").is_none());
    let wrong_token =
        env.post("/login", &[&csrf_cookie], &[("password", PASSWORD), ("csrf", "0123abcd"), ("next", "/")]);
    assert_eq!(wrong_token.status, 403);
    let no_cookie = env.post("/login", &[], &good);
    assert_eq!(no_cookie.status, 403);
    let other_cookie = env.post("/login", &[&format!("xrdtest_csrf={}", "ab".repeat(16))], &good);
    assert_eq!(other_cookie.status, 403, "the token is bound to the browser's cookie");

    // A wrong password.
    let wrong = env.post("/login", &[&csrf_cookie], &[("password", "guess"), ("csrf", &csrf), ("next", "/")]);
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("Wrong password"));
    assert!(wrong.cookie("xrdtest_session").is_none());

    // The right one: a redirect to `next` and a session cookie.
    let reply = env.post("/login", &[&csrf_cookie], &good);
    assert_eq!(reply.status, 303, "{}", reply.text());
    assert_eq!(reply.header("location"), Some("/sessions?suite=ts_web"));
    assert_eq!(reply.security(), NONE);
    let set = reply.set_cookie("xrdtest_session").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.split("; ").any(|a| a == attribute), "{attribute} missing in {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: no Secure attribute ({set})");
    let session = reply.cookie("xrdtest_session").unwrap();

    // `next` never leads to another site.
    for next in ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"] {
        let reply = env.post("/login", &[&csrf_cookie], &[("password", PASSWORD), ("csrf", &csrf), ("next", next)]);
        assert_eq!(reply.status, 303);
        assert_eq!(reply.header("location"), Some("/"), "next = {next}");
    }

    // Logged in: the login page says so and offers a logout form with the session's token.
    let page = env.get("/login", &[&session]);
    assert!(page.text().contains("You are logged in"), "{}", page.text());
    let session_csrf = page.hidden("csrf").unwrap();
    assert_ne!(session_csrf, csrf);

    // A tampered cookie is a stranger.
    let value = session.strip_prefix("xrdtest_session=").unwrap();
    let (payload, mac) = value.rsplit_once('.').unwrap();
    let (expiry, id) = payload.split_once('.').unwrap();
    let flipped = |text: &str| {
        let mut chars: Vec<char> = text.chars().collect();
        chars[0] = if chars[0] == '0' { '1' } else { '0' };
        chars.into_iter().collect::<String>()
    };
    for tampered in [
        format!("{payload}.{}", flipped(mac)),
        format!("{expiry}.{}.{mac}", flipped(id)),
        format!("{}.{id}.{mac}", expiry.parse::<u64>().unwrap() + 3600),
        format!("{payload}."),
        "garbage".to_string(),
    ] {
        let page = env.get("/login", &[&format!("xrdtest_session={tampered}")]);
        assert!(!page.text().contains("You are logged in"), "{tampered} accepted");
        let logout = env.post("/logout", &[&format!("xrdtest_session={tampered}")], &[("csrf", &session_csrf)]);
        assert_eq!(logout.status, 303);
    }
    assert!(env.get("/login", &[&session]).text().contains("You are logged in"), "the real one still works");

    // Logging out needs the session's token too, then clears the cookie and ends the session.
    let refused = env.post("/logout", &[&session], &[("csrf", &csrf)]);
    assert_eq!(refused.status, 403);
    assert!(env.get("/login", &[&session]).text().contains("You are logged in"));
    let logout = env.post("/logout", &[&session], &[("csrf", &session_csrf)]);
    assert_eq!(logout.status, 303);
    let cleared = logout.set_cookie("xrdtest_session").unwrap();
    assert!(cleared.starts_with("xrdtest_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    let page = env.get("/login", &[&session]);
    assert!(!page.text().contains("You are logged in"), "a logged-out cookie is refused");
    assert!(page.text().contains("name=\"password\""), "the login form again");
}

#[test]
fn wrong_passwords_are_rate_limited() {
    let env = Env::start(&web_config(""));
    let (csrf_cookie, csrf) = env.login_form();
    for attempt in 1..=5 {
        let reply = env.post("/login", &[&csrf_cookie], &[("password", &format!("guess{attempt}")), ("csrf", &csrf)]);
        assert_eq!(reply.status, 401, "attempt {attempt}: {}", reply.text());
    }
    // The sixth is refused without a look at the password, even the right one.
    for password in ["guess6", PASSWORD] {
        let reply = env.post("/login", &[&csrf_cookie], &[("password", password), ("csrf", &csrf)]);
        assert_eq!(reply.status, 429, "{}", reply.text());
        let retry: u64 = reply.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!((1..=2).contains(&retry), "Retry-After {retry}");
        assert!(reply.cookie("xrdtest_session").is_none());
        assert!(reply.text().contains("Too many wrong passwords"));
        assert_eq!(reply.security(), LOGIN_PAGE);
    }
}

#[test]
fn without_a_password_nobody_logs_in() {
    let env = Env::start("");
    let page = env.get("/login", &[]);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("Logins are disabled"), "{}", page.text());
    assert!(page.hidden("csrf").is_none(), "no form");
    let nonce = format!("xrdtest_csrf={}", "ab".repeat(16));
    let reply = env.post("/login", &[&nonce], &[("password", ""), ("csrf", "x")]);
    assert_eq!(reply.status, 403);
    assert!(reply.cookie("xrdtest_session").is_none());
}

#[test]
fn a_login_survives_a_restart_with_the_same_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("keys/cookie.key");
    let web = web_config(&format!("cookie_key_file = \"{}\"", key.display()));
    let first = Env::start(&web);
    let session = first.log_in();
    let bytes = std::fs::read(&key).unwrap();
    assert_eq!(bytes.len(), 32);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    drop(first);
    let second = Env::start(&web);
    assert!(second.get("/login", &[&session]).text().contains("You are logged in"));
    assert_eq!(std::fs::read(&key).unwrap(), bytes, "the key is reused, not replaced");
    // The default key file lives in the state folder.
    let third = Env::start(&web_config(""));
    assert_eq!(std::fs::read(third.state_dir.join("web-cookie.key")).unwrap().len(), 32);
    assert!(!third.get("/login", &[&session]).text().contains("You are logged in"), "another key");
}

#[test]
fn files_are_served_from_the_repository_only() {
    let env = Env::start(&web_config("require_login = true"));
    // Download: exactly the file, as text; binary as octet-stream; a link inside the root.
    let script = env.get("/files/default/suites/ts_web/suite_init.sh", &[]);
    assert_eq!(script.status, 200, "{}", script.text());
    assert_eq!(script.text(), SCRIPT);
    assert_eq!(script.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(script.security(), [None, Some("nosniff"), Some("default-src 'none'; sandbox")]);
    let binary = env.get("/files/default/suites/ts_web/data.bin", &[]);
    assert_eq!(binary.status, 200);
    assert_eq!(binary.body, b"\x00\x01\x02binary\xff");
    assert_eq!(binary.header("content-type"), Some("application/octet-stream"));
    assert_eq!(env.get("/files/default/suites/ts_web/alias.sh", &[]).text(), SCRIPT);
    assert_eq!(env.get("/files/default/suites%2Fts_web%2Fsuite_init.sh", &[]).text(), SCRIPT);
    let head = env.request("HEAD", "/files/default/suites/ts_web/suite_init.sh", &[], None);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some(SCRIPT.len().to_string().as_str()));

    // Show: an HTML page with the content escaped.
    let shown = env.get("/files/default/suites/ts_web/suite_init.sh?show", &[]);
    assert_eq!(shown.status, 200);
    assert_eq!(shown.header("content-type"), Some("text/html; charset=utf-8"));
    let show_policy = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";
    assert_eq!(shown.security(), [None, Some("nosniff"), Some(show_policy)]);
    let html = shown.text();
    assert!(html.contains("&#60;script&#62;alert(&#39;x&#39;)&#60;/script&#62; &#38; more"), "{html}");
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("href=\"/files/default/suites/ts_web/suite_init.sh\""), "{html}");
    assert!(env.get("/files/default/suites/ts_web/data.bin?show", &[]).text().contains("binary file"));

    // The CA certificate, byte for byte.
    let ca = env.get("/ca.crt", &[]);
    assert_eq!(ca.status, 200);
    assert_eq!(ca.body, std::fs::read(env.state_dir.join("ca.crt")).unwrap());
    assert!(ca.text().starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(ca.security(), [None, Some("nosniff"), None]);

    // Missing things.
    let missing = env.get("/files/default/suites/ts_web/missing.sh", &[]);
    assert_eq!((missing.status, missing.security()), (404, NONE));
    assert_eq!(env.get("/files/nosuchrepo/suites/ts_web/suite_init.sh", &[]).status, 404);
    assert_eq!(env.get("/files/default/suites", &[]).status, 404, "folders are not listed");

    // Everything that tries to leave the repository, or reach .git.
    let outside = env.defs.parent().unwrap().join("outside.txt");
    let attempts = [
        "/files/default/../outside.txt".to_string(),
        "/files/default/suites/../../outside.txt".to_string(),
        "/files/default/../../../../../../etc/passwd".to_string(),
        "/files/default/%2e%2e/outside.txt".to_string(),
        "/files/default/%2E%2E%2Foutside.txt".to_string(),
        "/files/default/suites%2F..%2F..%2Foutside.txt".to_string(),
        "/files/default/suites/ts_web/..%2f..%2f..%2foutside.txt".to_string(),
        "/files/default/..%5coutside.txt".to_string(),
        "/files/default/%2Fetc%2Fpasswd".to_string(),
        "/files/default//etc/passwd".to_string(),
        format!("/files/default/{}", outside.display()),
        format!("/files/default/%2F{}", outside.display().to_string().trim_start_matches('/')),
        "/files/default/suites/ts_web/suite_init.sh%00.txt".to_string(),
        "/files/default/./suites/ts_web/suite_init.sh".to_string(),
        "/files/default/link-out".to_string(),
        "/files/default/suites/ts_web/relative-link-out".to_string(),
        "/files/default/passwd".to_string(),
        "/files/default/.git/config".to_string(),
        "/files/default/%2egit/config".to_string(),
        "/files/default/git-config".to_string(),
        "/files/..%2F..%2F..%2Fetc/passwd".to_string(),
        "/files/%2e%2e/outside.txt".to_string(),
        "/files/default/suites/ts_web/../../../outside.txt?show".to_string(),
        "/files/default/link-out?show".to_string(),
    ];
    for attempt in &attempts {
        assert_no_leak(&env.get(attempt, &[]), attempt);
    }
    assert_eq!(env.get("/files/default/../outside.txt", &[]).status, 400);
    assert_eq!(env.get("/files/default/%2e%2e/outside.txt", &[]).status, 400);
}

#[test]
fn require_login_sends_readers_to_the_login_page_but_not_slaves() {
    let env = Env::start(&web_config("require_login = true"));
    let page = env.get("/", &[]);
    assert_eq!(page.status, 303, "{}", page.text());
    assert_eq!(page.header("location"), Some("/login?next=/"));
    assert_eq!(page.security(), NONE);
    let login = env.get("/login?next=/", &[]);
    assert_eq!(login.status, 200);
    assert_eq!(login.hidden("next").as_deref(), Some("/"));
    // What slaves fetch stays open.
    assert_eq!(env.get("/files/default/suites/ts_web/suite_init.sh", &[]).status, 200);
    assert_eq!(env.get("/ca.crt", &[]).status, 200);
    // Logged in, the page is served.
    let session = env.log_in();
    let page = env.get("/", &[&session]);
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(page.security(), PAGE);
    let missing = env.get("/sessions/999999", &[&session]);
    assert_eq!((missing.status, missing.security()), (404, PAGE), "error pages too");
    let api = env.get("/api/health", &[]);
    assert_eq!((api.status, api.security()), (200, NONE));

    // The API's reads too: a login cookie or the API token, else 401 with the reason; the
    // health probe stays open.
    let anonymous = env.get("/api/sessions", &[]);
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    assert!(anonymous.text().contains("Authorization: Bearer"), "{}", anonymous.text());
    assert_eq!(env.get("/api/sessions/1/report.json", &[]).status, 401);
    assert_eq!(env.get("/api/sessions", &[&session]).status, 200);
    let with_token = |token: &str| {
        let url = format!("http://{}/api/sessions", env.web);
        ureq::get(&url).header("Authorization", &format!("Bearer {token}")).call().map(|r| r.status().as_u16())
    };
    assert_eq!(with_token(API_TOKEN).ok(), Some(200));
    assert!(with_token("wrong").is_err(), "a wrong token is refused");
}

#[test]
fn without_require_login_the_api_reads_stay_open() {
    let env = Env::start(&web_config(""));
    assert_eq!(env.get("/api/sessions", &[]).status, 200);
}

#[test]
fn writes_need_a_login_and_the_forms_csrf_token() {
    let env = Env::start(&web_config(""));
    // Not logged in: refused, whatever the form says.
    let anonymous = env.post("/suites/ts_web/run", &[], &[("csrf", "")]);
    assert_eq!(anonymous.status, 403, "{}", anonymous.text());
    assert!(anonymous.text().contains("log in"), "{}", anonymous.text());
    assert_eq!(anonymous.security(), LOGIN_PAGE, "a refused write is a login-style page");
    let (csrf_cookie, login_csrf) = env.login_form();
    let with_login_token = env.post("/suites/ts_web/run", &[&csrf_cookie], &[("csrf", &login_csrf)]);
    assert_eq!(with_login_token.status, 403, "the login form's token is no session");

    // Logged in, but without the session's token (a forged cross-site form).
    let session = env.log_in();
    let token = env.get("/login", &[&session]).hidden("csrf").unwrap();
    for form in [vec![], vec![("csrf", "")], vec![("csrf", login_csrf.as_str())], vec![("csrf", "00ff")]] {
        let reply = env.post("/suites/ts_web/run", &[&session], &form);
        assert_eq!(reply.status, 403, "{form:?}: {}", reply.text());
        assert!(reply.text().contains("CSRF"), "{}", reply.text());
    }
    let sessions = env.get("/api/sessions", &[]).text().to_string();
    assert!(sessions.contains("\"total\":0"), "nothing was started: {sessions}");

    // Logged in with the token: started.
    let started = env.post("/suites/ts_web/run", &[&session], &[("csrf", &token)]);
    assert_eq!(started.status, 303, "{}", started.text());
    assert_eq!(started.security(), NONE);
    let location = started.header("location").unwrap().to_string();
    let id = location.strip_prefix("/sessions/").expect("a redirect to the new session");

    // Cancelling likewise.
    let cancel = format!("/sessions/{id}/cancel");
    assert_eq!(env.post(&cancel, &[], &[("csrf", &token)]).status, 403);
    assert_eq!(env.post(&cancel, &[&session], &[("csrf", "nope")]).status, 403);
    let alive = env.get(&format!("/api/sessions/{id}"), &[]).text().to_string();
    assert!(!alive.contains("\"state\":\"cancelled\""), "{alive}");
    let cancelled = env.post(&cancel, &[&session], &[("csrf", &token)]);
    assert_eq!(cancelled.status, 303, "{}", cancelled.text());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let record = env.get(&format!("/api/sessions/{id}"), &[]).text().to_string();
        if record.contains("\"state\":\"cancelled\"") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not cancelled: {record}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Without a password nobody writes.
    let closed = Env::start("");
    let reply = closed.post("/suites/ts_web/run", &[], &[("csrf", "")]);
    assert_eq!(reply.status, 403);
}

#[test]
fn https_with_a_certificate_from_the_masters_ca() {
    let env = Env::start(&web_config("tls = \"ca\""));
    let (csrf_cookie, csrf) = env.login_form();
    let reply = env.post("/login", &[&csrf_cookie], &[("password", PASSWORD), ("csrf", &csrf)]);
    assert_eq!(reply.status, 303);
    let set = reply.set_cookie("xrdtest_session").unwrap();
    assert!(set.split("; ").any(|a| a == "Secure"), "HTTPS: Secure cookie ({set})");
    assert_eq!(env.get("/ca.crt", &[]).body, std::fs::read(env.state_dir.join("ca.crt")).unwrap());
    assert_eq!(env.get("/api/health", &[]).status, 200, "the JSON API is served over HTTPS too");
    // Plain HTTP gets nothing useful from the HTTPS port.
    if let Ok(answer) = Client::http(env.web).try_request("GET", "/ca.crt", &[], None) {
        assert!(!answer.text().contains("BEGIN CERTIFICATE"), "{}", answer.text());
    }
}

#[test]
fn https_with_given_certificate_files() {
    let env = Env::start_with(&web_config("tls = \"files\"\ncert_file = \"web.crt\"\nkey_file = \"web.key\""), |dir| {
        // Another CA than the master's: the client below trusts only this one.
        let ca = xrdtest_proto::pki::CertificateAuthority::generate().unwrap();
        let issued = ca.issue_server_certificate(&["127.0.0.1".to_string()]).unwrap();
        std::fs::write(dir.join("web.crt"), &issued.chain_pem).unwrap();
        std::fs::write(dir.join("web.key"), &issued.key_pem).unwrap();
        std::fs::write(dir.join("web-ca.crt"), ca.cert_pem()).unwrap();
    });
    let mut env = env;
    let web_ca = std::fs::read(env.defs.parent().unwrap().join("web-ca.crt")).unwrap();
    env.client = Client::https(env.web, &web_ca);
    let script = env.get("/files/default/suites/ts_web/suite_init.sh", &[]);
    assert_eq!(script.status, 200);
    assert_eq!(script.text(), SCRIPT);
}

/// The status line of a raw HTTP/1.1 GET of `path` with `Host: host`.
fn status_for_host(web: SocketAddr, path: &str, host: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(web).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_string()
}

#[test]
fn a_loopback_dashboard_answers_loopback_names_only_unless_more_are_listed() {
    let env = Env::start(&web_config(""));
    let port = env.web.port();
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), "[::1]".to_string()] {
        assert!(status_for_host(env.web, "/api/health", &host).contains(" 200 "), "{host}");
    }
    // A page of another site whose name now resolves to 127.0.0.1 (DNS rebinding).
    let refused = status_for_host(env.web, "/", "evil.example.com");
    assert!(refused.contains(" 421 "), "{refused}");
    assert!(status_for_host(env.web, "/api/sessions", &format!("evil.example.com:{port}")).contains(" 421 "));
    let listed = Env::start(&web_config("allowed_hosts = [\"dash.lab.test\"]"));
    assert!(status_for_host(listed.web, "/api/health", "dash.lab.test").contains(" 200 "));
    assert!(status_for_host(listed.web, "/api/health", "evil.example.com").contains(" 421 "));
}

#[test]
fn the_password_may_be_given_as_an_argon2_hash() {
    let hashed = xrdtest_web::password::hash(PASSWORD).unwrap();
    let env = Env::start(&format!("password = \"{hashed}\"\n"));
    let session = env.log_in();
    assert_eq!(env.get("/", &[&session]).status, 200);
    let (csrf_cookie, csrf) = env.login_form();
    let wrong = env.post("/login", &[&csrf_cookie], &[("password", hashed.as_str()), ("csrf", &csrf), ("next", "/")]);
    assert_eq!(wrong.status, 401, "the hash itself is not the password");
}
