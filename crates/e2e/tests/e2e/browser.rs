//! The dashboard in a real headless Chromium: log in, press run on ts_demo, watch the
//! session page turn every cell to its final state without reloading, open a failed cell's
//! output. Screenshots (laptop and phone) go to `target/screenshots/` as test artifacts.

use std::path::PathBuf;
use std::time::Duration;

use xrdtest_e2e::*;

const PASSWORD: &str = "lab-password";

fn screenshots() -> PathBuf {
    // target/debug/deps/e2e-… → target/screenshots
    let exe = std::env::current_exe().expect("test executable");
    exe.ancestors().nth(3).expect("target folder").join("screenshots")
}

/// Copies the shipped ts_demo suite into the test's definitions.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn run_ts_demo_from_the_dashboard_and_watch_it_live() {
    // CI installs Chromium (scripts/test); a developer machine without it skips loudly.
    if !Browser::available() {
        assert!(std::env::var_os("CI").is_none(), "Chromium and chromedriver must be installed in CI");
        eprintln!("SKIPPED: chromium/chromedriver not installed (scripts/test installs them)");
        return;
    }
    let options = MasterOptions { extra: format!("[web]\npassword = \"{PASSWORD}\"\n"), ..MasterOptions::default() };
    let mut env = Env::build(options, |dir| {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../suites/ts_demo");
        copy_dir(&repo, &dir.join("definitions/suites/ts_demo"));
        Vec::new()
    });
    env.start_slaves(&["slave1", "slave2", "slave3"]);
    let base = env.master.url();
    let shots = screenshots();
    let browser = Browser::start(env.path(), 1366, 900);

    // Log in.
    browser.goto(&format!("{base}/login"));
    let password = browser.wait_for("input[name=password]", Duration::from_secs(10));
    browser.type_into(&password, PASSWORD);
    browser.screenshot(&shots.join("01-login.png"));
    let submit = browser.wait_for("form button[type=submit], form input[type=submit]", Duration::from_secs(5));
    browser.click(&submit);
    wait_until(Duration::from_secs(10), "the login to land", || {
        let url = browser.url();
        if url.contains("/login") {
            Err(url)
        } else {
            Ok(())
        }
    });

    // The suites page, and run now.
    browser.goto(&format!("{base}/suites"));
    let run = browser.wait_for("button.run-now[data-suite=ts_demo]", Duration::from_secs(10));
    browser.screenshot(&shots.join("02-suites.png"));
    browser.click(&run);
    let session_url = wait_until(Duration::from_secs(10), "the session page", || {
        let url = browser.url();
        if url.contains("/sessions/") {
            Ok(url)
        } else {
            Err(url)
        }
    });
    browser.wait_for("table#grid td.cell", Duration::from_secs(10));
    // A marker in the page: if the page reloads, it is gone.
    browser.script("window.__xrdtest_marker = 'kept'; return true;");
    browser.screenshot(&shots.join("03-session-running.png"));

    // Every cell reaches a final state, live.
    let final_states =
        ["state-passed", "state-failed", "state-timedout", "state-cancelled", "state-skipped", "state-disconnected"];
    let cells = wait_until(Duration::from_secs(60), "every cell final", || {
        let cells = browser.find_all("table#grid td.cell");
        let classes: Vec<String> = cells.iter().map(|c| browser.attribute(c, "class").unwrap_or_default()).collect();
        let pending = classes.iter().filter(|c| !final_states.iter().any(|f| c.contains(f))).count();
        if !cells.is_empty() && pending == 0 {
            Ok(classes)
        } else {
            Err(format!("{pending} of {} cells not final", cells.len()))
        }
    });
    assert_eq!(
        browser.script("return window.__xrdtest_marker || null;"),
        serde_json::json!("kept"),
        "the page reloaded"
    );
    assert_eq!(browser.url(), session_url);
    assert!(cells.iter().any(|c| c.contains("state-failed")), "fails_on_purpose shows as failed");
    assert!(cells.iter().filter(|c| c.contains("state-passed")).count() > 20, "{cells:?}");
    browser.screenshot(&shots.join("04-session-done.png"));
    browser.set_size(390, 844);
    browser.screenshot(&shots.join("05-session-phone.png"));
    browser.set_size(1366, 900);

    // Open a failed cell: its output is there.
    let failed = browser.wait_for("table#grid td.cell.state-failed a", Duration::from_secs(5));
    browser.click(&failed);
    let output = browser.wait_for("#output", Duration::from_secs(10));
    let text = wait_until(Duration::from_secs(10), "the failed stage's output", || {
        let text = browser.text(&output);
        if text.contains("fails on purpose") {
            Ok(text)
        } else {
            Err(text)
        }
    });
    assert!(text.contains("never-written.txt"), "{text}");
    browser.screenshot(&shots.join("06-failed-cell.png"));

    // The other pages render in the browser too.
    for (name, path) in
        [("07-dashboard", "/"), ("08-history", "/sessions"), ("09-trends", "/trends/ts_demo"), ("10-slaves", "/slaves")]
    {
        browser.goto(&format!("{base}{path}"));
        browser.wait_for("body", Duration::from_secs(10));
        browser.screenshot(&shots.join(format!("{name}.png")));
    }
    browser.set_size(390, 844);
    browser.goto(&format!("{base}/"));
    browser.screenshot(&shots.join("11-dashboard-phone.png"));
}
