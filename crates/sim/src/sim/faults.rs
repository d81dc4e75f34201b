//! What a scenario does to the world: crashes, graceful leaves, restarts, loss,
//! partitions and a Gatekeeper outage.

use ed25519_dalek::SigningKey;
use highway_core::{Command, Peer};
use rand::Rng;

use super::Sim;
use crate::HostId;
use crate::host::{Life, Session};
use crate::network;

impl Sim {
    /// Ends `h`'s process as `life` says, forgetting what the runtime held. What is on the
    /// agenda for it becomes stale (its generation moves on).
    fn end_process(&mut self, h: HostId, life: Life) {
        let host = &mut self.hosts[h.index()];
        if !host.is_up() {
            return;
        }
        host.life = life;
        host.epoch += 1;
        host.timer = None;
        host.last_wake = None;
        host.links.clear();
        host.early.clear();
        host.dials = 0;
        host.inbound = 0;
        host.session = Session::default();
        self.up -= 1;
    }

    /// The machine dies at once: no goodbye, no TCP reset; what is in flight to it is
    /// lost.
    pub fn crash(&mut self, h: HostId) {
        if self.is_up(h) {
            self.stats.crashes += 1;
            self.end_process(h, Life::Crashed);
        }
    }

    /// The peer leaves gracefully (Leave to its neighbours, leave to the Gatekeeper) and
    /// its process exits.
    pub fn leave(&mut self, h: HostId) {
        if self.is_up(h) {
            self.stats.leaves += 1;
            self.command(h, Command::Leave);
            self.end_process(h, Life::Exited);
        }
    }

    /// A new process on `h`'s machine, with the same identity and address and no other
    /// state, joins at once (a running one is crashed first).
    pub fn restart(&mut self, h: HostId) {
        self.crash(h);
        let seed: u64 = self.rng.random();
        let now = self.clock.instant(self.now);
        let host = &mut self.hosts[h.index()];
        host.peer = Peer::new(
            self.core.clone(),
            SigningKey::from_bytes(&host.key_seed),
            network::addr_of(h),
            seed,
            now,
        );
        host.life = Life::Up;
        host.epoch += 1;
        host.started = self.now;
        self.up += 1;
        self.stats.restarts += 1;
        self.stats.joins += 1;
        self.command(h, Command::Join);
    }

    /// Probability that a datagram (or TCP segment, which is then retransmitted) is lost.
    pub fn set_loss(&mut self, loss: f64) {
        self.net.loss = loss;
    }

    pub fn loss(&self) -> f64 {
        self.net.loss
    }

    /// Puts `h` in partition group `group` (every host starts in group 0, with the
    /// Gatekeeper).
    pub fn set_group(&mut self, h: HostId, group: u16) {
        self.net.set_group(h, group);
    }

    /// Nothing from group `from` reaches group `to` any more (a one-way partition).
    pub fn cut_one_way(&mut self, from: u16, to: u16) {
        self.net.cut_groups(from, to);
    }

    /// Nothing passes between groups `a` and `b`, either way.
    pub fn cut(&mut self, a: u16, b: u16) {
        self.net.cut_groups(a, b);
        self.net.cut_groups(b, a);
    }

    /// Lifts every cut.
    pub fn heal(&mut self) {
        self.net.heal();
    }

    /// Takes the Gatekeeper down (calls go unanswered) or brings it back; its registry
    /// survives, as with a journaled store.
    pub fn set_gatekeeper_up(&mut self, up: bool) {
        self.gatekeeper.up = up;
    }
}
