//! What ends or restarts a peer's process: crashes, graceful leaves, restarts.

use ed25519_dalek::SigningKey;
use highway_core::{Command, Peer};

use super::shard::Shard;
use super::world::World;
use crate::HostId;
use crate::host::{Life, Session};
use crate::network;

impl Shard {
    /// Ends `h`'s process as `life` says, forgetting what the runtime held. What is on the
    /// agenda for it becomes stale (its epoch moves on).
    fn end_process(&mut self, h: HostId, life: Life) {
        let host = self.host_mut(h);
        if !host.is_up() {
            return;
        }
        host.life = life;
        host.epoch += 1;
        host.timer = None;
        host.last_wake = None;
        host.links.clear();
        host.conns.clear();
        host.session = Session::default();
        self.up -= 1;
        // Its core's counters end with it: kept in the shard's.
        let core = self.host(h).peer.stats().clone();
        self.stats.absorb(&core);
    }

    /// The machine dies at once: no goodbye, no TCP reset; what is in flight to it is
    /// lost.
    pub fn crash(&mut self, h: HostId) {
        if self.host(h).is_up() {
            self.stats.crashes += 1;
            self.end_process(h, Life::Crashed);
        }
    }

    /// The peer leaves gracefully (Leave to its neighbours, leave to the Gatekeeper) and
    /// its process exits.
    pub fn leave(&mut self, world: &World, h: HostId) {
        if self.host(h).is_up() {
            self.stats.leaves += 1;
            self.command(world, h, Command::Leave);
            self.end_process(h, Life::Exited);
        }
    }

    /// A new process on `h`'s machine, with the same identity and address and no other
    /// state, joins at once (a running one is crashed first).
    pub fn restart(&mut self, world: &World, h: HostId, peer_seed: u64) {
        self.crash(h);
        let now = world.clock.instant(self.now);
        let started = self.now;
        let behind_nat = world.is_behind_nat(h);
        let host = self.host_mut(h);
        let config = if behind_nat {
            world.core.clone()
        } else {
            world.public_core.clone()
        };
        host.peer = Peer::new(
            config,
            SigningKey::from_bytes(&host.key_seed),
            network::addr_of(h),
            peer_seed,
            now,
        );
        host.peer.set_dialable(!behind_nat);
        host.life = Life::Up;
        host.epoch += 1;
        host.started = started;
        self.up += 1;
        self.stats.restarts += 1;
        self.stats.joins += 1;
        self.command(world, h, Command::Join);
    }
}
