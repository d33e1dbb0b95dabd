//! The daemon over the real protocol: a fake master (TLS on loopback, the real handshake)
//! sends StartCluster / StopCluster and reads what the hypervisor says; libvirt is the
//! in-process test driver (`test:///default`), which each test keeps open for its whole run
//! (the daemon opens its own connection per operation, sharing that state).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use xrdtest_hypervisor::config::HypervisorConfig;
use xrdtest_hypervisor::daemon::Hypervisor;
use xrdtest_hypervisor::domain_type::DomainType;
use xrdtest_hypervisor::libvirt::Libvirt;
use xrdtest_hypervisor::lifecycle::Settings;
use xrdtest_hypervisor::xml;
use xrdtest_proto::handshake::ServerHandshake;
use xrdtest_proto::pki::CertificateAuthority;
use xrdtest_proto::tls::server_config;
use xrdtest_proto::*;

const SECRET: &str = "daemon test secret";
/// Generous: every step against the test driver takes milliseconds.
const WAIT: Duration = Duration::from_secs(10);

type MasterSide = Connection<TlsStream<TcpStream>>;

/// A fake master: accepts connections, runs the handshake, hands each to the test.
async fn fake_master(
    ca: &CertificateAuthority,
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<(Hello, MasterSide)>) {
    let issued = ca.issue_server_certificate(&[]).unwrap();
    let acceptor = TlsAcceptor::from(server_config(issued.chain_pem.as_bytes(), issued.key_pem.as_bytes()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(tls) = acceptor.accept(tcp).await else { continue };
            let mut conn = Connection::new(tls, DEFAULT_MAX_FRAME_LEN);
            let config = ServerHandshake {
                master_version: "test",
                heartbeat_interval: Duration::from_millis(500),
                timeout: Duration::from_secs(5),
            };
            if let Ok(hello) = server_handshake(&mut conn, &config).await {
                config.welcome(&mut conn, None).await.unwrap();
                if tx.send((hello, conn)).is_err() {
                    return;
                }
            }
        }
    });
    (addr, rx)
}

struct Harness {
    /// Keeps the test driver's state alive for the daemon's own connections.
    libvirt: Libvirt,
    hypervisor: Arc<Hypervisor>,
    shutdown: watch::Sender<bool>,
    run: tokio::task::JoinHandle<()>,
    connections: mpsc::UnboundedReceiver<(Hello, MasterSide)>,
    dir: tempfile::TempDir,
    tag: String,
    _ca: CertificateAuthority,
}

impl Harness {
    async fn new(tag: &str, extra_config: &str) -> Harness {
        let ca = CertificateAuthority::generate().unwrap();
        let (addr, connections) = fake_master(&ca).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
        let text = format!(
            "master = \"{addr}\"\nname = \"hv-{tag}\"\nsecret = \"{SECRET}\"\nca_file = \"ca.crt\"\n\
             libvirt_uri = \"test:///default\"\npool = \"pool-{tag}\"\npool_dir = \"/pool-{tag}\"\n\
             domain_type = \"qemu\"\nconsole_dir = \"consoles\"\nstate_dir = \"state\"\nshutdown_wait = \"1s\"\n{extra_config}"
        );
        let config = HypervisorConfig::from_toml(&text, dir.path()).unwrap();
        let settings = Settings {
            hypervisor: config.name.clone(),
            domain_type: DomainType::Qemu,
            pool: config.pool.clone(),
            pool_dir: config.pool_dir.clone(),
            console_dir: config.console_dir.clone(),
            guest_dir: config.guest_dir.clone(),
            ca_pem: ca.cert_pem().to_string(),
            shutdown_wait: config.shutdown_wait,
            kernel_dirs: vec![dir.path().to_path_buf()],
            warm_dir: None,
        };
        let libvirt = Libvirt::open("test:///default").unwrap();
        let pool = libvirt.ensure_pool(&settings.pool, &settings.pool_dir).unwrap();
        let image = common::base_image(tag);
        pool.create_volume(&image, &xml::disk_volume_xml(&image, 1 << 30)).unwrap();
        let hypervisor = Hypervisor::new(config, settings);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let runner = hypervisor.clone();
        let run = tokio::spawn(async move { runner.run(shutdown_rx).await });
        Harness { libvirt, hypervisor, shutdown, run, connections, dir, tag: tag.to_string(), _ca: ca }
    }

    fn cluster(&self, subnet: u8) -> xrdtest_defs::Cluster {
        common::cluster(&self.tag, subnet, self.dir.path())
    }

    async fn accept(&mut self) -> MasterSide {
        let (hello, conn) = tokio::time::timeout(WAIT, self.connections.recv()).await.expect("a connection").unwrap();
        assert_eq!(hello.role, Role::Hypervisor);
        assert_eq!(hello.name, format!("hv-{}", self.tag));
        conn
    }

    fn assert_nothing_left(&self, cluster: &xrdtest_defs::Cluster) {
        for host in &cluster.hosts {
            assert!(self.libvirt.domain(&host.name).unwrap().is_none(), "domain {} is left", host.name);
        }
        assert!(self.libvirt.network(&cluster.network.name).unwrap().is_none(), "network left");
        let pool = self.libvirt.pool(&format!("pool-{}", self.tag)).unwrap().unwrap();
        assert_eq!(pool.volume_names().unwrap(), vec![common::base_image(&self.tag)]);
    }
}

/// The next message that is not a heartbeat (each heartbeat is answered, as a master does).
async fn next(conn: &mut MasterSide) -> ToMaster {
    loop {
        let message = tokio::time::timeout(WAIT, conn.recv::<ToMaster>()).await.expect("a message in time");
        match message.expect("a valid frame").expect("the connection is open") {
            ToMaster::Heartbeat(beat) => conn.send(&FromMaster::Heartbeat(beat)).await.unwrap(),
            other => return other,
        }
    }
}

/// Reads until `cluster` reaches `last`; returns the states it went through and the last
/// `HypervisorState` seen.
async fn states_until(
    conn: &mut MasterSide,
    cluster: &str,
    last: ClusterState,
) -> (Vec<(ClusterState, String)>, Option<HypervisorStatus>) {
    let mut states = Vec::new();
    let mut status = None;
    loop {
        match next(conn).await {
            ToMaster::ClusterState(s) if s.cluster == cluster => {
                let done = s.state == last || s.state.is_error();
                states.push((s.state, s.detail));
                if done {
                    // The capacity report follows each state.
                    if let ToMaster::HypervisorState(h) = next(conn).await {
                        status = Some(h);
                    }
                    return (states, status);
                }
            }
            ToMaster::HypervisorState(h) => status = Some(h),
            other => panic!("unexpected message {other:?}"),
        }
    }
}

fn start(cluster: &xrdtest_defs::Cluster) -> FromMaster {
    FromMaster::StartCluster(StartCluster {
        cluster: cluster.clone(),
        master_ip: None,
        master_port: 20000,
        requested_by: "test".into(),
        credentials: Default::default(),
    })
}

fn just_states(states: &[(ClusterState, String)]) -> Vec<ClusterState> {
    states.iter().map(|(s, _)| *s).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_stop_over_the_protocol_with_capacity_reports() {
    let mut h = Harness::new("dstart", "vm_limit = 3\nmemory_limit = \"512M\"\n").await;
    let mut conn = h.accept().await;
    let ToMaster::HypervisorState(first) = next(&mut conn).await else { panic!("HypervisorState comes first") };
    assert_eq!(first.domain_type, "qemu");
    assert_eq!((first.vm_limit, first.memory_limit_bytes), (3, 512 << 20));
    assert_eq!((first.vms_running, first.memory_used_bytes), (0, 0));
    assert!(first.clusters.is_empty());

    let cluster = h.cluster(31);
    conn.send(&start(&cluster)).await.unwrap();
    let (states, status) = states_until(&mut conn, &cluster.name, ClusterState::Active).await;
    assert_eq!(
        just_states(&states),
        vec![
            ClusterState::Starting,
            ClusterState::CreatingNetwork,
            ClusterState::CopyingImages,
            ClusterState::AttachingDisks,
            ClusterState::CreatingSlaves,
            ClusterState::Active
        ],
        "{states:?}"
    );
    let status = status.expect("a capacity report");
    assert_eq!((status.vms_running, status.memory_used_bytes), (2, 384 << 20));
    assert_eq!(status.clusters.len(), 1);
    assert_eq!(status.clusters[0].state, ClusterState::Active);
    for host in &cluster.hosts {
        assert!(h.libvirt.domain(&host.name).unwrap().unwrap().is_active().unwrap());
    }

    // A second cluster needing more than the room left is refused without touching libvirt.
    let mut big = common::cluster("dstart-big", 32, h.dir.path());
    big.hosts[0].ram_bytes = 256 << 20;
    conn.send(&start(&big)).await.unwrap();
    let ToMaster::ClusterState(refused) = next(&mut conn).await else { panic!("a cluster state") };
    assert_eq!((refused.cluster.as_str(), refused.state), (big.name.as_str(), ClusterState::ErrorStart));
    assert!(refused.detail.contains("not enough room"), "{}", refused.detail);
    assert!(refused.detail.contains("needs 2 VMs"), "{}", refused.detail);
    assert!(h.libvirt.network(&big.network.name).unwrap().is_none());
    // Then the real capacity, which the master had counted the refused cluster into.
    let ToMaster::HypervisorState(after) = next(&mut conn).await else { panic!("a capacity report") };
    assert_eq!((after.vms_running, after.clusters.len()), (2, 1));

    // A repeated start of the running cluster is answered with its state, and the capacity.
    conn.send(&start(&cluster)).await.unwrap();
    let ToMaster::ClusterState(again) = next(&mut conn).await else { panic!("a cluster state") };
    assert_eq!(again.state, ClusterState::Active);
    let ToMaster::HypervisorState(_) = next(&mut conn).await else { panic!("a capacity report") };

    conn.send(&FromMaster::StopCluster { cluster: cluster.name.clone() }).await.unwrap();
    let (states, status) = states_until(&mut conn, &cluster.name, ClusterState::Stopped).await;
    assert_eq!(just_states(&states), vec![ClusterState::Destroying, ClusterState::Stopped]);
    let status = status.expect("a capacity report");
    assert_eq!((status.vms_running, status.memory_used_bytes, status.clusters.len()), (0, 0, 0));
    h.assert_nothing_left(&cluster);
    assert_eq!(h.hypervisor.status().vms_running, 0);

    // A stop of a cluster it does not hold (the master asks about orphans) is answered,
    // but the cluster never shows up as one of its own, so the master does not ask again.
    conn.send(&FromMaster::StopCluster { cluster: "ghost".into() }).await.unwrap();
    for wanted in [ClusterState::Destroying, ClusterState::Stopped] {
        match next(&mut conn).await {
            ToMaster::ClusterState(s) => assert_eq!((s.cluster.as_str(), s.state), ("ghost", wanted)),
            other => panic!("expected the ghost's {wanted:?}, got {other:?}"),
        }
    }
    assert!(h.hypervisor.status().clusters.iter().all(|c| c.cluster != "ghost"));
    // Nothing else follows but heartbeats: no capacity report listing the ghost.
    let quiet = tokio::time::timeout(Duration::from_millis(500), next(&mut conn)).await;
    assert!(quiet.is_err(), "unexpected message after the ghost's stop: {quiet:?}");

    let _ = h.shutdown.send(true);
    tokio::time::timeout(WAIT, &mut h.run).await.unwrap().unwrap();
}

/// A stop sent right behind a start waits for the start to finish, then removes it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_the_start_waits_for_it() {
    let mut h = Harness::new("dorder", "").await;
    let mut conn = h.accept().await;
    let _ = next(&mut conn).await;
    let cluster = h.cluster(33);
    conn.send(&start(&cluster)).await.unwrap();
    conn.send(&FromMaster::StopCluster { cluster: cluster.name.clone() }).await.unwrap();
    let (states, _) = states_until(&mut conn, &cluster.name, ClusterState::Stopped).await;
    let states = just_states(&states);
    assert_eq!(states.first(), Some(&ClusterState::Starting));
    let active = states.iter().position(|s| *s == ClusterState::Active).expect("the start finished first");
    assert_eq!(&states[active..], &[ClusterState::Active, ClusterState::Destroying, ClusterState::Stopped]);
    h.assert_nothing_left(&cluster);
    let _ = h.shutdown.send(true);
    tokio::time::timeout(WAIT, &mut h.run).await.unwrap().unwrap();
}

/// The link drops (the master goes away, or says Disconnect): the cluster keeps running, and
/// the next connection opens with its state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_survive_a_lost_link_and_are_reported_after_reconnect() {
    let mut h = Harness::new("dlink", "max_backoff = \"1s\"\n").await;
    let mut conn = h.accept().await;
    let _ = next(&mut conn).await;
    let cluster = h.cluster(34);
    conn.send(&start(&cluster)).await.unwrap();
    let (states, _) = states_until(&mut conn, &cluster.name, ClusterState::Active).await;
    assert_eq!(states.last().map(|s| s.0), Some(ClusterState::Active));

    drop(conn);
    let mut conn = h.accept().await;
    let ToMaster::HypervisorState(status) = next(&mut conn).await else { panic!("HypervisorState first") };
    assert_eq!(status.clusters.len(), 1);
    assert_eq!(
        (status.clusters[0].cluster.as_str(), status.clusters[0].state),
        (cluster.name.as_str(), ClusterState::Active)
    );
    assert_eq!(status.vms_running, 2);
    for host in &cluster.hosts {
        assert!(h.libvirt.domain(&host.name).unwrap().unwrap().is_active().unwrap(), "{} still runs", host.name);
    }

    conn.send(&FromMaster::Disconnect { reason: "master restarting".into() }).await.unwrap();
    let mut conn = h.accept().await;
    let ToMaster::HypervisorState(status) = next(&mut conn).await else { panic!("HypervisorState first") };
    assert_eq!(status.clusters[0].state, ClusterState::Active);

    conn.send(&FromMaster::StopCluster { cluster: cluster.name.clone() }).await.unwrap();
    let _ = states_until(&mut conn, &cluster.name, ClusterState::Stopped).await;
    h.assert_nothing_left(&cluster);
    let _ = h.shutdown.send(true);
    tokio::time::timeout(WAIT, &mut h.run).await.unwrap().unwrap();
}

/// Shutdown (SIGTERM in main) stops every cluster, reports it, and says goodbye.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_every_cluster_and_says_goodbye() {
    let mut h = Harness::new("dshut", "").await;
    let mut conn = h.accept().await;
    let _ = next(&mut conn).await;
    let cluster = h.cluster(35);
    conn.send(&start(&cluster)).await.unwrap();
    let _ = states_until(&mut conn, &cluster.name, ClusterState::Active).await;

    let _ = h.shutdown.send(true);
    let (states, _) = states_until(&mut conn, &cluster.name, ClusterState::Stopped).await;
    assert_eq!(just_states(&states), vec![ClusterState::Destroying, ClusterState::Stopped]);
    let ToMaster::Disconnect { reason } = next(&mut conn).await else { panic!("a goodbye") };
    assert!(reason.contains("shutting down"), "{reason}");
    tokio::time::timeout(WAIT, &mut h.run).await.unwrap().unwrap();
    h.assert_nothing_left(&cluster);
    assert!(Path::new(&h.dir.path().join("consoles")).is_dir(), "the console directory was made");
}
