//! `GitCheckout` against real repositories on local disk: a bare repository made with the
//! `git` command is the remote, and a working clone made with it commits and pushes. One
//! test serves a repository over loopback HTTP with `git http-backend` behind basic
//! authentication, to check token credentials and the retry guard end to end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use tempfile::TempDir;
use xrdtest_master::git_repo::{GitCheckout, GitCredentials, GitError, GitOperation, GitRepoConfig, SyncOutcome};

/// Runs `git` in `dir` with no global or system configuration, panicking on failure.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("the git command runs");
    assert!(
        output.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A bare remote, a working clone that pushes to it, and a place for the checkout.
struct Fixture {
    dir: TempDir,
    bare: PathBuf,
    work: PathBuf,
    checkout: PathBuf,
}

impl Fixture {
    /// A remote whose `main` holds `suites/a/suite.toml`, `suites/b/suite.toml` and
    /// `clusters/c/cluster.toml`.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("remote.git");
        let work = dir.path().join("work");
        let checkout = dir.path().join("checkout");
        git(dir.path(), &["init", "--quiet", "--bare", "--initial-branch=main", bare.to_str().unwrap()]);
        git(dir.path(), &["init", "--quiet", "--initial-branch=main", work.to_str().unwrap()]);
        for (key, value) in [
            ("user.name", "xrdtest tests"),
            ("user.email", "tests@xrdtest.invalid"),
            ("commit.gpgsign", "false"),
            ("tag.gpgsign", "false"),
        ] {
            git(&work, &["config", key, value]);
        }
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        let fixture = Fixture { dir, bare, work, checkout };
        fixture.write("suites/a/suite.toml", "name = \"a\"\n");
        fixture.write("suites/b/suite.toml", "name = \"b\"\n");
        fixture.write("clusters/c/cluster.toml", "name = \"c\"\n");
        fixture.commit_and_push("first");
        fixture
    }

    fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    fn config(&self) -> GitRepoConfig {
        GitRepoConfig {
            name: "defs".into(),
            url: self.url(),
            branch: "main".into(),
            checkout: self.checkout.clone(),
            credentials: GitCredentials::None,
        }
    }

    fn write(&self, relative: &str, contents: &str) {
        let path = self.work.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    fn remove(&self, relative: &str) {
        git(&self.work, &["rm", "--quiet", relative]);
    }

    /// Commits everything in the working clone and pushes `main`; returns the commit.
    fn commit_and_push(&self, message: &str) -> String {
        git(&self.work, &["add", "--all"]);
        git(&self.work, &["commit", "--quiet", "--allow-empty", "-m", message]);
        git(&self.work, &["push", "--quiet", "origin", "main"]);
        self.head()
    }

    fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn clone_checkout(&self) -> GitCheckout {
        let (checkout, outcome) = GitCheckout::open_or_clone(self.config()).expect("clone");
        assert!(outcome.is_moved(), "{outcome:?}");
        checkout
    }

    fn read(&self, relative: &str) -> Option<String> {
        std::fs::read_to_string(self.checkout.join(relative)).ok()
    }
}

/// Every file under `root` except inside `.git`, relative and sorted, with its contents.
fn tree(root: &Path) -> Vec<(PathBuf, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_name() == ".git" {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            } else {
                let contents = std::fs::read_to_string(&path).unwrap();
                out.push((path.strip_prefix(root).unwrap().to_path_buf(), contents));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn paths(list: &[&str]) -> Vec<PathBuf> {
    list.iter().map(PathBuf::from).collect()
}

fn moved(outcome: SyncOutcome) -> (Option<String>, String, bool, Vec<PathBuf>) {
    match outcome {
        SyncOutcome::Moved { from, to, forced, changed_paths } => (from, to, forced, changed_paths),
        other => panic!("expected Moved, got {other:?}"),
    }
}

#[test]
fn first_clone_checks_out_every_file() {
    let fx = Fixture::new();
    let (checkout, outcome) = GitCheckout::open_or_clone(fx.config()).unwrap();
    let (from, to, forced, changed) = moved(outcome);
    assert_eq!(from, None);
    assert_eq!(to, fx.head());
    assert!(!forced);
    assert_eq!(changed, paths(&["clusters/c/cluster.toml", "suites/a/suite.toml", "suites/b/suite.toml"]));
    assert_eq!(checkout.commit(), Some(fx.head()));
    assert_eq!(tree(&fx.checkout), tree(&fx.work));
    // The checkout is an ordinary git working tree on the branch.
    assert_eq!(git(&fx.checkout, &["rev-parse", "--abbrev-ref", "HEAD"]), "main");
    assert_eq!(git(&fx.checkout, &["status", "--porcelain"]), "");
}

#[test]
fn a_plain_path_url_works_too() {
    let fx = Fixture::new();
    let config = GitRepoConfig { url: fx.bare.display().to_string(), ..fx.config() };
    let (mut checkout, outcome) = GitCheckout::open_or_clone(config).unwrap();
    assert_eq!(outcome.commit(), fx.head());
    assert_eq!(fx.read("suites/a/suite.toml").as_deref(), Some("name = \"a\"\n"));
    fx.write("suites/a/suite.toml", "name = \"a2\"\n");
    fx.commit_and_push("edit a");
    let (_, to, _, changed) = moved(checkout.sync().unwrap());
    assert_eq!(to, fx.head());
    assert_eq!(changed, paths(&["suites/a/suite.toml"]));
}

#[test]
fn no_change_is_unchanged() {
    let fx = Fixture::new();
    let mut checkout = fx.clone_checkout();
    assert_eq!(checkout.sync().unwrap(), SyncOutcome::Unchanged { commit: fx.head() });
    assert_eq!(checkout.sync().unwrap(), SyncOutcome::Unchanged { commit: fx.head() });
}

#[test]
fn a_pushed_commit_moves_the_checkout_with_exactly_the_changed_paths() {
    let fx = Fixture::new();
    let mut checkout = fx.clone_checkout();
    let first = fx.head();
    fx.write("suites/a/suite.toml", "name = \"a\"\ndescription = \"changed\"\n");
    fx.write("suites/d/tc/one/run.sh", "echo one\n");
    fx.remove("clusters/c/cluster.toml");
    let second = fx.commit_and_push("second");

    let (from, to, forced, changed) = moved(checkout.sync().unwrap());
    assert_eq!(from.as_deref(), Some(first.as_str()));
    assert_eq!(to, second);
    assert!(!forced);
    assert_eq!(changed, paths(&["clusters/c/cluster.toml", "suites/a/suite.toml", "suites/d/tc/one/run.sh"]));
    assert_eq!(checkout.commit(), Some(second.clone()));
    assert_eq!(tree(&fx.checkout), tree(&fx.work));
    // The file deleted upstream is gone, and so is the folder it left empty.
    assert!(!fx.checkout.join("clusters/c/cluster.toml").exists());
    assert!(!fx.checkout.join("clusters/c").exists());
    assert_eq!(checkout.sync().unwrap(), SyncOutcome::Unchanged { commit: second });
}

#[test]
fn several_commits_at_once_report_the_net_difference() {
    let fx = Fixture::new();
    let mut checkout = fx.clone_checkout();
    fx.write("suites/tmp.txt", "temporary\n");
    fx.commit_and_push("add tmp");
    fx.remove("suites/tmp.txt");
    fx.write("suites/b/suite.toml", "name = \"b2\"\n");
    fx.commit_and_push("remove tmp, edit b");
    let (_, _, forced, changed) = moved(checkout.sync().unwrap());
    assert!(!forced);
    assert_eq!(changed, paths(&["suites/b/suite.toml"]));
}

#[test]
fn local_edits_are_discarded_on_the_next_move() {
    let fx = Fixture::new();
    let mut checkout = fx.clone_checkout();
    std::fs::write(fx.checkout.join("suites/a/suite.toml"), "edited by hand\n").unwrap();
    std::fs::remove_file(fx.checkout.join("suites/b/suite.toml")).unwrap();
    std::fs::create_dir_all(fx.checkout.join("suites/stray")).unwrap();
    std::fs::write(fx.checkout.join("suites/stray/suite.toml"), "untracked\n").unwrap();

    // While the branch stays, the working tree is not touched.
    assert!(matches!(checkout.sync().unwrap(), SyncOutcome::Unchanged { .. }));
    assert_eq!(fx.read("suites/a/suite.toml").as_deref(), Some("edited by hand\n"));

    fx.write("clusters/c/cluster.toml", "name = \"c2\"\n");
    fx.commit_and_push("edit c");
    let (_, _, _, changed) = moved(checkout.sync().unwrap());
    // The changed paths are those between the commits, not the local edits.
    assert_eq!(changed, paths(&["clusters/c/cluster.toml"]));
    assert_eq!(tree(&fx.checkout), tree(&fx.work));
    assert!(!fx.checkout.join("suites/stray").exists());
    assert_eq!(git(&fx.checkout, &["status", "--porcelain", "--ignored"]), "");
}

#[test]
fn a_force_push_is_followed() {
    let fx = Fixture::new();
    fx.write("suites/a/suite.toml", "name = \"a\"\nv = 2\n");
    fx.write("suites/e/suite.toml", "name = \"e\"\n");
    let rewritten = fx.commit_and_push("second, to be rewritten");
    let mut checkout = fx.clone_checkout();
    assert_eq!(checkout.commit(), Some(rewritten.clone()));

    git(&fx.work, &["reset", "--quiet", "--hard", "HEAD~1"]);
    fx.write("suites/b/suite.toml", "name = \"b\"\nv = 3\n");
    let replacement = fx.commit_and_push_force("replacement");

    let (from, to, forced, changed) = moved(checkout.sync().unwrap());
    assert_eq!(from, Some(rewritten));
    assert_eq!(to, replacement);
    assert!(forced);
    assert_eq!(changed, paths(&["suites/a/suite.toml", "suites/b/suite.toml", "suites/e/suite.toml"]));
    assert_eq!(tree(&fx.checkout), tree(&fx.work));
    assert!(!fx.checkout.join("suites/e").exists());

    // A fast-forward afterwards is not forced.
    fx.write("suites/f/suite.toml", "name = \"f\"\n");
    fx.commit_and_push("after");
    let (_, _, forced, changed) = moved(checkout.sync().unwrap());
    assert!(!forced);
    assert_eq!(changed, paths(&["suites/f/suite.toml"]));
}

impl Fixture {
    fn commit_and_push_force(&self, message: &str) -> String {
        git(&self.work, &["add", "--all"]);
        git(&self.work, &["commit", "--quiet", "-m", message]);
        git(&self.work, &["push", "--quiet", "--force", "origin", "main"]);
        self.head()
    }
}

#[test]
fn an_unreachable_remote_is_an_error_and_the_last_good_checkout_serves() {
    let fx = Fixture::new();
    let mut checkout = fx.clone_checkout();
    let good = fx.head();
    let before = tree(&fx.checkout);

    let hidden = fx.dir.path().join("moved-away.git");
    std::fs::rename(&fx.bare, &hidden).unwrap();
    let err = checkout.sync().unwrap_err();
    let shown = err.to_string();
    assert!(matches!(err, GitError::Transport { operation: GitOperation::Fetch, .. }), "{err:?}");
    assert!(shown.contains("git repository defs"), "{shown}");
    assert!(shown.contains(&fx.url()), "{shown}");
    assert!(shown.contains("fetch failed"), "{shown}");
    assert_eq!(checkout.commit(), Some(good.clone()));
    assert_eq!(tree(&fx.checkout), before);
    // It keeps failing, cleanly, while the remote is away.
    assert!(checkout.sync().is_err());
    assert_eq!(tree(&fx.checkout), before);

    std::fs::rename(&hidden, &fx.bare).unwrap();
    assert_eq!(checkout.sync().unwrap(), SyncOutcome::Unchanged { commit: good });
    fx.write("suites/a/suite.toml", "name = \"a\"\nback = true\n");
    fx.commit_and_push("back");
    let (_, to, _, changed) = moved(checkout.sync().unwrap());
    assert_eq!(to, fx.head());
    assert_eq!(changed, paths(&["suites/a/suite.toml"]));
}

#[test]
fn reopening_with_an_unreachable_remote_serves_the_last_good_checkout() {
    let fx = Fixture::new();
    let good = fx.clone_checkout().commit().unwrap();
    std::fs::rename(&fx.bare, fx.dir.path().join("away.git")).unwrap();
    let (mut checkout, outcome) = GitCheckout::open_or_clone(fx.config()).unwrap();
    assert_eq!(outcome, SyncOutcome::Unchanged { commit: good });
    assert_eq!(tree(&fx.checkout), tree(&fx.work));
    // The next sync reports the failure.
    assert!(matches!(checkout.sync(), Err(GitError::Transport { .. })));
}

#[test]
fn a_first_clone_from_an_unreachable_remote_fails_and_leaves_nothing() {
    let fx = Fixture::new();
    let config = GitRepoConfig { url: format!("file://{}/missing.git", fx.dir.path().display()), ..fx.config() };
    let err = GitCheckout::open_or_clone(config.clone()).unwrap_err();
    assert!(matches!(err, GitError::Transport { operation: GitOperation::Clone, .. }), "{err:?}");
    assert!(err.to_string().contains("clone failed"), "{err}");
    assert!(!fx.checkout.exists());

    // An empty folder made by the user stays, empty.
    std::fs::create_dir(&fx.checkout).unwrap();
    assert!(GitCheckout::open_or_clone(config).is_err());
    assert!(fx.checkout.is_dir());
    assert_eq!(std::fs::read_dir(&fx.checkout).unwrap().count(), 0);

    // And a later clone into it works.
    let (_, outcome) = GitCheckout::open_or_clone(fx.config()).unwrap();
    assert_eq!(outcome.commit(), fx.head());
}

#[test]
fn a_missing_branch_is_a_clear_error() {
    let fx = Fixture::new();
    let config = GitRepoConfig { branch: "production".into(), ..fx.config() };
    let err = GitCheckout::open_or_clone(config).unwrap_err();
    assert!(
        matches!(&err, GitError::BranchMissing { branch, operation: GitOperation::Clone, .. } if branch == "production"),
        "{err:?}"
    );
    let shown = err.to_string();
    assert!(shown.contains("git repository defs") && shown.contains("\"production\" does not exist"), "{shown}");
    assert!(!fx.checkout.exists());

    // A branch deleted upstream after the clone: an error, and the checkout stays.
    git(&fx.work, &["checkout", "--quiet", "-b", "other"]);
    git(&fx.work, &["push", "--quiet", "origin", "other"]);
    let config = GitRepoConfig { branch: "other".into(), ..fx.config() };
    let (mut checkout, _) = GitCheckout::open_or_clone(config).unwrap();
    git(&fx.work, &["push", "--quiet", "origin", "--delete", "other"]);
    assert!(matches!(checkout.sync(), Err(GitError::BranchMissing { operation: GitOperation::Fetch, .. })));
    assert_eq!(tree(&fx.checkout), tree(&fx.work));
}

#[test]
fn reopening_an_existing_checkout_does_not_clone_again() {
    let fx = Fixture::new();
    let first = fx.clone_checkout();
    drop(first);
    let marker = fx.checkout.join(".git/xrdtest-marker");
    std::fs::write(&marker, "kept").unwrap();

    let (checkout, outcome) = GitCheckout::open_or_clone(fx.config()).unwrap();
    assert_eq!(outcome, SyncOutcome::Unchanged { commit: fx.head() });
    assert_eq!(checkout.commit(), Some(fx.head()));
    assert!(marker.exists(), "the .git folder was recreated");
    drop(checkout);

    // Reopening after the branch moved reports the move since the last run.
    let old = fx.head();
    fx.write("suites/b/suite.toml", "name = \"b\"\nnew = 1\n");
    fx.commit_and_push("while stopped");
    let (_, outcome) = GitCheckout::open_or_clone(fx.config()).unwrap();
    let (from, to, _, changed) = moved(outcome);
    assert_eq!((from, to), (Some(old), fx.head()));
    assert_eq!(changed, paths(&["suites/b/suite.toml"]));
    assert!(marker.exists());
}

#[test]
fn a_folder_that_is_not_a_checkout_is_left_alone() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.checkout.join("mine")).unwrap();
    std::fs::write(fx.checkout.join("notes.txt"), "precious\n").unwrap();
    std::fs::write(fx.checkout.join("mine/data"), "also precious\n").unwrap();
    let before = tree(&fx.checkout);

    let err = GitCheckout::open_or_clone(fx.config()).unwrap_err();
    assert!(matches!(err, GitError::NotACheckout { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains("git repository defs") && shown.contains("left untouched"), "{shown}");
    assert_eq!(tree(&fx.checkout), before);
    assert!(!fx.checkout.join(".git").exists());

    // A file where the folder should be.
    let file = fx.dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let config = GitRepoConfig { checkout: file.clone(), ..fx.config() };
    assert!(matches!(GitCheckout::open_or_clone(config), Err(GitError::NotACheckout { .. })));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

#[test]
fn a_checkout_of_another_remote_is_left_alone() {
    let fx = Fixture::new();
    let other = Fixture::new();
    // A checkout of `other`, configured at fx's URL.
    let config = GitRepoConfig { checkout: fx.checkout.clone(), ..other.config() };
    GitCheckout::open_or_clone(config).unwrap();
    std::fs::write(fx.checkout.join("suites/a/suite.toml"), "local\n").unwrap();
    let before = tree(&fx.checkout);

    let err = GitCheckout::open_or_clone(fx.config()).unwrap_err();
    assert!(matches!(&err, GitError::OriginMismatch { found, .. } if *found == other.url()), "{err:?}");
    assert!(err.to_string().contains(&other.url()), "{err}");
    assert_eq!(tree(&fx.checkout), before);

    // A trailing slash is the same remote.
    let config = GitRepoConfig { url: format!("{}/", other.url()), checkout: fx.checkout.clone(), ..other.config() };
    assert!(GitCheckout::open_or_clone(config).is_ok());
}

#[test]
fn the_work_clone_itself_is_not_accepted_from_a_subfolder() {
    let fx = Fixture::new();
    let config = GitRepoConfig { checkout: fx.work.join("suites"), ..fx.config() };
    let err = GitCheckout::open_or_clone(config).unwrap_err();
    assert!(matches!(err, GitError::NotACheckout { .. }), "{err:?}");
    assert_eq!(git(&fx.work, &["status", "--porcelain"]), "");
}

// ---- HTTPS-style token authentication over loopback HTTP ----

/// A minimal HTTP server in front of `git http-backend` that demands basic authentication
/// `user:token`. It counts the requests it answered with 401.
struct HttpGitServer {
    port: u16,
    rejected: Arc<AtomicUsize>,
}

impl HttpGitServer {
    fn start(project_root: PathBuf, user: &str, token: &str) -> HttpGitServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let rejected = Arc::new(AtomicUsize::new(0));
        let expected = format!("Basic {}", BASE64.encode(format!("{user}:{token}")));
        let counter = rejected.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let _ = serve(stream, &project_root, &expected, &counter);
            }
        });
        HttpGitServer { port, rejected }
    }
}

fn serve(stream: TcpStream, root: &Path, expected: &str, rejected: &AtomicUsize) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Some(length) = header("content-length") {
        body.resize(length.parse().unwrap_or(0), 0);
        reader.read_exact(&mut body)?;
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    if header("authorization").as_deref() != Some(expected) {
        rejected.fetch_add(1, Ordering::SeqCst);
        let response = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
                        Content-Length: 0\r\nConnection: close\r\n\r\n";
        return stream.write_all(response.as_bytes());
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut child = Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("GIT_PROTOCOL", header("git-protocol").unwrap_or_default())
        .env("REMOTE_USER", "tester")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    child.stdin.take().unwrap().write_all(&body)?;
    let output = child.wait_with_output()?;
    let split = output
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| output.stdout.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, sep)) = split else { return stream.write_all(b"HTTP/1.1 500 Bad CGI\r\nContent-Length: 0\r\n\r\n") };
    let cgi_headers = String::from_utf8_lossy(&output.stdout[..end]).into_owned();
    let cgi_body = &output.stdout[end + sep..];
    let mut status = "200 OK".to_owned();
    let mut response = Vec::new();
    for header in cgi_headers.lines() {
        match header.split_once(':') {
            Some((name, value)) if name.eq_ignore_ascii_case("status") => status = value.trim().to_owned(),
            Some(_) => response.extend_from_slice(format!("{header}\r\n").as_bytes()),
            None => {}
        }
    }
    let mut head = format!("HTTP/1.1 {status}\r\n").into_bytes();
    head.extend_from_slice(&response);
    head.extend_from_slice(format!("Content-Length: {}\r\nConnection: close\r\n\r\n", cgi_body.len()).as_bytes());
    stream.write_all(&head)?;
    stream.write_all(cgi_body)
}

#[test]
fn https_token_credentials_authenticate_and_a_wrong_token_gives_up() {
    let fx = Fixture::new();
    let server = HttpGitServer::start(fx.dir.path().to_path_buf(), "bot", "right-token");
    let url = format!("http://127.0.0.1:{}/remote.git", server.port);
    let config = |credentials| GitRepoConfig { url: url.clone(), credentials, ..fx.config() };

    // A wrong token: one offer, then a clear authentication error (no retry loop).
    let started = Instant::now();
    let wrong = GitCredentials::HttpsToken { username: Some("bot".into()), token: "wrong-token".into() };
    let err = GitCheckout::open_or_clone(config(wrong)).unwrap_err();
    assert!(matches!(err, GitError::Auth { operation: GitOperation::Clone, .. }), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains("authentication failed") && shown.contains("rejected the token for user bot"), "{shown}");
    assert!(!shown.contains("wrong-token"), "{shown}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let rejections = server.rejected.load(Ordering::SeqCst);
    assert!((1..=3).contains(&rejections), "{rejections} rejected requests");
    assert!(!fx.checkout.exists());

    // No credentials at all.
    let err = GitCheckout::open_or_clone(config(GitCredentials::None)).unwrap_err();
    assert!(matches!(err, GitError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("none are configured"), "{err}");

    // The right token (and the user from the URL would be overridden by the configured one).
    let right = GitCredentials::HttpsToken { username: Some("bot".into()), token: "right-token".into() };
    let (mut checkout, outcome) = GitCheckout::open_or_clone(config(right)).unwrap();
    assert_eq!(outcome.commit(), fx.head());
    assert_eq!(tree(&fx.checkout), tree(&fx.work));
    fx.write("suites/a/suite.toml", "over http\n");
    fx.commit_and_push("over http");
    let (_, to, _, changed) = moved(checkout.sync().unwrap());
    assert_eq!(to, fx.head());
    assert_eq!(changed, paths(&["suites/a/suite.toml"]));
}
