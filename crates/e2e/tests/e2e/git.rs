//! A real bare git repository on local disk as the definitions remote.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use xrdtest_e2e::*;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=xrdtest-e2e", "-c", "user.email=e2e@example.org", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare remote and a working clone to push from.
struct Remote {
    bare: PathBuf,
    work: PathBuf,
}

impl Remote {
    fn new(dir: &Path) -> Remote {
        let bare = dir.join("remote.git");
        let work = dir.join("work");
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "--bare", "-q", "-b", "main"]);
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        Remote { bare, work }
    }

    fn commit_and_push(&self, message: &str, force: bool) -> String {
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        let mut args = vec!["push", "-q", "origin", "main"];
        if force {
            args.insert(1, "--force");
        }
        git(&self.work, &args);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn suites(&self) -> PathBuf {
        self.work.join("defs/suites")
    }
}

fn repo_status(api: &Api) -> serde_json::Value {
    api.get("/api/repos")["repos"][0].clone()
}

fn suite_names(api: &Api) -> Vec<String> {
    api.get("/api/suites")["suites"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str().map(String::from))
        .collect()
}

#[test]
fn pushes_are_followed_broken_pushes_keep_the_last_good_version_and_force_pushes_are_followed() {
    let scratch = tempfile::Builder::new().prefix("xrdtest-e2e-git-").tempdir().unwrap();
    let remote = Remote::new(scratch.path());
    let marks = scratch.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    Suite::new("ts_first", &["g1"]).case(Case::new("c")).write(&remote.suites());
    std::fs::create_dir_all(remote.work.join("defs/clusters")).unwrap();
    std::fs::write(remote.work.join("defs/clusters/.keep"), "").unwrap();
    let first = remote.commit_and_push("first suite", false);

    let tables = format!(
        "[[repos]]\nname = \"upstream\"\ntype = \"git\"\nurl = \"file://{}\"\nbranch = \"main\"\npoll_interval = \"1s\"\n\
         suites_path = \"defs/suites\"\nclusters_path = \"defs/clusters\"\n",
        remote.bare.display()
    );
    let mut env = Env::build(MasterOptions { tables: Some(tables), ..MasterOptions::default() }, |_| Vec::new());
    env.start_slaves(&["g1"]);
    let api = env.api();
    wait_until(Duration::from_secs(20), "the first clone", || {
        let status = repo_status(&api);
        if status["commit"] == first.as_str() {
            Ok(())
        } else {
            Err(status.to_string())
        }
    });
    assert_eq!(suite_names(&api), ["ts_first"]);

    // A new suite, scheduled every 2 s: it runs at its next time, from that commit.
    let pushed = Suite::new("ts_pushed", &["g1"])
        .schedule("*/2 * * * * *")
        .case(Case::new("c").run(format!("echo v1 >> {}/pushed\n", marks.display())));
    pushed.write(&remote.suites());
    let second = remote.commit_and_push("add ts_pushed", false);
    let session = wait_until(Duration::from_secs(20), "a scheduled run of the pushed suite", || {
        let list = api.get("/api/sessions?suite=ts_pushed&state=passed&limit=5");
        list["sessions"].as_array().and_then(|s| s.first().cloned()).ok_or_else(|| list.to_string())
    });
    assert_eq!(session["trigger"], "schedule");
    let full = api.session(session["id"].as_u64().unwrap());
    assert_eq!(full["commit"], second.as_str(), "the session records the commit its definitions came from");

    // A broken push: the error shows, and the previous version (with its v1 script) still runs.
    let suite_toml = remote.suites().join("ts_pushed/suite.toml");
    let good = std::fs::read_to_string(&suite_toml).unwrap();
    std::fs::write(&suite_toml, good.replace("tests = [", "tests = [\"no_such_case\", ")).unwrap();
    std::fs::write(remote.suites().join("ts_pushed/tc/c/run.sh"), format!("echo v2 >> {}/pushed\n", marks.display()))
        .unwrap();
    let broken = remote.commit_and_push("break ts_pushed", false);
    wait_until(Duration::from_secs(20), "the broken push's error", || {
        let answer = api.get("/api/suites");
        let shown = answer["errors"].as_array().into_iter().flatten().any(|e| e["field"] == "tests[0]");
        if shown && repo_status(&api)["commit"] == broken.as_str() {
            Ok(())
        } else {
            Err(answer["errors"].to_string())
        }
    });
    assert!(suite_names(&api).contains(&"ts_pushed".to_string()), "the last good version still serves");
    let seen = std::fs::read_to_string(marks.join("pushed")).unwrap_or_default().lines().count();
    wait_until(Duration::from_secs(10), "another scheduled run after the broken push", || {
        let text = std::fs::read_to_string(marks.join("pushed")).unwrap_or_default();
        if text.lines().count() > seen + 1 {
            Ok(())
        } else {
            Err(text)
        }
    });
    let text = std::fs::read_to_string(marks.join("pushed")).unwrap();
    assert!(!text.contains("v2"), "the broken version's script never ran:\n{text}");

    // A force-push that rewrites history back to the first commit plus another suite.
    git(&remote.work, &["reset", "-q", "--hard", &first]);
    Suite::new("ts_forced", &["g1"]).case(Case::new("c")).write(&remote.suites());
    let forced = remote.commit_and_push("rewritten history", true);
    wait_until(Duration::from_secs(20), "the force-push to be followed", || {
        let names = suite_names(&api);
        let status = repo_status(&api);
        if status["commit"] == forced.as_str() && names == ["ts_first", "ts_forced"] {
            Ok(())
        } else {
            Err(format!("{names:?} at {}", status["commit"]))
        }
    });
    let id = api.run("ts_forced");
    assert_eq!(state(&api.wait_final(id, Duration::from_secs(30))), "passed");
    assert!(env.master.log().contains("git repository moved"));
}

/// SIGHUP makes a git repository fetch at once instead of at its next poll (an hour away).
#[test]
fn sighup_fetches_git_repositories_now() {
    let scratch = tempfile::Builder::new().prefix("xrdtest-e2e-git-").tempdir().unwrap();
    let remote = Remote::new(scratch.path());
    Suite::new("ts_before", &["h1"]).case(Case::new("c")).write(&remote.suites());
    std::fs::create_dir_all(remote.work.join("defs/clusters")).unwrap();
    std::fs::write(remote.work.join("defs/clusters/.keep"), "").unwrap();
    let first = remote.commit_and_push("first suite", false);
    let tables = format!(
        "[[repos]]\nname = \"upstream\"\ntype = \"git\"\nurl = \"file://{}\"\nbranch = \"main\"\npoll_interval = \"1h\"\n\
         suites_path = \"defs/suites\"\nclusters_path = \"defs/clusters\"\n",
        remote.bare.display()
    );
    let mut env = Env::build(MasterOptions { tables: Some(tables), ..MasterOptions::default() }, |_| Vec::new());
    let api = env.api();
    wait_until(Duration::from_secs(20), "the first clone", || {
        let status = repo_status(&api);
        if status["commit"] == first.as_str() {
            Ok(())
        } else {
            Err(status.to_string())
        }
    });
    Suite::new("ts_after", &["h1"]).case(Case::new("c")).write(&remote.suites());
    let second = remote.commit_and_push("add ts_after", false);
    // Not fetched on its own within a few seconds: the poll is an hour away.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(repo_status(&api)["commit"], first.as_str());
    send_signal(env.master.proc().pid(), "HUP");
    wait_until(Duration::from_secs(20), "the fetch SIGHUP asked for", || {
        let status = repo_status(&api);
        if status["commit"] == second.as_str() && suite_names(&api).contains(&"ts_after".to_string()) {
            Ok(())
        } else {
            Err(status.to_string())
        }
    });
    assert!(env.master.proc().is_running(), "SIGHUP must not stop the master");
}
