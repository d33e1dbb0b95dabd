//! Scoped API tokens through the documented commands: `xrdtest token create|list|revoke`,
//! then calls with each token as a user would make them.

use std::process::Command;
use std::time::Duration;

use xrdtest_e2e::{binary, run_command, Case, Env, MasterOptions, Suite};

/// `xrdtest --master URL --token TOKEN ARGS...`: exit code, stdout, stderr.
fn xrdtest(env: &Env, token: &str, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(binary("xrdtest"));
    command.args(["--master", &env.master.url(), "--token", token]).args(args).env("NO_COLOR", "1");
    let output = run_command(command, Duration::from_secs(60));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn tokens_have_scopes_ends_and_only_their_hash_is_kept() {
    let suite = Suite::new("ts_tok", &["t1"]).case(Case::new("ok"));
    let mut env = Env::new(&[suite], MasterOptions::default());
    env.start_slaves(&["t1"]);
    let admin = env.master.token.clone();
    let create = |name: &str, scope: &str| {
        let (code, out, err) = xrdtest(&env, &admin, &["token", "create", name, "--scope", scope, "--expires", "1h"]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(err.contains("shown this once"), "{err}");
        out.trim().to_string()
    };
    let run_token = create("ci", "run");
    let read_token = create("dashboard-reader", "read");
    assert!(run_token.starts_with("xrdt_") && run_token != read_token, "{run_token}");
    let kept = std::fs::read_to_string(env.master.state_dir().join("tokens.json")).expect("tokens.json");
    assert!(!kept.contains(&run_token) && !kept.contains(&read_token), "tokens are kept hashed only:\n{kept}");

    // A run token runs; it cannot approve peers or make tokens.
    let (code, out, err) = xrdtest(&env, &run_token, &["run", "ts_tok", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = xrdtest(&env, &run_token, &["peers", "approve", "t1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("scope is run") && err.contains("needs admin"), "{err}");
    let (code, _, err) = xrdtest(&env, &run_token, &["token", "list"]);
    assert_eq!(code, 2, "{err}");
    // A read token cannot run.
    let (code, _, err) = xrdtest(&env, &read_token, &["run", "ts_tok"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("scope is read"), "{err}");

    let (code, out, err) = xrdtest(&env, &admin, &["token", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with("ci ") && l.contains("run")), "{out}");
    assert!(!out.contains(&run_token), "{out}");
    let (code, out, err) = xrdtest(&env, &admin, &["token", "revoke", "ci"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = xrdtest(&env, &run_token, &["run", "ts_tok"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("missing, wrong or expired"), "a revoked token is refused: {err}");
}
