//! The slave tells its connection listener (systemd's status line, in the daemon) each
//! time a connection attempt fails, with the master's address and the reason.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use xrdtest_slave::client::Slave;
use xrdtest_slave::config::SlaveConfig;

#[tokio::test]
async fn failed_connection_attempts_reach_the_listener() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    // Not a certificate: every attempt fails (before or at connecting, either way a failure).
    std::fs::write(dir.path().join("ca.crt"), "not a certificate").expect("ca file");
    let text = format!(
        "master = \"127.0.0.1:{port}\"\nname = \"s1\"\nsecret = \"s\"\nca_file = \"ca.crt\"\nwork_dir = \"work\"\n\
         max_backoff = \"100ms\"\n"
    );
    let config = SlaveConfig::from_toml(&text, dir.path()).expect("config");
    let slave = Slave::new(config).expect("slave");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = lines.clone();
    slave.on_connection_change(Box::new(move |line| seen.lock().expect("lines").push(line.to_string())));
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn({
        let slave = slave.clone();
        async move { slave.run(stopped).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while lines.lock().expect("lines").len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    running.await.expect("the slave stops");
    let lines = lines.lock().expect("lines").clone();
    assert!(lines.len() >= 2, "{lines:?}");
    let wanted = format!("waiting for the master at 127.0.0.1:{port}: ");
    assert!(lines.iter().all(|l| l.starts_with(&wanted)), "{lines:?}");
}
