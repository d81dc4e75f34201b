//! UDP datagrams: the outer frame every peer datagram shares.
//!
//! ```text
//! magic "HW" | version 2 | kind | kind-specific fields
//! ```
//!
//! Kinds: `LINK` (authenticated, between linked neighbours), `PROBE` and `PROBE_ACK` (a
//! witness checking on a peer it has no link with), `NOT_NEIGHBOUR` (the answer to link
//! traffic for a link the receiver does not have). Only `PROBE` is accepted from
//! strangers without proof, and it must be padded to [`MIN_PROBE_LEN`] bytes so that its
//! answer is always smaller than it: no amplification.

use ed25519_dalek::{Signer, SigningKey};

use super::codec::{DecodeError, Reader, Writer};
use super::message::PeerMsg;
use crate::NodeId;

pub const MAGIC: [u8; 2] = *b"HW";
/// Version 2 added reachability (a flags byte per listed peer and in the hello) and the
/// observed address in heartbeat acks; version 1 peers are refused.
pub const VERSION: u8 = 2;
/// Largest datagram sent or accepted.
pub const MAX_DATAGRAM: usize = 1200;
/// Bytes of the truncated BLAKE3 keyed hash that authenticates a link datagram.
pub const TAG_LEN: usize = 16;
/// Bytes before a link datagram's message: magic, version, kind, link id, counter.
pub const LINK_HEADER_LEN: usize = 4 + 8 + 8;
/// Smallest accepted stranger probe (the answer is 108 bytes).
pub const MIN_PROBE_LEN: usize = 256;
/// Link datagrams are zero-padded to at least this size, so that even a spoofed one
/// is larger than the signed [`NotNeighbour`] (108 bytes) it may provoke.
pub const MIN_LINK_LEN: usize = 128;

const PROBE_ACK_DOMAIN: &[u8] = b"highway-probe-ack-v1\0";
const NOT_NEIGHBOUR_DOMAIN: &[u8] = b"highway-not-neighbour-v1\0";

mod kind {
    pub const LINK: u8 = 0x01;
    pub const PROBE: u8 = 0x02;
    pub const PROBE_ACK: u8 = 0x03;
    pub const NOT_NEIGHBOUR: u8 = 0x04;
}

/// A link's key for one direction (see the handshake).
pub type LinkKey = [u8; 32];

/// A decoded datagram. Link datagrams are not yet authenticated: the receiver looks up
/// the link by `link_id` and calls [`LinkFrame::open`] with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datagram<'a> {
    Link(LinkFrame<'a>),
    Probe(Probe),
    ProbeAck(ProbeAck),
    NotNeighbour(NotNeighbour),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkFrame<'a> {
    /// The receiver's id for this link, chosen by the receiver during the handshake.
    pub link_id: u64,
    /// Per-direction counter, strictly increasing: the receiver refuses repeats.
    pub counter: u64,
    authenticated: &'a [u8],
    body: &'a [u8],
    tag: [u8; TAG_LEN],
}

fn tag(key: &LinkKey, bytes: &[u8]) -> [u8; TAG_LEN] {
    let full = blake3::keyed_hash(key, bytes);
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&full.as_bytes()[..TAG_LEN]);
    out
}

fn equal_in_constant_time(a: &[u8; TAG_LEN], b: &[u8; TAG_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl LinkFrame<'_> {
    /// Checks the tag with `key`, then decodes the message.
    pub fn open(&self, key: &LinkKey) -> Result<PeerMsg, DecodeError> {
        if !equal_in_constant_time(&tag(key, self.authenticated), &self.tag) {
            return Err(DecodeError::BadTag);
        }
        PeerMsg::decode_padded(self.body)
    }
}

fn header(w: &mut Writer, kind: u8) {
    w.bytes(&MAGIC);
    w.u8(VERSION);
    w.u8(kind);
}

/// Encodes `msg` as a link datagram authenticated with `key`.
pub fn seal(link_id: u64, counter: u64, msg: &PeerMsg, key: &LinkKey) -> Vec<u8> {
    let mut w = Writer::with_capacity(256);
    header(&mut w, kind::LINK);
    w.u64(link_id);
    w.u64(counter);
    msg.encode(&mut w);
    if w.buf.len() + TAG_LEN < MIN_LINK_LEN {
        w.buf.resize(MIN_LINK_LEN - TAG_LEN, 0);
    }
    let t = tag(key, &w.buf);
    w.bytes(&t);
    w.buf
}

/// "Are you alive?" from a witness with no link to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub nonce: u64,
    pub requester: NodeId,
    /// Who the requester believes it is talking to; anyone else ignores the probe.
    pub target: NodeId,
}

/// The target's signed answer to a [`Probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeAck {
    pub nonce: u64,
    pub responder: NodeId,
    pub signature: [u8; 64],
}

impl ProbeAck {
    fn message(nonce: u64, responder: &NodeId, requester: &NodeId) -> Vec<u8> {
        let mut w = Writer::with_capacity(96);
        w.bytes(PROBE_ACK_DOMAIN);
        w.u64(nonce);
        w.node_id(responder);
        w.node_id(requester);
        w.buf
    }

    pub fn sign(key: &SigningKey, probe: &Probe) -> Self {
        let responder = NodeId::from_key(&key.verifying_key());
        let signature = key.sign(&Self::message(probe.nonce, &responder, &probe.requester));
        Self {
            nonce: probe.nonce,
            responder,
            signature: signature.to_bytes(),
        }
    }

    /// True when this answers `requester`'s probe and was signed by `responder`.
    pub fn verify(&self, requester: &NodeId) -> bool {
        self.responder.verify(
            &Self::message(self.nonce, &self.responder, requester),
            &self.signature,
        )
    }
}

/// "I have no link `link_id` with you": drop your half of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotNeighbour {
    /// The link id the offending datagram carried (the responder's id for the link).
    pub link_id: u64,
    pub responder: NodeId,
    pub signature: [u8; 64],
}

impl NotNeighbour {
    fn message(link_id: u64, responder: &NodeId) -> Vec<u8> {
        let mut w = Writer::with_capacity(64);
        w.bytes(NOT_NEIGHBOUR_DOMAIN);
        w.u64(link_id);
        w.node_id(responder);
        w.buf
    }

    pub fn sign(key: &SigningKey, link_id: u64) -> Self {
        let responder = NodeId::from_key(&key.verifying_key());
        let signature = key.sign(&Self::message(link_id, &responder));
        Self {
            link_id,
            responder,
            signature: signature.to_bytes(),
        }
    }

    pub fn verify(&self) -> bool {
        self.responder.verify(
            &Self::message(self.link_id, &self.responder),
            &self.signature,
        )
    }
}

impl Datagram<'_> {
    /// Encodes a non-link datagram (link datagrams are made by [`seal`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(MIN_PROBE_LEN);
        match self {
            Self::Link(frame) => {
                w.bytes(frame.authenticated);
                w.bytes(&frame.tag);
            }
            Self::Probe(p) => {
                header(&mut w, kind::PROBE);
                w.u64(p.nonce);
                w.node_id(&p.requester);
                w.node_id(&p.target);
                w.buf.resize(MIN_PROBE_LEN, 0);
            }
            Self::ProbeAck(a) => {
                header(&mut w, kind::PROBE_ACK);
                w.u64(a.nonce);
                w.node_id(&a.responder);
                w.bytes(&a.signature);
            }
            Self::NotNeighbour(n) => {
                header(&mut w, kind::NOT_NEIGHBOUR);
                w.u64(n.link_id);
                w.node_id(&n.responder);
                w.bytes(&n.signature);
            }
        }
        w.buf
    }
}

/// Decodes the outer frame of a datagram. Never panics, never allocates more than the
/// input's size.
pub fn decode(bytes: &[u8]) -> Result<Datagram<'_>, DecodeError> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(DecodeError::TooLong {
            len: bytes.len(),
            max: MAX_DATAGRAM,
        });
    }
    let mut r = Reader::new(bytes);
    if r.array::<2>("magic")? != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    match r.u8("datagram kind")? {
        kind::LINK => {
            let link_id = r.u64("link id")?;
            let counter = r.u64("counter")?;
            if r.remaining() < TAG_LEN + 1 {
                return Err(DecodeError::Truncated("link message"));
            }
            let split = bytes.len() - TAG_LEN;
            let mut tag = [0u8; TAG_LEN];
            tag.copy_from_slice(&bytes[split..]);
            Ok(Datagram::Link(LinkFrame {
                link_id,
                counter,
                authenticated: &bytes[..split],
                body: &bytes[LINK_HEADER_LEN..split],
                tag,
            }))
        }
        kind::PROBE => {
            if bytes.len() < MIN_PROBE_LEN {
                return Err(DecodeError::ProbeTooShort {
                    len: bytes.len(),
                    min: MIN_PROBE_LEN,
                });
            }
            // The rest is padding, whatever it holds.
            Ok(Datagram::Probe(Probe {
                nonce: r.u64("nonce")?,
                requester: r.node_id("requester")?,
                target: r.node_id("target")?,
            }))
        }
        kind::PROBE_ACK => {
            let ack = ProbeAck {
                nonce: r.u64("nonce")?,
                responder: r.node_id("responder")?,
                signature: r.array("signature")?,
            };
            r.finish()?;
            Ok(Datagram::ProbeAck(ack))
        }
        kind::NOT_NEIGHBOUR => {
            let nn = NotNeighbour {
                link_id: r.u64("link id")?,
                responder: r.node_id("responder")?,
                signature: r.array("signature")?,
            };
            r.finish()?;
            Ok(Datagram::NotNeighbour(nn))
        }
        other => Err(DecodeError::UnknownKind {
            what: "datagram",
            kind: other,
        }),
    }
}
