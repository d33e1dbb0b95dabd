//! Thin wrappers over the `virt` calls the hypervisor makes. Each libvirt failure becomes a
//! [`LibvirtError`] that says what was being done to which object, with libvirt's own
//! message (which is what a person needs: "Cannot access storage file ...", "network
//! 'x' is already in use by interface ...").
//!
//! Every call blocks; callers run them on blocking threads.

use std::path::Path;
use std::sync::Once;

use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::ErrorNumber;
use virt::network::Network;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;

use crate::marker::{read_domain_marker, read_network_marker, Marker};

/// A libvirt call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{action}: {message}")]
pub struct LibvirtError {
    /// What was being done, naming the object (`define domain server.pair.test`).
    pub action: String,
    /// libvirt's message.
    pub message: String,
    /// The object does not exist (libvirt's NO_DOMAIN, NO_NETWORK, ...).
    pub not_found: bool,
}

impl LibvirtError {
    fn new(action: impl Into<String>, error: virt::error::Error) -> LibvirtError {
        let not_found = error.code().is_any(vec![
            ErrorNumber::NoDomain,
            ErrorNumber::NoNetwork,
            ErrorNumber::NoStoragePool,
            ErrorNumber::NoStorageVolume,
        ]);
        LibvirtError { action: action.into(), message: error.message().to_string(), not_found }
    }

    fn other(action: impl Into<String>, message: impl Into<String>) -> LibvirtError {
        LibvirtError { action: action.into(), message: message.into(), not_found: false }
    }
}

type Result<T> = std::result::Result<T, LibvirtError>;

/// Turns "not found" into `None`.
fn optional<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(err) if err.not_found => Ok(None),
        Err(err) => Err(err),
    }
}

/// An open libvirt connection. libvirt connections are thread-safe.
pub struct Libvirt {
    conn: Connect,
    uri: String,
}

impl Libvirt {
    /// Opens `uri` (`qemu:///system`, `test:///default`, ...).
    pub fn open(uri: &str) -> Result<Libvirt> {
        // libvirt prints every error to stderr by default; ours are returned and logged.
        static QUIET: Once = Once::new();
        QUIET.call_once(virt::error::clear_error_callback);
        let conn =
            Connect::open(Some(uri)).map_err(|e| LibvirtError::new(format!("connect to libvirt at {uri}"), e))?;
        Ok(Libvirt { conn, uri: uri.to_string() })
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Whether libvirt runs on this machine (`driver:///...` with no host), so that paths
    /// in definitions can be checked here.
    pub fn is_local(&self) -> bool {
        self.uri.split_once("://").is_some_and(|(_, rest)| rest.starts_with('/'))
    }

    /// libvirt's and the hypervisor driver's versions, for the log.
    pub fn versions(&self) -> Result<String> {
        let lib = self.conn.lib_version().map_err(|e| LibvirtError::new("read libvirt's version", e))?;
        let driver = self.conn.driver_type().map_err(|e| LibvirtError::new("read libvirt's driver", e))?;
        let version = |v: u32| format!("{}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000);
        Ok(format!("libvirt {} ({driver} driver)", version(lib)))
    }

    // Domains.

    pub fn domain(&self, name: &str) -> Result<Option<DomainHandle>> {
        optional(
            self.conn
                .lookup_domain_by_name(name)
                .map(|inner| DomainHandle { name: name.to_string(), inner })
                .map_err(|e| LibvirtError::new(format!("look up domain {name}"), e)),
        )
    }

    /// Every domain, running or not.
    pub fn domains(&self) -> Result<Vec<DomainHandle>> {
        let all = self.conn.list_all_domains(0).map_err(|e| LibvirtError::new("list domains", e))?;
        let mut handles = Vec::with_capacity(all.len());
        for inner in all {
            // A domain undefined between the listing and this call has no name any more.
            match inner.name() {
                Ok(name) => handles.push(DomainHandle { name, inner }),
                Err(err) => tracing::debug!(error = %err.message(), "a listed domain vanished"),
            }
        }
        Ok(handles)
    }

    /// The domain XML kept in a saved state file (with the domain's UUID).
    pub fn saved_xml(&self, path: &Path) -> Result<String> {
        self.conn
            .save_image_xml_desc(&path.display().to_string(), 0)
            .map_err(|e| LibvirtError::new(format!("read the domain of saved state {}", path.display()), e))
    }

    /// Starts the domain a saved state file holds, from that state, running (into the
    /// defined domain of the same UUID). The file stays.
    pub fn restore(&self, path: &Path) -> Result<()> {
        self.conn
            .restore_domain_flags(&path.display().to_string(), None, virt::sys::VIR_DOMAIN_SAVE_RUNNING)
            .map_err(|e| LibvirtError::new(format!("restore saved state {}", path.display()), e))
    }

    pub fn define_domain(&self, name: &str, xml: &str) -> Result<DomainHandle> {
        self.conn
            .define_domain_xml(xml)
            .map(|inner| DomainHandle { name: name.to_string(), inner })
            .map_err(|e| LibvirtError::new(format!("define domain {name}"), e))
    }

    // Networks.

    pub fn network(&self, name: &str) -> Result<Option<NetworkHandle>> {
        optional(
            self.conn
                .lookup_network_by_name(name)
                .map(|inner| NetworkHandle { name: name.to_string(), inner })
                .map_err(|e| LibvirtError::new(format!("look up network {name}"), e)),
        )
    }

    pub fn networks(&self) -> Result<Vec<NetworkHandle>> {
        let all = self.conn.list_all_networks(0).map_err(|e| LibvirtError::new("list networks", e))?;
        let mut handles = Vec::with_capacity(all.len());
        for inner in all {
            match inner.name() {
                Ok(name) => handles.push(NetworkHandle { name, inner }),
                Err(err) => tracing::debug!(error = %err.message(), "a listed network vanished"),
            }
        }
        Ok(handles)
    }

    pub fn define_network(&self, name: &str, xml: &str) -> Result<NetworkHandle> {
        self.conn
            .define_network_xml(xml)
            .map(|inner| NetworkHandle { name: name.to_string(), inner })
            .map_err(|e| LibvirtError::new(format!("define network {name}"), e))
    }

    // Storage.

    pub fn pool(&self, name: &str) -> Result<Option<PoolHandle>> {
        optional(
            self.conn
                .lookup_storage_pool_by_name(name)
                .map(|inner| PoolHandle { name: name.to_string(), inner })
                .map_err(|e| LibvirtError::new(format!("look up storage pool {name}"), e)),
        )
    }

    /// The storage pool, defined as a `dir` pool at `dir` (and built, started and set to
    /// autostart) when it does not exist, started when it is not running; refreshed, so
    /// that images copied into its directory by hand are seen.
    pub fn ensure_pool(&self, name: &str, dir: &Path) -> Result<PoolHandle> {
        let pool = match self.pool(name)? {
            Some(pool) => pool,
            None => {
                tracing::info!(pool = name, dir = %dir.display(), "creating the storage pool");
                let action = format!("create storage pool {name} at {}", dir.display());
                let inner = self
                    .conn
                    .define_storage_pool_xml(&crate::xml::pool_xml(name, dir), 0)
                    .map_err(|e| LibvirtError::new(&action, e))?;
                // Building makes the directory; one that is already there is used as it is.
                if !(self.is_local() && dir.is_dir()) {
                    inner.build(0).map_err(|e| LibvirtError::new(&action, e))?;
                }
                inner.set_autostart(true).map_err(|e| LibvirtError::new(&action, e))?;
                PoolHandle { name: name.to_string(), inner }
            }
        };
        let active = pool.inner.is_active().map_err(|e| LibvirtError::new(format!("check storage pool {name}"), e))?;
        if !active {
            pool.inner.create(0).map_err(|e| LibvirtError::new(format!("start storage pool {name}"), e))?;
        }
        pool.inner.refresh(0).map_err(|e| LibvirtError::new(format!("refresh storage pool {name}"), e))?;
        Ok(pool)
    }
}

/// A domain, with its name for messages.
pub struct DomainHandle {
    name: String,
    inner: Domain,
}

impl DomainHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    fn error(&self, action: &str, error: virt::error::Error) -> LibvirtError {
        LibvirtError::new(format!("{action} domain {}", self.name), error)
    }

    pub fn xml(&self) -> Result<String> {
        self.inner.xml_desc(0).map_err(|e| self.error("read the XML of", e))
    }

    /// The ownership marker, if the domain has one.
    pub fn marker(&self) -> Result<Option<Marker>> {
        read_domain_marker(&self.xml()?)
            .map_err(|e| LibvirtError::other(format!("read the marker of domain {}", self.name), e.to_string()))
    }

    pub fn is_active(&self) -> Result<bool> {
        self.inner.is_active().map_err(|e| self.error("check", e))
    }

    pub fn start(&self) -> Result<()> {
        self.inner.create().map_err(|e| self.error("start", e))
    }

    /// Asks the guest to power off (ACPI); it may ignore the request.
    pub fn shutdown(&self) -> Result<()> {
        self.inner.shutdown().map_err(|e| self.error("shut down", e))
    }

    /// Powers the guest off at once.
    pub fn destroy(&self) -> Result<()> {
        self.inner.destroy().map_err(|e| self.error("destroy", e))
    }

    pub fn undefine(&self) -> Result<()> {
        self.inner.undefine().map_err(|e| self.error("undefine", e))
    }

    /// Saves the running guest's state (memory and devices) to `path`; the domain is shut
    /// off afterwards.
    pub fn save(&self, path: &Path) -> Result<()> {
        let path_c = std::ffi::CString::new(path.display().to_string())
            .map_err(|_| LibvirtError::other(format!("save domain {}", self.name), "a NUL in the path"))?;
        // SAFETY: the domain pointer is valid while `self.inner` lives; the path is a valid
        // C string for the call; a NULL XML and no flags are allowed by virDomainSaveFlags.
        let rc = unsafe { virt::sys::virDomainSaveFlags(self.inner.as_ptr(), path_c.as_ptr(), std::ptr::null(), 0) };
        if rc < 0 {
            return Err(LibvirtError::new(
                format!("save domain {} to {}", self.name, path.display()),
                virt::error::Error::last_error(),
            ));
        }
        Ok(())
    }

    /// Sets the link of the running guest's network interface (`interface_xml`, its
    /// `<interface>` element with a `<link state=.../>`) down or up, as a cable pulled.
    pub fn set_link(&self, interface_xml: &str) -> Result<()> {
        self.inner
            .update_device_flags(interface_xml, virt::sys::VIR_DOMAIN_AFFECT_LIVE)
            .map_err(|e| self.error("set the link of", e))
    }
}

/// A network, with its name for messages.
pub struct NetworkHandle {
    name: String,
    inner: Network,
}

impl NetworkHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    fn error(&self, action: &str, error: virt::error::Error) -> LibvirtError {
        LibvirtError::new(format!("{action} network {}", self.name), error)
    }

    pub fn xml(&self) -> Result<String> {
        self.inner.xml_desc(0).map_err(|e| self.error("read the XML of", e))
    }

    /// The ownership marker (the TXT record), if the network has one.
    pub fn marker(&self) -> Result<Option<Marker>> {
        read_network_marker(&self.xml()?)
            .map_err(|e| LibvirtError::other(format!("read the marker of network {}", self.name), e.to_string()))
    }

    pub fn is_active(&self) -> Result<bool> {
        self.inner.is_active().map_err(|e| self.error("check", e))
    }

    pub fn start(&self) -> Result<()> {
        self.inner.create().map_err(|e| self.error("start", e))
    }

    pub fn set_autostart(&self, autostart: bool) -> Result<()> {
        self.inner.set_autostart(autostart).map_err(|e| self.error("set autostart of", e))
    }

    pub fn destroy(&self) -> Result<()> {
        self.inner.destroy().map_err(|e| self.error("destroy", e))
    }

    pub fn undefine(&self) -> Result<()> {
        self.inner.undefine().map_err(|e| self.error("undefine", e))
    }
}

/// A storage pool, with its name for messages.
pub struct PoolHandle {
    name: String,
    inner: StoragePool,
}

impl PoolHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn volume(&self, name: &str) -> Result<Option<VolumeHandle>> {
        optional(
            self.inner
                .lookup_storage_vol_by_name(name)
                .map(|inner| VolumeHandle { name: name.to_string(), inner })
                .map_err(|e| LibvirtError::new(format!("look up volume {name} in storage pool {}", self.name), e)),
        )
    }

    /// Like [`PoolHandle::volume`], but a missing volume is an error carrying libvirt's
    /// own words for it (`not_found` set).
    pub fn lookup_volume(&self, name: &str) -> Result<VolumeHandle> {
        self.inner
            .lookup_storage_vol_by_name(name)
            .map(|inner| VolumeHandle { name: name.to_string(), inner })
            .map_err(|e| LibvirtError::new(format!("look up volume {name} in storage pool {}", self.name), e))
    }

    pub fn volume_names(&self) -> Result<Vec<String>> {
        self.inner
            .list_volumes()
            .map_err(|e| LibvirtError::new(format!("list the volumes of storage pool {}", self.name), e))
    }

    pub fn create_volume(&self, name: &str, xml: &str) -> Result<VolumeHandle> {
        StorageVol::create_xml(&self.inner, xml, 0)
            .map(|inner| VolumeHandle { name: name.to_string(), inner })
            .map_err(|e| LibvirtError::new(format!("create volume {name} in storage pool {}", self.name), e))
    }
}

/// A storage volume, with its name for messages.
pub struct VolumeHandle {
    name: String,
    inner: StorageVol,
}

impl VolumeHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    fn error(&self, action: &str, error: virt::error::Error) -> LibvirtError {
        LibvirtError::new(format!("{action} volume {}", self.name), error)
    }

    pub fn path(&self) -> Result<String> {
        self.inner.path().map_err(|e| self.error("read the path of", e))
    }

    pub fn capacity_bytes(&self) -> Result<u64> {
        self.inner.info().map(|info| info.capacity).map_err(|e| self.error("read the size of", e))
    }

    /// The volume's format (`qcow2`, `raw`, ...), as libvirt detected it; `raw` when it
    /// names none.
    pub fn format(&self) -> Result<String> {
        let xml = self.inner.xml_desc(0).map_err(|e| self.error("read the XML of", e))?;
        let document = roxmltree::Document::parse(&xml)
            .map_err(|e| LibvirtError::other(format!("read the XML of volume {}", self.name), e.to_string()))?;
        let format = document
            .root_element()
            .children()
            .find(|n| n.has_tag_name("target"))
            .and_then(|target| target.children().find(|n| n.has_tag_name("format")))
            .and_then(|format| format.attribute("type"))
            .unwrap_or("raw");
        Ok(format.to_string())
    }

    pub fn delete(&self) -> Result<()> {
        self.inner.delete(0).map_err(|e| self.error("delete", e))
    }
}
