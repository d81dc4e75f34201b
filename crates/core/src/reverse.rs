//! Reverse connections: reaching a neighbour that cannot be dialled.
//!
//! A relay (or a downloader, through a relay) wants a TCP connection to a peer behind a
//! NAT. It cannot open one, but the peer can: the relay sends a [`PeerMsg::Reverse`] over
//! their link naming a token and an address, and the peer connects out there and presents
//! the token ([`highway_wire::peer::reverse::ReverseHello`]). The runtime moves the bytes;
//! here is only who may ask whom, and how often.

use std::net::SocketAddr;

use highway_wire::NodeId;
use highway_wire::peer::reverse::ReverseHello;
use highway_wire::peer::{PeerMsg, Relay};

use crate::api::Event;
use crate::peer::Peer;

/// Why a reverse request was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReverseError {
    #[error("this node has no link with that peer")]
    NotLinked,
    #[error("that address cannot be dialled")]
    Undialable,
    #[error("the link has no path yet (the peer has not spoken since it linked)")]
    NoPath,
}

impl Peer {
    /// Asks neighbour `peer` to open a TCP connection to `to` and present `token`.
    pub fn request_reverse(
        &mut self,
        peer: &NodeId,
        token: [u8; 16],
        to: SocketAddr,
    ) -> Result<(), ReverseError> {
        let link = self.links.get(peer).ok_or(ReverseError::NotLinked)?;
        if link.path.is_none() {
            return Err(ReverseError::NoPath);
        }
        if to.port() == 0 || highway_wire::check_dialable_ip(to.ip()).is_err() {
            return Err(ReverseError::Undialable);
        }
        self.stats.reverse_requests_sent += 1;
        self.send(peer, &PeerMsg::Reverse { token, to });
        Ok(())
    }

    /// A neighbour asks us to connect out. Within its budget and to a dialable address,
    /// the runtime is told to do it ([`Event::ReverseConnect`]).
    pub(crate) fn on_reverse(&mut self, from: NodeId, token: [u8; 16], to: SocketAddr) {
        let Some(link) = self.links.get_mut(&from) else {
            return;
        };
        if link.reverse_budget == 0 {
            self.stats.reverse_refused_budget += 1;
            return;
        }
        link.reverse_budget -= 1;
        if to.port() == 0 || highway_wire::check_dialable_ip(to.ip()).is_err() {
            self.stats.reverse_refused_address += 1;
            return;
        }
        self.stats.reverse_requests_received += 1;
        let hello = ReverseHello::sign(&self.key, token).encode_framed();
        self.emit(Event::ReverseConnect {
            token,
            to,
            via: from,
            hello,
        });
    }

    pub(crate) fn refill_reverse_budgets(&mut self) {
        let budget = self.config.reverse_per_interval;
        for link in self.links.values_mut() {
            link.reverse_budget = budget;
        }
    }

    /// Up to [`highway_wire::peer::search::MAX_HIT_RELAYS`] dialable neighbours that have
    /// spoken on their link (so a reverse request reaches us), for hits of a peer that
    /// cannot be dialled. Sorted by id, so every hit of one search names the same ones.
    pub(crate) fn relays_for_hits(&self) -> Vec<Relay> {
        let mut relays: Vec<Relay> = self
            .links
            .values()
            .filter(|l| l.dialable && l.heard)
            .map(|l| Relay {
                id: l.id,
                addr: SocketAddr::new(l.addr.ip, l.addr.tcp),
            })
            .collect();
        relays.sort_by_key(|r| r.id);
        relays.truncate(highway_wire::peer::search::MAX_HIT_RELAYS);
        relays
    }
}
