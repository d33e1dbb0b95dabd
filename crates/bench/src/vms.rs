//! Part 5: clusters of real VMs (root, libvirt and the slave image needed; see
//! docs/hypervisor.md): a real `libvirtd` in a network namespace, the real master and
//! hypervisor, clusters started by hand through the API.
//!
//! - Start-cluster to all slaves connected, for 2 and 4 VMs (direct kernel boot of the slave
//!   image, QEMU emulation here), with the time of each hypervisor step.
//! - Preparing a host's boot disk from a 1 GiB and a 4 GiB boot image: the `copying_images`
//!   step (a qcow2 overlay), beside a full copy of the same image (what XrdTest did).
//! - Warm clusters: three sessions of a suite on a 4-VM cluster; the first boots cold (and
//!   its VMs' state is saved once the slaves are connected), the others restore that state.
//!   Start-cluster to all slaves connected, cold and warm.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xrdtest_e2e::vm::{
    prerequisites, start_hypervisor, wait_hypervisor, HypervisorPlace, Namespace, NETNS, NS_IP, POOL_DIR,
};
use xrdtest_e2e::{json, Api, Case, Env, MasterOptions, Suite, Value};

/// A cluster of `hosts` kernel-booted hosts on its own network.
fn kernel_cluster(dir: &Path, name: &str, net: u8, hosts: usize) -> Result<()> {
    let mut text = format!(
        "name = \"{name}\"\n[network]\nbridge = \"virbr_{name}\"\nip = \"10.{net}.0.1\"\nnetmask = \"255.255.255.0\"\n\
         dhcp_range = [\"10.{net}.0.100\", \"10.{net}.0.200\"]\ndomain = \"{name}.test\"\n[defaults]\n\
         kernel = \"/var/lib/xrdtest/images/vmlinuz\"\ninitrd = \"/var/lib/xrdtest/images/xrdtest-slave-initrd.img\"\n\
         cmdline = \"console=ttyS0 quiet\"\nram = \"256M\"\n"
    );
    for i in 0..hosts {
        text.push_str(&format!("[[hosts]]\nname = \"h{i}\"\nip = \"10.{net}.0.{}\"\n", 10 + i));
    }
    write_cluster(dir, name, &text)
}

/// A one-host cluster booting from pool volume `volume`.
fn image_cluster(dir: &Path, name: &str, net: u8, volume: &str) -> Result<()> {
    let text = format!(
        "name = \"{name}\"\n[network]\nbridge = \"virbr_{name}\"\nip = \"10.{net}.0.1\"\nnetmask = \"255.255.255.0\"\n\
         dhcp_range = [\"10.{net}.0.100\", \"10.{net}.0.200\"]\ndomain = \"{name}.test\"\n[defaults]\n\
         boot_image = \"{volume}\"\nram = \"128M\"\n[[hosts]]\nname = \"h0\"\nip = \"10.{net}.0.10\"\n"
    );
    write_cluster(dir, name, &text)
}

fn write_cluster(dir: &Path, name: &str, text: &str) -> Result<()> {
    std::fs::create_dir_all(dir.join(name))?;
    std::fs::write(dir.join(name).join("cluster.toml"), text)?;
    Ok(())
}

fn cluster_entry(api: &Api, name: &str) -> Value {
    let answer = api.get("/api/clusters");
    answer["clusters"].as_array().into_iter().flatten().find(|c| c["name"] == name).cloned().unwrap_or(Value::Null)
}

fn wait_state(api: &Api, name: &str, wanted: &str, timeout: Duration) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let entry = cluster_entry(api, name);
        let state = entry["running"]["state"].as_str().unwrap_or("");
        if state == wanted {
            return Ok(entry);
        }
        if state.starts_with("error") {
            bail!("cluster {name}: {state}: {}", entry["running"]["detail"]);
        }
        if Instant::now() > deadline {
            bail!("cluster {name} not {wanted} after {timeout:?} (state {state})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Milliseconds between the step named `from` and the step after it.
fn step_ms(entry: &Value, from: &str) -> Option<u64> {
    let steps = entry["running"]["steps"].as_array()?;
    let index = steps.iter().position(|s| s["state"] == from)?;
    let start = steps[index]["unix_ms"].as_u64()?;
    let end = steps.get(index + 1)?["unix_ms"].as_u64()?;
    Some(end.saturating_sub(start))
}

fn start(api: &Api, name: &str) -> Result<()> {
    match api.post(&format!("/api/clusters/{name}/start"), &json!({})) {
        (202, _) => Ok(()),
        (status, answer) => bail!("start {name}: {status} {answer}"),
    }
}

fn stop(api: &Api, name: &str) -> Result<()> {
    match api.post(&format!("/api/clusters/{name}/stop"), &json!({})) {
        (202, _) => wait_state(api, name, "stopped", Duration::from_secs(180)).map(|_| ()),
        (status, answer) => bail!("stop {name}: {status} {answer}"),
    }
}

fn connected(api: &Api, names: &[String]) -> bool {
    let answer = api.get("/api/slaves");
    names.iter().all(|name| {
        answer["slaves"].as_array().into_iter().flatten().any(|s| s["name"] == name.as_str() && s["connected"] == true)
    })
}

/// Writes a boot image of `gib` GiB of real (non-sparse) blocks; returns how long a full
/// copy of it takes, as XrdTest made one per host.
fn make_image(pool: &Path, name: &str, gib: u64) -> Result<Duration> {
    let path = pool.join(name);
    let status = std::process::Command::new("dd")
        .args(["if=/dev/zero", &format!("of={}", path.display()), "bs=4M", &format!("count={}", gib * 256)])
        .args(["conv=fsync", "status=none"])
        .status()
        .context("dd")?;
    if !status.success() {
        bail!("dd could not write {}", path.display());
    }
    let copy = pool.join(format!("{name}.copy"));
    let started = Instant::now();
    std::fs::copy(&path, &copy).context("full copy")?;
    std::process::Command::new("sync").status().context("sync")?;
    let elapsed = started.elapsed();
    std::fs::remove_file(&copy)?;
    Ok(elapsed)
}

/// From a session's cluster steps: milliseconds from the start sent to the hypervisor until
/// every slave was connected, which is when the master asks for the warm state (the first
/// step after the cluster became active: `saving`, or the answer that there is nothing to
/// save), and how the VMs came up.
fn slaves_connected_ms(session: &Value) -> Option<(u64, String)> {
    let steps = session["cluster"]["steps"].as_array()?;
    let sent = steps.iter().find(|s| s["state"] == "definition_sent")?["unix_ms"].as_u64()?;
    let active = steps.iter().position(|s| s["state"] == "active")?;
    let after = steps.get(active + 1)?;
    let how = steps[active]["detail"].as_str().unwrap_or("").to_string();
    Some((after["unix_ms"].as_u64()?.saturating_sub(sent), how))
}

pub fn run() -> Result<()> {
    println!("\n== 5. clusters of VMs (real libvirtd in a network namespace) ==");
    if let Err(missing) = prerequisites() {
        println!("skipped: {missing}");
        return Ok(());
    }
    let _namespace = Namespace::up();
    let options = MasterOptions {
        netns: Some((NETNS.to_string(), NS_IP.to_string())),
        extra: "[clusters]\nstart_timeout = \"5m\"\nslave_wait = \"5m\"\n".into(),
        ..MasterOptions::default()
    };
    let env = Env::build(options, |dir| {
        let clusters = dir.join("definitions/clusters");
        let written = kernel_cluster(&clusters, "bench2", 81, 2)
            .and_then(|_| kernel_cluster(&clusters, "bench4", 82, 4))
            .and_then(|_| image_cluster(&clusters, "img1g", 83, "bench-1g.img"))
            .and_then(|_| image_cluster(&clusters, "img4g", 84, "bench-4g.img"))
            .and_then(|_| kernel_cluster(&clusters, "warm4", 85, 4));
        if let Err(err) = written {
            panic!("cannot write the benchmark clusters: {err}");
        }
        vec![Suite::new("ts_bench_warm", &["h0", "h1", "h2", "h3"])
            .extra("cluster = \"warm4\"")
            .case(Case::new("hello").run("echo \"hello from $(hostname), clock $(date -u +%FT%TZ)\"\n"))]
    });
    let hv_dir = env.path().join("hypervisor");
    std::fs::create_dir_all(&hv_dir)?;
    let _hypervisor = start_hypervisor(&env.master, &hv_dir, 1, HypervisorPlace::BesideMaster);
    let api = env.api();
    wait_hypervisor(&api);

    for (name, hosts) in [("bench2", 2usize), ("bench4", 4)] {
        let names: Vec<String> = (0..hosts).map(|i| format!("h{i}.{name}.test")).collect();
        let started = Instant::now();
        start(&api, name)?;
        let entry = wait_state(&api, name, "active", Duration::from_secs(300))?;
        let active = started.elapsed();
        let deadline = Instant::now() + Duration::from_secs(300);
        while !connected(&api, &names) {
            if Instant::now() > deadline {
                bail!("the slaves of {name} did not all connect within 5 minutes");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let all = started.elapsed();
        println!(
            "{hosts} VMs: start-cluster to all {hosts} slaves connected {:.1} s (cluster active after {:.2} s: \
             network {} ms, images {} ms, disks {} ms, domains {} ms)",
            all.as_secs_f64(),
            active.as_secs_f64(),
            step_ms(&entry, "creating_network").unwrap_or(0),
            step_ms(&entry, "copying_images").unwrap_or(0),
            step_ms(&entry, "attaching_disks").unwrap_or(0),
            step_ms(&entry, "creating_slaves").unwrap_or(0),
        );
        stop(&api, name)?;
    }

    // Warm clusters: a session per run; the cluster stops after each.
    let mut cold_ms = None;
    let mut warm = Vec::new();
    for run in 1..=3 {
        let id = api.run("ts_bench_warm");
        let session = api.wait_final(id, Duration::from_secs(600));
        if session["state"] != "passed" {
            bail!("warm cluster session {run} did not pass: {}", session["reason"]);
        }
        let (connected_ms, how) = slaves_connected_ms(&session)
            .with_context(|| format!("session {run}: no cluster steps to time: {}", session["cluster"]))?;
        println!(
            "4 VMs, session {run}: start-cluster to all 4 slaves connected {:.1} s ({how})",
            connected_ms as f64 / 1000.0
        );
        if run == 1 {
            cold_ms = Some(connected_ms);
        } else {
            warm.push(connected_ms);
        }
    }
    if let (Some(cold), Some(best)) = (cold_ms, warm.iter().min()) {
        println!(
            "warm clusters, 4 VMs: cold {:.1} s, warm {:.1} s (best of {}): warm is {:.2} of cold",
            cold as f64 / 1000.0,
            *best as f64 / 1000.0,
            warm.len(),
            *best as f64 / cold as f64
        );
    }

    let pool = Path::new(POOL_DIR);
    for (name, volume, gib) in [("img1g", "bench-1g.img", 1u64), ("img4g", "bench-4g.img", 4)] {
        let full_copy = make_image(pool, volume, gib)?;
        start(&api, name)?;
        let entry = wait_state(&api, name, "active", Duration::from_secs(300))?;
        let overlay = step_ms(&entry, "copying_images").unwrap_or(0);
        println!(
            "boot disk from a {gib} GiB image: overlay {overlay} ms (copy-on-write), full copy {:.0} ms (XrdTest's way)",
            full_copy.as_secs_f64() * 1000.0
        );
        stop(&api, name)?;
        std::fs::remove_file(pool.join(volume))?;
    }
    Ok(())
}
