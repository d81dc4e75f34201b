//! The node runtime's Gatekeeper client (`node/src/gatekeeper.rs`): it joins when the
//! core asks, reports and leaves when it says so, and runs a status loop every status
//! interval from the first successful join on, joining again when the Gatekeeper has
//! forgotten the peer. A request reaches the Gatekeeper one delay after it is sent and is
//! applied to the registry then (by the coordinator, in time order, between windows);
//! the answer takes another delay back. When the Gatekeeper is down or cut off, the call
//! fails after the client's timeouts.

use highway_core::{Command, Phase};
use highway_gatekeeper::store::Auth;
use highway_wire::NodeId;
use highway_wire::gatekeeper::PeerInfo;
use highway_wire::peer::NeighbourEntry;

use super::shard::{Action, Outgoing, Shard};
use super::world::World;
use crate::HostId;
use crate::gatekeeper::{CallKind, GatekeeperSim, Request, Response};
use crate::runtime::{GATEKEEPER_GIVE_UP, WANT_CANDIDATES};

/// Candidates as the runtime hands them to the core: each once, never ourselves, by
/// its first address (all simulated addresses are IPv4).
fn candidates(peers: Vec<PeerInfo>, me: NodeId) -> Vec<NeighbourEntry> {
    peers
        .into_iter()
        .filter(|p| p.id != me)
        .filter_map(|p| {
            p.addrs.first().map(|addr| NeighbourEntry {
                id: p.id,
                addr: *addr,
                dialable: p.reachable,
            })
        })
        .collect()
}

fn u16_of(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

impl Shard {
    fn peer_info(&self, h: HostId) -> PeerInfo {
        let peer = &self.host(h).peer;
        PeerInfo {
            id: peer.id(),
            addrs: vec![peer.addr()],
            neighbours: u16_of(peer.dialable_degree()),
            capacity: u16_of(peer.config().max_degree),
            reachable: peer.dialable(),
        }
    }

    /// A timestamp newer than any this client used (`GatekeeperClient::next_ts`).
    fn next_ts(&mut self, h: HostId) -> u64 {
        let now = GatekeeperSim::unix_ms(self.now);
        let session = &mut self.host_mut(h).session;
        let ts = now.max(session.last_ts_ms + 1);
        session.last_ts_ms = ts;
        ts
    }

    /// The lease while it is good for two more status intervals, else a signature
    /// (`GatekeeperClient::usable_lease`).
    fn credentials(&mut self, world: &World, h: HostId) -> Auth {
        let margin = world.gatekeeper.status_interval * 2;
        let usable = self
            .host(h)
            .session
            .lease
            .filter(|l| l.expires > self.now + margin);
        match usable {
            Some(lease) => Auth::Lease {
                token_hash: lease.token_hash,
            },
            None => Auth::Signed {
                ts_ms: self.next_ts(h),
            },
        }
    }

    fn call(&mut self, world: &World, h: HostId, req: Request) {
        let epoch = self.host(h).epoch;
        if !world.gatekeeper_up || world.net.gatekeeper_cut(h) {
            let resp = Box::new(Response::NoAnswer(req.kind()));
            let at = self.now + GATEKEEPER_GIVE_UP;
            let answer = Action::GatekeeperAnswers {
                host: h,
                epoch,
                resp,
            };
            self.agenda.push(at, answer);
            return;
        }
        let at = self.now + world.net.to_gatekeeper(h, &mut self.rng);
        let req = Box::new(req);
        self.outbox.push((
            at,
            Outgoing::Gatekeeper {
                host: h,
                epoch,
                req,
            },
        ));
    }

    fn join_request(&mut self, h: HostId, want: u16, for_core: bool) -> Request {
        Request::Join {
            info: self.peer_info(h),
            ts_ms: self.next_ts(h),
            want,
            for_core,
        }
    }

    /// The core's `GatekeeperJoin`.
    pub(super) fn gatekeeper_join(&mut self, world: &World, h: HostId) {
        let req = self.join_request(h, WANT_CANDIDATES, true);
        self.call(world, h, req);
    }

    pub(super) fn gatekeeper_report(&mut self, world: &World, h: HostId, target: NodeId) {
        let req = Request::Report {
            reporter: self.host(h).peer.id(),
            target,
            auth: self.credentials(world, h),
        };
        self.call(world, h, req);
    }

    pub(super) fn gatekeeper_leave(&mut self, world: &World, h: HostId) {
        let req = Request::Leave {
            id: self.host(h).peer.id(),
            auth: self.credentials(world, h),
        };
        self.call(world, h, req);
    }

    fn next_status(&mut self, world: &World, h: HostId) {
        let epoch = self.host(h).epoch;
        let at = self.now + world.gatekeeper.status_interval;
        self.agenda.push(at, Action::StatusTick { host: h, epoch });
    }

    pub(super) fn gatekeeper_answers(
        &mut self,
        world: &World,
        h: HostId,
        epoch: u32,
        resp: Response,
    ) {
        if !self.current(h, epoch) {
            return;
        }
        match resp {
            Response::Joined {
                candidates: peers,
                lease,
                for_core,
            } => {
                let session = &mut self.host_mut(h).session;
                session.lease = Some(lease);
                if !for_core {
                    self.next_status(world, h);
                    return;
                }
                if !session.status_loop {
                    session.status_loop = true;
                    self.next_status(world, h);
                }
                let me = self.host(h).peer.id();
                self.command(world, h, Command::Candidates(candidates(peers, me)));
            }
            Response::JoinRefused { for_core: true } | Response::NoAnswer(CallKind::CoreJoin) => {
                self.command(world, h, Command::GatekeeperFailed);
            }
            Response::StatusAccepted { lease } => {
                if let Some(lease) = lease {
                    self.host_mut(h).session.lease = Some(lease);
                }
                self.next_status(world, h);
            }
            Response::Forgotten => {
                let req = self.join_request(h, 0, false);
                self.call(world, h, req);
            }
            Response::JoinRefused { for_core: false }
            | Response::StatusRefused
            | Response::NoAnswer(CallKind::Rejoin | CallKind::Status) => {
                self.next_status(world, h);
            }
            Response::Done | Response::NoAnswer(CallKind::Other) => {}
        }
    }

    /// One round of the status loop.
    pub(super) fn status_tick(&mut self, world: &World, h: HostId, epoch: u32) {
        if !self.current(h, epoch) {
            return;
        }
        let host = self.host_mut(h);
        if host.peer.phase() != Phase::Running {
            host.session.status_loop = false;
            return;
        }
        let neighbour_ids = host.links.iter().map(|(id, _)| *id).collect();
        let auth = self.credentials(world, h);
        let ts_ms = match auth {
            Auth::Signed { ts_ms } => ts_ms,
            Auth::Lease { .. } => self.next_ts(h),
        };
        let req = Request::Status {
            info: self.peer_info(h),
            ts_ms,
            neighbour_ids,
            auth,
        };
        self.call(world, h, req);
    }
}
