//! Starting and stopping one cluster, step by step, and removing what is left over.
//!
//! Every function here blocks on libvirt; the daemon runs them on blocking threads, one
//! operation per cluster at a time.
//!
//! Safety rule: only objects whose marker names this hypervisor (and, for a start or stop,
//! this cluster) are ever changed. An object of the cluster's names that belongs to anybody
//! else makes the start fail before anything is touched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::{info, warn};
use xrdtest_defs::{Boot, Cluster, Disk, Host};
use xrdtest_proto::{ClusterState, StartCluster};

use crate::domain_type::DomainType;
use crate::guest_config::{self, GuestConfig};
use crate::libvirt::{DomainHandle, Libvirt, LibvirtError, NetworkHandle, PoolHandle};
use crate::marker::{self, Marker, Ownership};
use crate::warm::{self, WarmState};
use crate::xml::{self, DomainSpec};

/// How often a stop checks whether the guests have powered off.
const SHUTDOWN_POLL: Duration = Duration::from_millis(250);

/// What the lifecycle needs to know about this hypervisor.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This hypervisor's name, written into (and looked for in) the markers.
    pub hypervisor: String,
    pub domain_type: DomainType,
    pub pool: String,
    /// Where the pool is created when it does not exist.
    pub pool_dir: PathBuf,
    pub console_dir: PathBuf,
    /// Each VM's own `slave.toml` goes under here ([`crate::guest_config`]).
    pub guest_dir: PathBuf,
    /// The master's CA certificate, handed to the guests' slaves.
    pub ca_pem: String,
    /// How long guests get to power off after an ACPI shutdown request.
    pub shutdown_wait: Duration,
    /// The only folders a cluster's `kernel` and `initrd` may come from (`kernel_dirs`).
    pub kernel_dirs: Vec<PathBuf>,
    /// Where warm clusters' saved states are kept ([`crate::warm`]); `None`: warm clusters
    /// are off (`warm_clusters = false`, or a remote libvirt, whose files this host cannot
    /// copy).
    pub warm_dir: Option<PathBuf>,
}

/// How a start went, for the daemon: what a later save needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The fingerprint a saved state of this start must carry; `None`: warm clusters off.
    pub warm_key: Option<String>,
    /// Every VM was restored from the warm state (there is nothing to save).
    pub restored: bool,
}

/// Why a start or a stop failed. The text is what the master shows.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Libvirt(#[from] LibvirtError),
    /// Objects with the cluster's names exist and are not this hypervisor's to remove.
    #[error("{}", .0.join("; "))]
    Conflict(Vec<String>),
    /// Something the definition names does not exist (a boot image, a kernel file).
    #[error("{0}")]
    Missing(String),
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    /// The start failed, and removing what it had made failed too.
    #[error("{error}; cleaning up after it also failed: {}", cleanup.join("; "))]
    CleanupFailed { error: Box<LifecycleError>, cleanup: Vec<String> },
    /// A stop could not remove everything; each entry is one failure.
    #[error("{}", .0.join("; "))]
    Incomplete(Vec<String>),
}

/// The names one host's objects get.
struct HostPlan<'a> {
    host: &'a Host,
    /// The copy-on-write overlay (image boot only).
    boot_volume: Option<String>,
    disk_volumes: Vec<(&'a Disk, String)>,
}

impl HostPlan<'_> {
    fn volumes(&self) -> Vec<String> {
        self.boot_volume.iter().cloned().chain(self.disk_volumes.iter().map(|(_, v)| v.clone())).collect()
    }
}

fn plan(cluster: &Cluster) -> Vec<HostPlan<'_>> {
    cluster
        .hosts
        .iter()
        .map(|host| HostPlan {
            host,
            boot_volume: match host.boot {
                Boot::Image { .. } => Some(marker::boot_volume_name(&cluster.name, host.short_name())),
                Boot::Kernel { .. } => None,
            },
            disk_volumes: host
                .disks
                .iter()
                .map(|disk| (disk, marker::disk_volume_name(&cluster.name, host.short_name(), &disk.name)))
                .collect(),
        })
        .collect()
}

/// A boot image found in the pool.
struct BaseImage {
    path: String,
    capacity_bytes: u64,
    format: String,
}

/// Creates the cluster: removes dangling objects of its names that are ours, then makes
/// the network, the boot overlays, the disks and the domains, reporting each step. On any
/// failure everything the start made is removed again, `ErrorStart` is reported with the
/// reason (and any cleanup failure), and the error returned.
pub fn start_cluster(
    libvirt: &Libvirt,
    settings: &Settings,
    request: &StartCluster,
    mut report: impl FnMut(ClusterState, String),
) -> Result<Started, LifecycleError> {
    let cluster = &request.cluster;
    let plans = plan(cluster);
    info!(cluster = %cluster.name, requested_by = %request.requested_by, hosts = cluster.hosts.len(), "starting cluster");
    let mut touched = false;
    let mut touched_warm = false;
    match start_steps(libvirt, settings, request, &plans, &mut report, &mut touched, &mut touched_warm) {
        Ok((started, restored)) => {
            info!(cluster = %cluster.name, restored, "cluster active");
            let detail = match restored {
                0 => format!("{} VMs running", plans.len()),
                n => format!("{} VMs running, {n} restored from their warm state", plans.len()),
            };
            report(ClusterState::Active, detail);
            Ok(started)
        }
        Err(error) => {
            warn!(cluster = %cluster.name, %error, "starting the cluster failed; removing what was made");
            if touched_warm {
                if let Some(state) = warm_state_of(libvirt, settings, cluster) {
                    warn!(cluster = %cluster.name, step = "warm", "the start from the warm state failed: the state is dropped");
                    let _ = state.drop_state();
                }
            }
            let error = if touched {
                let cleanup = remove_cluster_objects(libvirt, settings, cluster, &plans);
                if cleanup.is_empty() {
                    error
                } else {
                    LifecycleError::CleanupFailed { error: Box::new(error), cleanup }
                }
            } else {
                error
            };
            report(ClusterState::ErrorStart, error.to_string());
            Err(error)
        }
    }
}

fn start_steps(
    libvirt: &Libvirt,
    settings: &Settings,
    request: &StartCluster,
    plans: &[HostPlan],
    report: &mut impl FnMut(ClusterState, String),
    touched: &mut bool,
    touched_warm: &mut bool,
) -> Result<(Started, usize), LifecycleError> {
    let cluster = &request.cluster;
    let name = cluster.name.as_str();

    // Checks first: nothing of the cluster is changed until every one has passed.
    let pool = libvirt.ensure_pool(&settings.pool, &settings.pool_dir)?;
    let images = find_boot_images(&pool, cluster)?;
    check_kernel_folders(cluster, &settings.kernel_dirs, libvirt.is_local())?;
    if libvirt.is_local() {
        check_kernel_files(cluster)?;
    }
    let hosts = host_names(cluster);
    let warm = warm_state_of(libvirt, settings, cluster).map(|state| {
        let key = warm::fingerprint(cluster, &boot_files(cluster, &images), &fingerprinted_settings(settings));
        (state, key)
    });
    let all_volumes: Vec<String> = plans.iter().flat_map(HostPlan::volumes).collect();
    let restoring = match &warm {
        Some((state, key)) if state.usable(key, &hosts, &all_volumes) => Some(state.clone()),
        Some((state, _)) if state.exists() => {
            info!(
                cluster = name,
                step = "warm",
                "the saved warm state is out of date (the definition, an image or the hypervisor changed): dropped"
            );
            let _ = state.drop_state();
            None
        }
        _ => None,
    };
    let started = Started { warm_key: warm.map(|(_, key)| key), restored: restoring.is_some() };
    let wanted = Wanted {
        domains: cluster.hosts.iter().map(|h| h.name.clone()).collect(),
        network: Some(cluster.network.name.clone()),
        volumes: plans.iter().flat_map(HostPlan::volumes).collect(),
    };
    let survey = survey(libvirt, settings, Some(&pool), name, Some(&wanted))?;
    if !survey.conflicts.is_empty() {
        return Err(LifecycleError::Conflict(survey.conflicts));
    }
    *touched = true;
    // From here a failed start from the warm state drops it, so that the next start boots
    // cold (a conflict found above says nothing about the state).
    *touched_warm = restoring.is_some();
    if !survey.removal.is_empty() {
        info!(cluster = name, objects = %survey.removal.describe(), step = "dangling", "removing dangling objects of ours");
        let failures = remove(&survey.removal, Some(&pool), None);
        if !failures.is_empty() {
            return Err(LifecycleError::Incomplete(failures));
        }
    }

    let network = &cluster.network;
    report(ClusterState::CreatingNetwork, format!("network {} on bridge {}", network.name, network.bridge));
    let master_ip = xml::master_address(network, request.master_ip);
    let handle = libvirt.define_network(&network.name, &xml::network_xml(cluster, &settings.hypervisor, master_ip))?;
    // The network lives as long as the cluster; a host reboot must not bring it back alone.
    handle.set_autostart(false)?;
    handle.start()?;
    info!(cluster = name, network = %network.name, %master_ip, step = "network", "network started");

    let overlays = plans.iter().filter(|p| p.boot_volume.is_some()).count();
    report(ClusterState::CopyingImages, format!("{overlays} copy-on-write boot overlays"));
    let mut paths: BTreeMap<String, String> = BTreeMap::new();
    for plan in plans {
        if let (Some(volume), Boot::Image { volume: image, .. }) = (&plan.boot_volume, &plan.host.boot) {
            let Some(base) = images.get(image) else {
                return Err(LifecycleError::Missing(format!("boot image volume `{image}` vanished from the pool")));
            };
            let xml = xml::overlay_volume_xml(volume, base.capacity_bytes, &base.path, &base.format);
            let created = pool.create_volume(volume, &xml)?;
            let path = created.path()?;
            if let Some(state) = &restoring {
                restore_volume(state, volume, &path)?;
            }
            paths.insert(volume.clone(), path);
            info!(cluster = name, host = %plan.host.name, volume, backing = %base.path, step = "overlay", "boot overlay created");
        }
    }

    let disks: usize = plans.iter().map(|p| p.disk_volumes.len()).sum();
    report(ClusterState::AttachingDisks, format!("{disks} disk volumes"));
    for plan in plans {
        for (disk, volume) in &plan.disk_volumes {
            let created = pool.create_volume(volume, &xml::disk_volume_xml(volume, disk.size_bytes))?;
            let path = created.path()?;
            if let Some(state) = &restoring {
                restore_volume(state, volume, &path)?;
            }
            paths.insert(volume.clone(), path);
            info!(cluster = name, host = %plan.host.name, volume, size = disk.size_bytes, step = "disk", "disk created");
        }
    }

    report(
        ClusterState::CreatingSlaves,
        match &restoring {
            Some(_) => format!("{} domains, restored from their warm state", plans.len()),
            None => format!("{} domains", plans.len()),
        },
    );
    let mut restores = Vec::new();
    if libvirt.is_local() {
        std::fs::create_dir_all(&settings.console_dir).map_err(|source| LifecycleError::Io {
            what: "cannot create the console directory",
            path: settings.console_dir.clone(),
            source,
        })?;
    }
    let path_of = |volume: &String| paths.get(volume).cloned().unwrap_or_default();
    for plan in plans {
        let host = plan.host;
        let token = request.credentials.0.get(&host.name).map(String::as_str).unwrap_or_default();
        if token.is_empty() {
            warn!(cluster = name, host = %host.name, "the master sent no token for this VM: its slave will wait for approval");
        }
        let mut slave_toml = xml::guest_slave_toml(network, request.master_port, host, token);
        // A restored guest sets its clock from this line (its own stopped while it was saved).
        slave_toml.push_str(&format!("# xrdtest-clock {}\n", unix_now()));
        let slave_toml = if libvirt.is_local() {
            let path = guest_config::write(&settings.guest_dir, name, &host.name, &slave_toml).map_err(|source| {
                LifecycleError::Io {
                    what: "cannot write the VM's configuration",
                    path: settings.guest_dir.clone(),
                    source,
                }
            })?;
            GuestConfig::File(path)
        } else {
            GuestConfig::Inline(slave_toml)
        };
        let spec = DomainSpec {
            host,
            network: &network.name,
            domain_type: settings.domain_type,
            boot_disk: plan.boot_volume.as_ref().map(path_of),
            disks: plan.disk_volumes.iter().map(|(disk, volume)| (*disk, path_of(volume))).collect(),
            console_path: console_path(&settings.console_dir, &host.name),
            slave_toml,
            ca_pem: &settings.ca_pem,
            marker: Marker {
                hypervisor: settings.hypervisor.clone(),
                cluster: name.to_string(),
                volumes: plan.volumes(),
            },
        };
        let domain_xml = xml::domain_xml(&spec);
        if let Some(state) = &restoring {
            restores.push((host, network.name.as_str(), state.save_file(&host.name), domain_xml));
            continue;
        }
        let domain = libvirt.define_domain(&host.name, &domain_xml)?;
        domain.start()?;
        info!(cluster = name, host = %host.name, domain = %host.name, domain_type = settings.domain_type.as_str(), step = "domain", "domain started");
    }
    let restored = restore_domains(libvirt, name, &restores)?;
    if restored < restores.len() {
        if let Some(state) = &restoring {
            let _ = state.drop_state();
        }
    }
    Ok((started, restored))
}

/// Restores each `(host, network, save file, cold domain XML)` from its saved state, all at
/// once; a host whose restore fails boots cold instead (the state is then dropped by the
/// caller). Returns how many were restored.
fn restore_domains(
    libvirt: &Libvirt,
    cluster: &str,
    restores: &[(&Host, &str, PathBuf, String)],
) -> Result<usize, LifecycleError> {
    let outcomes = in_parallel(restores, "restore", |(host, network, save, cold_xml)| {
        let began = Instant::now();
        match restore_domain(libvirt, host, network, save) {
            Ok(()) => {
                info!(cluster, host = %host.name, ms = began.elapsed().as_millis() as u64, step = "domain", "domain restored from its warm state");
                Ok(true)
            }
            Err(error) => {
                warn!(cluster, host = %host.name, %error, step = "domain", "restoring the warm state failed; booting cold");
                if let Ok(Some(domain)) = libvirt.domain(&host.name) {
                    let _ = domain.destroy();
                    let _ = domain.undefine();
                }
                libvirt.define_domain(&host.name, cold_xml)?.start()?;
                Ok(false)
            }
        }
    });
    let mut restored = 0;
    for outcome in outcomes {
        restored += usize::from(outcome?);
    }
    Ok(restored)
}

/// One host from its saved state: defined as it was saved (same UUID), restored running, and
/// its network cable pulled and put back, which tells the guest it was restored (it then
/// sets its clock, forgets its old connection and starts its slave afresh).
fn restore_domain(libvirt: &Libvirt, host: &Host, network: &str, save: &Path) -> Result<(), LifecycleError> {
    let saved_xml = libvirt.saved_xml(save)?;
    let domain = libvirt.define_domain(&host.name, &saved_xml)?;
    libvirt.restore(save)?;
    for state in ["down", "up"] {
        domain.set_link(&xml::interface_link_xml(network, &host.mac, state))?;
        if state == "down" {
            std::thread::sleep(LINK_DOWN_FOR);
        }
    }
    Ok(())
}

/// How long a restored guest's link stays down (its watcher looks every 200 ms).
const LINK_DOWN_FOR: Duration = Duration::from_millis(500);

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Puts a saved copy of `volume` in place of the fresh one at `path`.
fn restore_volume(state: &WarmState, volume: &str, path: &str) -> Result<(), LifecycleError> {
    warm::copy_sparse(&state.volume_copy(volume), Path::new(path)).map_err(|source| LifecycleError::Io {
        what: "cannot restore the saved copy of volume",
        path: PathBuf::from(path),
        source,
    })
}

/// Where the saved state of `cluster` (with the hosts it has) is kept; `None` with warm
/// clusters off or a remote libvirt.
pub fn warm_state_of(libvirt: &Libvirt, settings: &Settings, cluster: &Cluster) -> Option<WarmState> {
    let hosts = host_names(cluster);
    settings.warm_dir.as_ref().filter(|_| libvirt.is_local()).map(|dir| WarmState::of(dir, &cluster.name, &hosts))
}

fn host_names(cluster: &Cluster) -> Vec<String> {
    cluster.hosts.iter().map(|h| h.name.clone()).collect()
}

/// Runs `job` for every item at once, a thread each (libvirt's save and restore block for
/// seconds per VM); the outcomes in the items' order.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    what: &str,
    job: impl Fn(&T) -> Result<R, LifecycleError> + Sync,
) -> Vec<Result<R, LifecycleError>> {
    let job = &job;
    std::thread::scope(|scope| {
        let running: Vec<_> = items.iter().map(|item| scope.spawn(move || job(item))).collect();
        running
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| Err(LifecycleError::Missing(format!("a {what} thread panicked")))))
            .collect()
    })
}

/// What of this hypervisor's settings ends up in a saved domain.
fn fingerprinted_settings(settings: &Settings) -> Vec<&str> {
    vec![
        settings.hypervisor.as_str(),
        settings.domain_type.as_str(),
        settings.ca_pem.as_str(),
        settings.pool.as_str(),
        settings.console_dir.to_str().unwrap_or(""),
        settings.guest_dir.to_str().unwrap_or(""),
    ]
}

/// The files the cluster's guests boot from (what a saved state depends on).
fn boot_files(cluster: &Cluster, images: &BTreeMap<String, BaseImage>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for host in &cluster.hosts {
        match &host.boot {
            Boot::Kernel { kernel, initrd, .. } => {
                files.push(PathBuf::from(kernel));
                files.extend(initrd.iter().map(PathBuf::from));
            }
            Boot::Image { volume } => files.extend(images.get(volume).map(|base| PathBuf::from(&base.path))),
        }
    }
    files
}

/// Saves the state of every VM of the running `cluster` (its slaves are connected): each
/// guest pauses while its memory is written and its volumes are copied, then runs on from
/// where it was. Reports `Saving`, then `Active`. A failure drops what was saved; the
/// cluster goes on, cold next time too.
pub fn save_cluster(
    libvirt: &Libvirt,
    settings: &Settings,
    cluster: &Cluster,
    key: &str,
    mut report: impl FnMut(ClusterState, String),
) -> Result<(), LifecycleError> {
    let Some(state) = warm_state_of(libvirt, settings, cluster) else {
        report(ClusterState::Active, "warm clusters are off here".into());
        return Ok(());
    };
    let name = cluster.name.as_str();
    let plans = plan(cluster);
    let hosts = host_names(cluster);
    report(ClusterState::Saving, format!("saving the state of {} VMs", plans.len()));
    let began = Instant::now();
    let result = (|| -> Result<(), LifecycleError> {
        state.begin(&hosts).map_err(|source| LifecycleError::Io {
            what: "cannot make the warm state folder",
            path: state.dir().to_path_buf(),
            source,
        })?;
        let pool = libvirt
            .pool(&settings.pool)?
            .ok_or_else(|| LifecycleError::Missing(format!("storage pool `{}`", settings.pool)))?;
        let outcomes = in_parallel(&plans, "save", |plan| save_host(libvirt, &pool, &state, plan));
        let failures: Vec<String> = outcomes.into_iter().filter_map(Result::err).map(|e| e.to_string()).collect();
        if !failures.is_empty() {
            return Err(LifecycleError::Incomplete(failures));
        }
        state.commit(key).map_err(|source| LifecycleError::Io {
            what: "cannot complete the warm state in",
            path: state.dir().to_path_buf(),
            source,
        })
    })();
    match result {
        Ok(()) => {
            let detail = format!(
                "saved the warm state of {} VMs in {:.1} s ({} MB); later sessions restore it",
                plans.len(),
                began.elapsed().as_secs_f64(),
                state.size_bytes() >> 20
            );
            info!(cluster = name, %detail, step = "warm", "warm state saved");
            report(ClusterState::Active, detail);
            Ok(())
        }
        Err(error) => {
            let _ = state.drop_state();
            warn!(cluster = name, %error, step = "warm", "saving the warm state failed");
            report(ClusterState::Active, format!("the warm state was not saved: {error}"));
            Err(error)
        }
    }
}

/// Saves one host: memory to its save file, its volumes copied, then it runs on.
fn save_host(libvirt: &Libvirt, pool: &PoolHandle, state: &WarmState, plan: &HostPlan) -> Result<(), LifecycleError> {
    let name = &plan.host.name;
    let domain = libvirt.domain(name)?.ok_or_else(|| LifecycleError::Missing(format!("domain {name}")))?;
    let save = state.save_file(name);
    domain.save(&save)?;
    let copied =
        (|| -> Result<(), LifecycleError> {
            for volume in plan.volumes() {
                let path =
                    pool.volume(&volume)?.ok_or_else(|| LifecycleError::Missing(format!("volume {volume}")))?.path()?;
                warm::copy_sparse(Path::new(&path), &state.volume_copy(&volume)).map_err(|source| {
                    LifecycleError::Io { what: "cannot copy volume", path: PathBuf::from(&path), source }
                })?;
            }
            Ok(())
        })();
    // Whatever the copies did, the guest runs on; if it cannot resume, it boots afresh (its
    // slave connects again) rather than stay off.
    if let Err(error) = libvirt.restore(&save) {
        warn!(host = %name, %error, step = "warm", "the VM could not resume after its save; booting it");
        domain.start()?;
        return Err(error.into());
    }
    copied
}

/// Where a domain's serial console is written.
pub fn console_path(console_dir: &Path, domain: &str) -> String {
    console_dir.join(format!("{domain}.log")).display().to_string()
}

/// Looks up every boot image the cluster names; a missing one is named in the error.
fn find_boot_images(pool: &PoolHandle, cluster: &Cluster) -> Result<BTreeMap<String, BaseImage>, LifecycleError> {
    let mut images = BTreeMap::new();
    let mut missing = Vec::new();
    for host in &cluster.hosts {
        let Boot::Image { volume, .. } = &host.boot else { continue };
        if images.contains_key(volume) {
            continue;
        }
        match pool.lookup_volume(volume) {
            Ok(image) => {
                let base =
                    BaseImage { path: image.path()?, capacity_bytes: image.capacity_bytes()?, format: image.format()? };
                images.insert(volume.clone(), base);
            }
            Err(err) if err.not_found => missing.push(format!(
                "boot image volume `{volume}` (host {}) is not in storage pool `{}` (libvirt: {})",
                host.name,
                pool.name(),
                err.message
            )),
            Err(err) => return Err(err.into()),
        }
    }
    if missing.is_empty() {
        Ok(images)
    } else {
        Err(LifecycleError::Missing(missing.join("; ")))
    }
}

/// Checks that the kernels and initrds of kernel-booted hosts exist, so that a typo is
/// named before anything is made (QEMU would fail later with a less direct message).
/// Whoever can push a cluster definition must not make QEMU read any file of the host as a
/// kernel or initrd: they must lie in a folder of `kernel_dirs`. On a local libvirt the
/// real path counts (a symlink out of the folder is refused); on a remote one the path as
/// written, which must then be absolute and free of `..`.
pub fn check_kernel_folders(cluster: &Cluster, kernel_dirs: &[PathBuf], local: bool) -> Result<(), LifecycleError> {
    let mut refused = Vec::new();
    for host in &cluster.hosts {
        let Boot::Kernel { kernel, initrd, .. } = &host.boot else { continue };
        for (what, path) in [("kernel", Some(kernel)), ("initrd", initrd.as_ref())] {
            let Some(path) = path else { continue };
            let written = Path::new(path);
            let inside = if !written.is_absolute()
                || written.components().any(|c| matches!(c, std::path::Component::ParentDir))
            {
                false
            } else if local {
                // A missing file is check_kernel_files's to report.
                match written.canonicalize() {
                    Ok(real) => kernel_dirs.iter().filter_map(|d| d.canonicalize().ok()).any(|d| real.starts_with(d)),
                    Err(_) => kernel_dirs.iter().any(|d| written.starts_with(d)),
                }
            } else {
                kernel_dirs.iter().any(|d| written.starts_with(d))
            };
            if !inside {
                let dirs: Vec<String> = kernel_dirs.iter().map(|d| d.display().to_string()).collect();
                refused.push(format!(
                    "{what} `{path}` of host {} is not in a folder of this hypervisor's kernel_dirs ({})",
                    host.name,
                    if dirs.is_empty() { "none".to_string() } else { dirs.join(", ") }
                ));
            }
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(LifecycleError::Missing(refused.join("; ")))
    }
}

fn check_kernel_files(cluster: &Cluster) -> Result<(), LifecycleError> {
    let mut missing = Vec::new();
    for host in &cluster.hosts {
        let Boot::Kernel { kernel, initrd, .. } = &host.boot else { continue };
        for (what, path) in [("kernel", Some(kernel)), ("initrd", initrd.as_ref())] {
            if let Some(path) = path {
                if !Path::new(path).is_file() {
                    missing
                        .push(format!("{what} `{path}` of host {} does not exist on the hypervisor host", host.name));
                }
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LifecycleError::Missing(missing.join("; ")))
    }
}

/// After a failed start: removes every object of the cluster that is ours (all that the
/// start made, half-made ones included). Returns the failures.
fn remove_cluster_objects(
    libvirt: &Libvirt,
    settings: &Settings,
    cluster: &Cluster,
    plans: &[HostPlan],
) -> Vec<String> {
    let pool = match libvirt.pool(&settings.pool) {
        Ok(pool) => pool,
        Err(err) => return vec![err.to_string()],
    };
    let wanted = Wanted {
        domains: cluster.hosts.iter().map(|h| h.name.clone()).collect(),
        network: Some(cluster.network.name.clone()),
        volumes: plans.iter().flat_map(HostPlan::volumes).collect(),
    };
    let mut failures = match survey(libvirt, settings, pool.as_ref(), &cluster.name, Some(&wanted)) {
        Ok(survey) => remove(&survey.removal, pool.as_ref(), None),
        Err(err) => vec![err.to_string()],
    };
    failures.extend(remove_guest_configs(settings, &cluster.name));
    failures
}

/// Removes the VMs' configuration files of `cluster`; the failure, if any, as text.
fn remove_guest_configs(settings: &Settings, cluster: &str) -> Option<String> {
    guest_config::remove(&settings.guest_dir, cluster)
        .err()
        .map(|err| format!("cannot remove the VMs' configurations in {}: {err}", settings.guest_dir.display()))
}

/// Tears the cluster down: asks its guests to power off, destroys those still running after
/// `shutdown_wait`, undefines them, deletes their volumes and removes the network. Reports
/// `Destroying`, then `Stopped` or `ErrorStop`. Goes on past failures so that as much as
/// possible is removed. A cluster with nothing left here simply reports `Stopped`.
pub fn stop_cluster(
    libvirt: &Libvirt,
    settings: &Settings,
    cluster: &str,
    mut report: impl FnMut(ClusterState, String),
) -> Result<(), LifecycleError> {
    report(ClusterState::Destroying, "shutting down the VMs".into());
    info!(cluster, "stopping cluster");
    let result = libvirt
        .pool(&settings.pool)
        .and_then(|pool| Ok((survey(libvirt, settings, pool.as_ref(), cluster, None)?, pool)))
        .map_err(|e| vec![e.to_string()])
        .and_then(|(survey, pool)| {
            let mut failures = remove(&survey.removal, pool.as_ref(), Some(settings.shutdown_wait));
            failures.extend(remove_guest_configs(settings, cluster));
            if failures.is_empty() {
                Ok(survey.removal.describe())
            } else {
                Err(failures)
            }
        });
    match result {
        Ok(removed) => {
            info!(cluster, %removed, "cluster stopped");
            report(ClusterState::Stopped, format!("removed {removed}"));
            Ok(())
        }
        Err(failures) => {
            let error = LifecycleError::Incomplete(failures);
            warn!(cluster, %error, "stopping the cluster left objects behind");
            report(ClusterState::ErrorStop, error.to_string());
            Err(error)
        }
    }
}

/// At start-up: removes every domain and network marked as ours whose cluster is not in
/// `keep`, and every volume of our prefix that no domain uses. Returns the clusters it
/// cleaned up; the error lists what could not be removed.
pub fn cleanup_orphans(libvirt: &Libvirt, settings: &Settings, keep: &[String]) -> Result<Vec<String>, LifecycleError> {
    let pool = libvirt.pool(&settings.pool)?;
    let mut clusters = BTreeSet::new();
    for domain in libvirt.domains()? {
        if let Ownership::Ours(marker) = ownership_of_domain(&domain, &settings.hypervisor) {
            clusters.insert(marker.cluster);
        }
    }
    for network in libvirt.networks()? {
        if let Ownership::Ours(marker) = ownership_of_network(&network, &settings.hypervisor) {
            clusters.insert(marker.cluster);
        }
    }
    clusters.retain(|c| !keep.contains(c));
    let mut failures = Vec::new();
    for cluster in &clusters {
        let survey = survey(libvirt, settings, pool.as_ref(), cluster, None)?;
        info!(cluster, objects = %survey.removal.describe(), step = "orphans", "removing orphaned cluster");
        failures.extend(remove(&survey.removal, pool.as_ref(), None));
    }
    // VM configurations (with their tokens) of clusters that no longer run here.
    for cluster in guest_config::clusters(&settings.guest_dir).into_iter().filter(|c| !keep.contains(c)) {
        info!(cluster = %cluster, step = "orphans", "removing the VMs' configurations of a cluster gone");
        failures.extend(remove_guest_configs(settings, &cluster));
    }
    // Volumes of our prefix that no domain uses and no kept cluster owns.
    if let Some(pool) = &pool {
        let claimed: BTreeSet<String> =
            libvirt.domains()?.iter().filter_map(read_marker_quietly).flat_map(|m| m.volumes).collect();
        let kept_prefixes: Vec<String> = keep.iter().map(|c| marker::cluster_volume_prefix(c)).collect();
        let stray: Vec<String> = pool
            .volume_names()?
            .into_iter()
            .filter(|v| v.starts_with(marker::VOLUME_PREFIX) && !claimed.contains(v))
            .filter(|v| !kept_prefixes.iter().any(|p| v.starts_with(p)))
            .collect();
        if !stray.is_empty() {
            info!(volumes = %stray.join(" "), step = "orphans", "removing volumes no domain uses");
            let removal = Removal { volumes: stray, ..Removal::default() };
            failures.extend(remove(&removal, Some(pool), None));
        }
    }
    if failures.is_empty() {
        Ok(clusters.into_iter().collect())
    } else {
        Err(LifecycleError::Incomplete(failures))
    }
}

/// Objects of a start's names, to tell them apart from what is already there.
struct Wanted {
    domains: Vec<String>,
    network: Option<String>,
    volumes: Vec<String>,
}

/// What is there of one cluster: what may be removed, and what stands in a start's way.
struct Survey {
    removal: Removal,
    conflicts: Vec<String>,
}

/// Objects to remove, all ours.
#[derive(Default)]
struct Removal {
    domains: Vec<DomainHandle>,
    networks: Vec<NetworkHandle>,
    volumes: Vec<String>,
}

impl Removal {
    fn is_empty(&self) -> bool {
        self.domains.is_empty() && self.networks.is_empty() && self.volumes.is_empty()
    }

    fn describe(&self) -> String {
        let names = |items: Vec<&str>| if items.is_empty() { "none".to_string() } else { items.join(" ") };
        format!(
            "domains: {}; volumes: {}; networks: {}",
            names(self.domains.iter().map(|d| d.name()).collect()),
            names(self.volumes.iter().map(String::as_str).collect()),
            names(self.networks.iter().map(|n| n.name()).collect()),
        )
    }
}

/// The marker of a domain, or `None` when it has none or it cannot be read (a domain that
/// vanished meanwhile, or XML that is not ours): such a domain is never touched.
fn read_marker_quietly(domain: &DomainHandle) -> Option<Marker> {
    match domain.marker() {
        Ok(marker) => marker,
        Err(err) => {
            tracing::debug!(domain = domain.name(), error = %err, "cannot read the domain's marker");
            None
        }
    }
}

fn ownership_of_domain(domain: &DomainHandle, hypervisor: &str) -> Ownership {
    Ownership::of(read_marker_quietly(domain), hypervisor)
}

fn ownership_of_network(network: &NetworkHandle, hypervisor: &str) -> Ownership {
    let marker = match network.marker() {
        Ok(marker) => marker,
        Err(err) => {
            tracing::debug!(network = network.name(), error = %err, "cannot read the network's marker");
            None
        }
    };
    Ownership::of(marker, hypervisor)
}

/// Finds the objects of `cluster` that are ours (to remove), and, for a start, the objects
/// of the wanted names that are not (conflicts).
///
/// Ours means: marked by this hypervisor for this cluster. Volumes are ours by their name
/// prefix, or by being listed in the marker of a domain that is removed; a volume that any
/// other domain lists is never removed (the prefix of a cluster `a` also matches cluster
/// `a.b`'s volumes, which their domains list).
fn survey(
    libvirt: &Libvirt,
    settings: &Settings,
    pool: Option<&PoolHandle>,
    cluster: &str,
    wanted: Option<&Wanted>,
) -> Result<Survey, LibvirtError> {
    let is_ours = |ownership: &Ownership| ownership.ours().is_some_and(|m| m.cluster == cluster);
    let mut removal = Removal::default();
    let mut conflicts = Vec::new();
    // Volume name -> the domain that uses it, for domains that stay.
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    let mut target_volumes = BTreeSet::new();
    for domain in libvirt.domains()? {
        let ownership = ownership_of_domain(&domain, &settings.hypervisor);
        if is_ours(&ownership) {
            if let Some(marker) = ownership.ours() {
                target_volumes.extend(marker.volumes.iter().cloned());
            }
            removal.domains.push(domain);
            continue;
        }
        if wanted.is_some_and(|w| w.domains.iter().any(|n| n == domain.name())) {
            conflicts.push(format!("domain {} already exists and is {}", domain.name(), ownership.describe()));
        }
        let volumes = match &ownership {
            Ownership::Ours(m) | Ownership::OtherHypervisor(m) => m.volumes.clone(),
            Ownership::Foreign => Vec::new(),
        };
        for volume in volumes {
            claimed.insert(volume, domain.name().to_string());
        }
    }
    for network in libvirt.networks()? {
        let ownership = ownership_of_network(&network, &settings.hypervisor);
        if is_ours(&ownership) {
            removal.networks.push(network);
        } else if wanted.and_then(|w| w.network.as_deref()) == Some(network.name()) {
            conflicts.push(format!("network {} already exists and is {}", network.name(), ownership.describe()));
        }
    }
    if let Some(pool) = pool {
        let existing: BTreeSet<String> = pool.volume_names()?.into_iter().collect();
        let prefix = marker::cluster_volume_prefix(cluster);
        for volume in &existing {
            if !(volume.starts_with(&prefix) || target_volumes.contains(volume)) {
                continue;
            }
            match claimed.get(volume) {
                None => removal.volumes.push(volume.clone()),
                Some(domain) if wanted.is_some_and(|w| w.volumes.contains(volume)) => {
                    conflicts.push(format!("volume {volume} already exists and is used by domain {domain}"))
                }
                Some(_) => {}
            }
        }
    }
    Ok(Survey { removal, conflicts })
}

/// Removes the objects: domains (after an ACPI shutdown and up to `graceful` of waiting, or
/// at once), then their volumes, then the networks. Goes on past failures; returns them.
fn remove(removal: &Removal, pool: Option<&PoolHandle>, graceful: Option<Duration>) -> Vec<String> {
    let mut failures = Vec::new();
    let mut running: Vec<&DomainHandle> = Vec::new();
    for domain in &removal.domains {
        match domain.is_active() {
            Ok(true) => running.push(domain),
            Ok(false) => {}
            Err(err) => failures.push(err.to_string()),
        }
    }
    if let Some(wait) = graceful {
        // All guests are asked first, then waited for together: the wait is bounded by one
        // `shutdown_wait`, not one per guest.
        for domain in &running {
            if let Err(err) = domain.shutdown() {
                warn!(domain = domain.name(), error = %err, "ACPI shutdown request failed; destroying");
            }
        }
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            running.retain(|d| d.is_active().unwrap_or(true));
            if running.is_empty() {
                break;
            }
            std::thread::sleep(SHUTDOWN_POLL);
        }
        running.retain(|d| d.is_active().unwrap_or(true));
        if !running.is_empty() {
            let names: Vec<&str> = running.iter().map(|d| d.name()).collect();
            // Expected for guests without ACPI handling, like the busybox slave image.
            info!(domains = %names.join(" "), waited = ?wait, "guests did not power off in time; destroying them");
        }
    }
    for domain in running {
        if let Err(err) = domain.destroy() {
            // It may have powered off between the check and now.
            if domain.is_active().unwrap_or(true) {
                failures.push(err.to_string());
            }
        }
    }
    for domain in &removal.domains {
        match domain.undefine() {
            Ok(()) => info!(domain = domain.name(), host = domain.name(), step = "undefine", "domain removed"),
            Err(err) => failures.push(err.to_string()),
        }
    }
    if !removal.volumes.is_empty() {
        match pool {
            Some(pool) => {
                for name in &removal.volumes {
                    match pool.volume(name) {
                        Ok(Some(volume)) => match volume.delete() {
                            Ok(()) => info!(volume = name, step = "delete volume", "volume deleted"),
                            Err(err) => failures.push(err.to_string()),
                        },
                        Ok(None) => {}
                        Err(err) => failures.push(err.to_string()),
                    }
                }
            }
            None => failures.push(format!("volumes {} are in a storage pool that is gone", removal.volumes.join(" "))),
        }
    }
    for network in &removal.networks {
        match network.is_active() {
            Ok(true) => {
                if let Err(err) = network.destroy() {
                    failures.push(err.to_string());
                }
            }
            Ok(false) => {}
            Err(err) => failures.push(err.to_string()),
        }
        match network.undefine() {
            Ok(()) => info!(network = network.name(), step = "undefine", "network removed"),
            Err(err) => failures.push(err.to_string()),
        }
    }
    failures
}
