//! Talking to the Gatekeeper on the core's behalf: join for candidates when the core asks,
//! report failed neighbours, and keep the entry alive with a status every interval.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use highway_core::{Command, Phase};
use highway_gatekeeper::{ClientConfig, GatekeeperClient};
use highway_wire::gatekeeper::{ErrorCode, PeerInfo};
use highway_wire::peer::NeighbourEntry;
use highway_wire::{NodeId, PeerAddr};
use tokio::sync::{mpsc, oneshot};

use crate::owner::{Counters, GatekeeperVerdict, Msg};

/// Candidates asked for in a join.
pub const WANT_CANDIDATES: u16 = 8;
/// Bounds on the status interval the Gatekeeper asks for, so a bogus answer can neither
/// spin the loop nor silence it.
const MIN_STATUS_INTERVAL: Duration = Duration::from_millis(10);
const MAX_STATUS_INTERVAL: Duration = Duration::from_secs(600);

/// Short timeouts: the core retries a failed join itself, with backoff, and a status
/// is sent again one interval later.
pub fn client_config() -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_secs(2),
        retries: 1,
        backoff: Duration::from_millis(100),
        ca_file: None,
        local_address: None,
    }
}

/// What each Gatekeeper call needs.
#[derive(Debug, Clone)]
pub(crate) struct GatekeeperCall {
    pub client: Arc<GatekeeperClient>,
    pub capacity: u16,
    pub counters: Arc<Counters>,
}

fn clamp_interval(ms: u64) -> Duration {
    Duration::from_millis(ms).clamp(MIN_STATUS_INTERVAL, MAX_STATUS_INTERVAL)
}

fn degree16(degree: usize) -> u16 {
    u16::try_from(degree).unwrap_or(u16::MAX)
}

/// Each candidate once, by its first address of our IP family (else its first address).
pub(crate) fn candidates(
    peers: Vec<PeerInfo>,
    me: NodeId,
    my_addr: PeerAddr,
) -> Vec<NeighbourEntry> {
    peers
        .into_iter()
        .filter(|p| p.id != me)
        .filter_map(|p| {
            let same_family = p
                .addrs
                .iter()
                .find(|a| a.ip.is_ipv4() == my_addr.ip.is_ipv4());
            same_family.or(p.addrs.first()).map(|addr| NeighbourEntry {
                id: p.id,
                addr: *addr,
                dialable: p.reachable,
            })
        })
        .collect()
}

impl GatekeeperCall {
    /// Joins and turns the answer into the message for the owner task.
    pub async fn join_for_candidates(&self, addr: PeerAddr, degree: usize) -> Msg {
        match self
            .client
            .join(&[addr], degree16(degree), self.capacity, WANT_CANDIDATES)
            .await
        {
            Ok(resp) => {
                let candidates = candidates(resp.candidates, self.client.id(), addr);
                tracing::debug!(candidates = candidates.len(), "joined the Gatekeeper");
                answered(&self.counters);
                Msg::Joined {
                    candidates,
                    status_interval: clamp_interval(resp.status_interval_ms),
                    verdict: GatekeeperVerdict {
                        observed_ip: resp.observed_ip,
                        dialable: resp.reachable,
                    },
                }
            }
            Err(e) => {
                self.counters
                    .gatekeeper_errors
                    .fetch_add(1, Ordering::Relaxed);
                let first = self.counters.note_gatekeeper_error(format!("join: {e}"));
                failed(first, "asking the Gatekeeper for candidates failed", &e);
                Msg::Command(Command::GatekeeperFailed)
            }
        }
    }

    pub async fn report(&self, target: NodeId) {
        match self.client.report(target).await {
            Ok(_) => {
                answered(&self.counters);
                tracing::info!(peer = %target.short(), "reported a failed neighbour");
            }
            Err(e) => {
                self.counters
                    .gatekeeper_errors
                    .fetch_add(1, Ordering::Relaxed);
                let first = self.counters.note_gatekeeper_error(format!("report: {e}"));
                failed(first, "reporting a failed neighbour failed", &e);
            }
        }
    }
}

/// Sends a status every interval (the Gatekeeper's figure, from its last answer) until
/// the owner task is gone or the node left. When the Gatekeeper has forgotten us
/// (expired, or restarted without its journal) it joins again; those candidates are not
/// needed, since the core asks for its own when it lacks neighbours.
pub(crate) async fn status_loop(call: GatekeeperCall, owner: mpsc::Sender<Msg>, first: Duration) {
    let mut interval = first;
    loop {
        tokio::time::sleep(interval).await;
        let (reply, snapshot) = oneshot::channel();
        if owner.send(Msg::Snapshot { reply }).await.is_err() {
            return;
        }
        let Ok(snap) = snapshot.await else { return };
        if snap.phase != Phase::Running {
            return;
        }
        let ids: Vec<NodeId> = snap.neighbours.iter().map(|n| n.id).collect();
        // Against `max_degree`, which bounds neighbours that can be dialled: those behind
        // NATs have slots of their own.
        let degree = degree16(snap.neighbours.iter().filter(|n| n.dialable).count());
        let error = match call
            .client
            .status(&[snap.addr], degree, call.capacity, &ids)
            .await
        {
            Ok(resp) => {
                answered(&call.counters);
                interval = clamp_interval(resp.status_interval_ms);
                let verdict = GatekeeperVerdict {
                    observed_ip: resp.observed_ip,
                    dialable: resp.reachable,
                };
                if owner.send(Msg::Verdict(verdict)).await.is_err() {
                    return;
                }
                continue;
            }
            Err(e) => e,
        };
        call.counters
            .gatekeeper_errors
            .fetch_add(1, Ordering::Relaxed);
        let first = call
            .counters
            .note_gatekeeper_error(format!("status: {error}"));
        if !matches!(
            error.code(),
            Some(ErrorCode::Expired | ErrorCode::UnknownPeer)
        ) {
            failed(first, "status to the Gatekeeper failed", &error);
            continue;
        }
        tracing::warn!(error = %error, "the Gatekeeper forgot this peer; joining again");
        match call
            .client
            .join(&[snap.addr], degree, call.capacity, 0)
            .await
        {
            Ok(resp) => interval = clamp_interval(resp.status_interval_ms),
            Err(e) => {
                call.counters
                    .gatekeeper_errors
                    .fetch_add(1, Ordering::Relaxed);
                let first = call.counters.note_gatekeeper_error(format!("join: {e}"));
                failed(first, "joining the Gatekeeper again failed", &e);
            }
        }
    }
}

/// Logs a failed Gatekeeper request: the first of a run as a warning, saying that the
/// repeats are quieter; the repeats at debug level (`runtime.gatekeeper_errors` counts
/// them all, `highway status` shows the last).
fn failed(first: bool, what: &str, error: &dyn std::fmt::Display) {
    if first {
        tracing::warn!(
            error = %error,
            "{what}; until the Gatekeeper answers again, repeats are logged at debug level"
        );
    } else {
        tracing::debug!(error = %error, "{what}");
    }
}

/// Notes a Gatekeeper answer, saying so when it ends a run of failures.
fn answered(counters: &Counters) {
    if counters.note_gatekeeper_answer() {
        tracing::info!("the Gatekeeper answers again");
    }
}
