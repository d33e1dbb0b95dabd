//! Peers the master must refuse: a second slave with a name already connected, and a slave
//! with the wrong secret.

use std::time::Duration;

use xrdtest_e2e::{state, summarize, wait_until, Case, Env, MasterOptions, Slave, SlaveConfig, Suite};

#[test]
fn a_second_slave_with_a_connected_name_is_refused() {
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

    let mut duplicate = Slave::start(env.path(), &SlaveConfig::new("d1", &env.master));
    let line = duplicate.wait_log("already connected", Duration::from_secs(20));
    assert!(line.contains("refused"), "{line}");
    assert_eq!(address(&api), original, "the first d1 keeps its place");
    assert_eq!(env.slave("d1").log().matches("connected to the master").count(), 1);

    // The first one still works.
    let id = api.run("ts_dup");
    let session = api.wait_final(id, Duration::from_secs(30));
    assert_eq!(state(&session), "passed", "{}", summarize(&session));
    assert!(!duplicate.log().contains("connected to the master"), "the duplicate got in:\n{}", duplicate.log());
}

#[test]
fn a_slave_with_a_wrong_secret_is_refused() {
    let mut env = Env::new(&[], MasterOptions::default());
    let mut config = SlaveConfig::new("intruder", &env.master);
    config.secret = "not-the-secret".into();
    let slave = env.start_slave_with(&config);
    slave.wait_log("authentication failed", Duration::from_secs(20));
    // It retries, and is refused again; it never shows as connected.
    wait_until(Duration::from_secs(10), "a second refusal", || {
        let count = env.slave("intruder").log().matches("authentication failed").count();
        if count >= 2 {
            Ok(())
        } else {
            Err(format!("{count} refusals"))
        }
    });
    let slaves = env.api().slaves();
    assert!(slaves.iter().all(|s| s["name"] != "intruder"), "the master lists it: {slaves:?}");
    assert!(!env.slave("intruder").log().contains("connected to the master"));
    assert!(env.master.log().contains("peer refused"), "the master logs the refusal");
}
