//! Who may connect (docs/peer-identity.md), with real slave processes: a name belongs to the
//! holder of its certificate; a slave without the enrollment secret waits for an operator;
//! a revoked slave is cut off at once and stays out.

use std::process::Command;
use std::time::Duration;

use xrdtest_e2e::{state, summarize, wait_until, Case, Env, MasterOptions, Slave, SlaveConfig, Suite};

fn cli_output(mut command: Command) -> String {
    let output = command.output().expect("xrdtest runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "xrdtest failed: {text}");
    text
}

/// The identity the master lists for `name`, if any.
fn identity(env: &Env, name: &str) -> Option<serde_json::Value> {
    let peers = env.api().get("/api/peers");
    peers["peers"].as_array().into_iter().flatten().find(|p| p["name"] == name).cloned()
}

#[test]
fn a_name_belongs_to_the_holder_of_its_certificate() {
    let suite = Suite::new("ts_dup", &["d1"]).case(Case::new("noop"));
    let mut env = Env::new(&[suite], MasterOptions::default());
    env.start_slaves(&["d1"]);
    let api = env.api();
    let address = |api: &xrdtest_e2e::Api| {
        let slaves = api.slaves();
        let named: Vec<_> = slaves.iter().filter(|s| s["name"] == "d1").collect();
        assert_eq!(named.len(), 1, "{slaves:?}");
        assert_eq!(named[0]["connected"], true, "{slaves:?}");
        named[0]["address"].clone()
    };
    let original = address(&api);
    let enrolled = identity(&env, "d1").expect("d1 is on record");
    assert_eq!((enrolled["state"].as_str(), enrolled["how"].as_str()), (Some("enrolled"), Some("enrollment secret")));
    assert_eq!(enrolled["fingerprint"].as_str().map(str::len), Some(64), "{enrolled}");
    let identity_dir = env.path().join("identity-d1");
    assert!(identity_dir.join("peer.crt").is_file() && identity_dir.join("peer.key").is_file());

    // Another machine with the secret: it cannot take the name.
    let mut other_machine = SlaveConfig::new("d1", &env.master);
    other_machine.identity_dir = Some(env.path().join("another-machine"));
    let mut intruder = Slave::start(env.path(), &other_machine);
    let line = intruder.wait_log("enrolled with another key", Duration::from_secs(20));
    assert!(line.contains("xrdtest peers revoke d1"), "{line}");
    // A second process of the same machine (same certificate) while the first is connected.
    let mut duplicate = Slave::start(env.path(), &SlaveConfig::new("d1", &env.master));
    duplicate.wait_log("already connected", Duration::from_secs(20));
    assert_eq!(address(&api), original, "the first d1 keeps its place");

    let id = api.run("ts_dup");
    let session = api.wait_final(id, Duration::from_secs(30));
    assert_eq!(state(&session), "passed", "{}", summarize(&session));
    for (who, slave) in [("the other machine", &intruder), ("the duplicate", &duplicate)] {
        assert!(!slave.log().contains("connected to the master"), "{who} got in:\n{}", slave.log());
    }
    assert_eq!(identity(&env, "d1").expect("still on record")["fingerprint"], enrolled["fingerprint"]);
}

#[test]
fn a_slave_without_the_secret_waits_for_approval_and_a_revoked_one_stays_out() {
    let suite = Suite::new("ts_newcomer", &["newcomer"]).case(Case::new("hello").run("echo hello from @slavename@"));
    let mut env = Env::new(&[suite], MasterOptions::default());
    let mut config = SlaveConfig::new("newcomer", &env.master);
    config.secret = "not-the-secret".into();
    let slave = env.start_slave_with(&config);
    let line = slave.wait_log("waiting for an operator", Duration::from_secs(20));
    assert!(line.contains("the enrollment secret (or the VM's token) is not valid"), "{line}");
    let key = line.rsplit("this peer's key is ").next().unwrap_or_default().trim().to_string();
    assert!(line.contains("xrdtest peers approve newcomer"), "{line}");
    let pending = identity(&env, "newcomer").expect("the request is on record");
    assert_eq!(pending["state"], "pending", "{pending}");
    assert_eq!(pending["key"].as_str(), Some(key.as_str()), "the operator sees the key the slave logs: {pending}");
    assert!(env.api().slaves().iter().all(|s| s["name"] != "newcomer"), "not connected before approval");
    let listed = cli_output(env.master.cli(&["peers"]));
    assert!(listed.lines().any(|l| l.starts_with("newcomer") && l.contains("pending") && l.contains(&key)), "{listed}");

    // The operator approves; the slave's next attempt brings it in with its certificate.
    let approved = cli_output(env.master.cli(&["peers", "approve", "newcomer"]));
    assert!(approved.contains("newcomer approved"), "{approved}");
    env.slave("newcomer").wait_log("connected to the master", Duration::from_secs(20));
    // It got its certificate with its key alone, and got in only by presenting it.
    assert!(env.slave("newcomer").log().contains("certificate from the master saved; connecting with it"));
    assert_eq!(identity(&env, "newcomer").expect("on record")["how"], "approved by an operator");
    let api = env.api();
    let id = api.run("ts_newcomer");
    let session = api.wait_final(id, Duration::from_secs(30));
    assert_eq!(state(&session), "passed", "{}", summarize(&session));

    // Revoked: the connection drops at once, and the slave does not get back in.
    let revoked = cli_output(env.master.cli(&["peers", "revoke", "newcomer"]));
    assert!(revoked.contains("newcomer revoked"), "{revoked}");
    wait_until(Duration::from_secs(10), "newcomer disconnected", || {
        match api.slaves().iter().find(|s| s["name"] == "newcomer") {
            Some(s) if s["connected"] == true => Err("still connected".to_string()),
            _ => Ok(()),
        }
    });
    env.slave("newcomer").wait_log("the certificate was dropped", Duration::from_secs(20));
    env.slave("newcomer").wait_log("`newcomer` was revoked: waiting for an operator", Duration::from_secs(20));
    let after = identity(&env, "newcomer").expect("still on record");
    assert_eq!(after["state"], "pending", "a revoked name only asks again: {after}");
    assert_eq!(env.slave("newcomer").log().matches("connected to the master").count(), 1, "it got back in");
    assert!(env.master.log().contains("peer revoked"), "the master logs the revocation");
}
