//! The one way clusters are started and stopped, for sessions and for operators alike:
//! pick a hypervisor with room on the cluster board, send it the command with a bounded
//! wait ([`Peers::send`]: a hypervisor whose connection is stuck never hangs the caller), and mark the
//! board when the command could not be sent. What comes back (the cluster's states) is
//! the board's business ([`crate::clusters`]).

use std::net::IpAddr;

use tracing::info;
use xrdtest_defs::Cluster;
use xrdtest_proto::{ClusterState, FromMaster};

use crate::clusters::{start_message, ClusterBoard, ClusterOwner, ReserveError};
use crate::peer_auth::PeerAuth;
use crate::peers::Peers;

/// What cluster commands need: the board, the connections, and what VMs are told.
pub struct ClusterControl<'a> {
    pub board: &'a ClusterBoard,
    pub peers: &'a Peers,
    /// Grants each VM its enrollment token, and takes them back at the stop.
    pub auth: &'a PeerAuth,
    /// `[clusters] master_address`: overrides the address the hypervisor's connection saw.
    pub master_address: Option<IpAddr>,
    pub master_port: u16,
}

/// Why a start was not sent.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Reserve(#[from] ReserveError),
    /// The hypervisor was reserved (and is marked in error) but never got the command.
    #[error("hypervisor {hypervisor} disconnected before the cluster could be sent")]
    NotSent { hypervisor: String },
}

/// A start that was sent: to whom, and the master address the VMs were told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartSent {
    pub hypervisor: String,
    pub master_ip: Option<IpAddr>,
}

impl ClusterControl<'_> {
    /// Reserves the connected hypervisor with room (most free memory) and sends it the
    /// start; `requested_by` is a session id or `manual`.
    pub async fn start(
        &self,
        cluster: &Cluster,
        owner: ClusterOwner,
        requested_by: String,
    ) -> Result<StartSent, StartError> {
        let (hypervisor, connection_ip) = self.board.reserve(cluster, owner)?;
        let master_ip = self.master_address.or(connection_ip);
        let credentials = self.auth.grant_cluster(&cluster.name, cluster.hosts.iter().map(|h| h.name.clone()));
        let message = start_message(cluster, master_ip, self.master_port, requested_by, credentials);
        if !self.peers.send(&hypervisor, message).await {
            let error = StartError::NotSent { hypervisor };
            self.board.mark(&cluster.name, ClusterState::Error, &error.to_string());
            return Err(error);
        }
        info!(cluster = %cluster.name, hypervisor = %hypervisor, ?master_ip, "cluster sent to the hypervisor");
        Ok(StartSent { hypervisor, master_ip })
    }

    /// Asks the hypervisor that runs `cluster` to save its VMs' state for later sessions (a
    /// warm cluster); false when it could not be sent.
    pub async fn save(&self, cluster: &str, hypervisor: &str) -> bool {
        self.peers.send(hypervisor, FromMaster::SaveCluster { cluster: cluster.to_string() }).await
    }

    /// Sends a stop to the hypervisor that runs `cluster` and marks it `stop_command_sent`
    /// with `note`; false (and nothing marked) when it could not be sent.
    pub async fn stop(&self, cluster: &str, hypervisor: &str, note: &str) -> bool {
        let sent = self.peers.send(hypervisor, FromMaster::StopCluster { cluster: cluster.to_string() }).await;
        if sent {
            self.board.mark(cluster, ClusterState::StopCommandSent, note);
            // Its VMs are going: what let them in goes now.
            self.auth.end_cluster(cluster);
        }
        sent
    }
}
