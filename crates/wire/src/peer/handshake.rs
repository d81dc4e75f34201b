//! The neighbour handshake, over TCP: both sides prove their identity key and agree on a
//! per-link secret (signed ephemeral X25519, in the manner of SIGMA).
//!
//! Flow:
//! 1. Initiator → responder: [`Hello`] (its id and address, an ephemeral X25519 key, and
//!    whether it wants a link or only the responder's neighbour list).
//! 2. Responder → initiator: [`Welcome`] (its id, its ephemeral key, its decision, its
//!    neighbours, and the link id it will recognise), signed over the transcript so far.
//! 3. Initiator → responder, only when a link was accepted: [`Confirm`] (the link id the
//!    initiator will recognise), signed over the whole transcript.
//!
//! Both sides then derive one key per direction from the X25519 secret and the transcript
//! hash. Frames are a 4-byte big-endian length and a payload of at most [`MAX_FRAME`] bytes.

use ed25519_dalek::{Signer, SigningKey};
use x25519_dalek::{PublicKey, StaticSecret};

use super::codec::{DecodeError, Reader, Writer};
use super::datagram::{LinkKey, MAGIC, VERSION};
use super::message::{FLAG_DIALABLE, FLAG_STREAM, NeighbourEntry, read_entries, write_entries};
use crate::{NodeId, PeerAddr};

/// Largest handshake frame payload.
pub const MAX_FRAME: usize = 2048;
const WELCOME_DOMAIN: &[u8] = b"highway-welcome-v1\0";
const CONFIRM_DOMAIN: &[u8] = b"highway-confirm-v1\0";
const KEY_I2R: &str = "highway link v1 initiator to responder";
const KEY_R2I: &str = "highway link v1 responder to initiator";

mod kind {
    pub const HELLO: u8 = 0x21;
    pub const WELCOME: u8 = 0x22;
    pub const CONFIRM: u8 = 0x23;
    pub const ESTABLISHED: u8 = 0x24;
}

/// The responder's last frame: the link is installed on its side, so the initiator may
/// start sending datagrams without provoking a "not your neighbour".
pub fn established_frame() -> Vec<u8> {
    let mut w = Writer::with_capacity(4);
    frame_header(&mut w, kind::ESTABLISHED);
    frame(&w.buf)
}

/// True when `payload` is the [`established_frame`].
pub fn is_established(payload: &[u8]) -> bool {
    let mut r = Reader::new(payload);
    matches!(read_header(&mut r), Ok(kind::ESTABLISHED)) && r.finish().is_ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Become neighbours.
    Link = 1,
    /// Only learn whether the responder has a free slot, and its neighbours (for the
    /// breadth-first search past a full candidate).
    Query = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Accept = 1,
    /// No free slot; the neighbour list says where to look next.
    Full = 2,
    /// Not now (already linked, leaving, or asked by itself).
    Reject = 3,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub initiator: NodeId,
    pub initiator_addr: PeerAddr,
    /// The initiator can be dialled at `initiator_addr`. When false (it is behind a NAT)
    /// the responder keeps the link but never gives the address to anyone as dialable.
    pub initiator_dialable: bool,
    /// The initiator asks to carry the link's datagrams over this TCP connection, kept
    /// open after the handshake, because UDP does not get through from where it is.
    pub stream: bool,
    pub ephemeral: [u8; 32],
    pub purpose: Purpose,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub responder: NodeId,
    pub ephemeral: [u8; 32],
    pub decision: Decision,
    /// The responder's id for the link (meaningful when accepted).
    pub link_id: u64,
    pub neighbours: Vec<NeighbourEntry>,
    pub signature: [u8; 64],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    pub link_id: u64,
    pub signature: [u8; 64],
}

/// Why a handshake failed. The connection should be closed; no link exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("malformed frame: {0}")]
    Decode(#[from] DecodeError),
    #[error("expected a {expected} frame")]
    UnexpectedFrame { expected: &'static str },
    #[error("the peer's signature does not verify")]
    BadSignature,
    #[error("the peer is {got:?}, not the expected {expected:?}")]
    WrongPeer { expected: NodeId, got: NodeId },
    #[error("the peer's ephemeral key is weak")]
    WeakKey,
    #[error("a peer cannot link with itself")]
    SelfLink,
}

/// One direction's key each way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkKeys {
    pub send: LinkKey,
    pub recv: LinkKey,
}

pub(crate) fn frame_header(w: &mut Writer, kind: u8) {
    w.bytes(&MAGIC);
    w.u8(VERSION);
    w.u8(kind);
}

pub(crate) fn read_header(r: &mut Reader<'_>) -> Result<u8, DecodeError> {
    if r.array::<2>("magic")? != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    r.u8("frame kind")
}

/// Prefixes a payload with its length.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
    out
}

/// Check-then-parse: `Ok(None)` while `buf` does not yet hold a whole frame, else the
/// payload and the number of bytes it used. A declared length over [`MAX_FRAME`] is an
/// error before anything is buffered.
pub fn split_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>, DecodeError> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len > MAX_FRAME {
        return Err(DecodeError::TooLong {
            len,
            max: MAX_FRAME,
        });
    }
    Ok(buf.get(4..4 + len).map(|payload| (payload, 4 + len)))
}

impl Hello {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(96);
        frame_header(&mut w, kind::HELLO);
        w.node_id(&self.initiator);
        let mut flags = 0;
        if self.initiator_dialable {
            flags |= FLAG_DIALABLE;
        }
        if self.stream {
            flags |= FLAG_STREAM;
        }
        w.u8(flags);
        w.addr(&self.initiator_addr);
        w.bytes(&self.ephemeral);
        w.u8(self.purpose as u8);
        w.buf
    }

    pub fn decode(payload: &[u8]) -> Result<Self, HandshakeError> {
        let mut r = Reader::new(payload);
        if read_header(&mut r)? != kind::HELLO {
            return Err(HandshakeError::UnexpectedFrame { expected: "hello" });
        }
        let initiator = r.node_id("initiator")?;
        let flags = r.u8("initiator flags")?;
        let hello = Self {
            initiator,
            initiator_addr: r.addr()?,
            initiator_dialable: flags & FLAG_DIALABLE != 0,
            stream: flags & FLAG_STREAM != 0,
            ephemeral: r.array("ephemeral key")?,
            purpose: match r.u8("purpose")? {
                1 => Purpose::Link,
                2 => Purpose::Query,
                _ => return Err(DecodeError::BadValue("purpose").into()),
            },
        };
        r.finish()?;
        Ok(hello)
    }
}

impl Welcome {
    fn encode_unsigned(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(512);
        frame_header(&mut w, kind::WELCOME);
        w.node_id(&self.responder);
        w.bytes(&self.ephemeral);
        w.u8(self.decision as u8);
        w.u64(self.link_id);
        write_entries(&mut w, &self.neighbours);
        w.buf
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = self.encode_unsigned();
        bytes.extend_from_slice(&self.signature);
        bytes
    }

    pub fn decode(payload: &[u8]) -> Result<Self, HandshakeError> {
        let mut r = Reader::new(payload);
        if read_header(&mut r)? != kind::WELCOME {
            return Err(HandshakeError::UnexpectedFrame {
                expected: "welcome",
            });
        }
        let welcome = Self {
            responder: r.node_id("responder")?,
            ephemeral: r.array("ephemeral key")?,
            decision: match r.u8("decision")? {
                1 => Decision::Accept,
                2 => Decision::Full,
                3 => Decision::Reject,
                _ => return Err(DecodeError::BadValue("decision").into()),
            },
            link_id: r.u64("link id")?,
            neighbours: read_entries(&mut r)?,
            signature: r.array("signature")?,
        };
        r.finish()?;
        Ok(welcome)
    }
}

impl Confirm {
    fn encode_unsigned(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(96);
        frame_header(&mut w, kind::CONFIRM);
        w.u64(self.link_id);
        w.buf
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = self.encode_unsigned();
        bytes.extend_from_slice(&self.signature);
        bytes
    }

    pub fn decode(payload: &[u8]) -> Result<Self, HandshakeError> {
        let mut r = Reader::new(payload);
        if read_header(&mut r)? != kind::CONFIRM {
            return Err(HandshakeError::UnexpectedFrame {
                expected: "confirm",
            });
        }
        let confirm = Self {
            link_id: r.u64("link id")?,
            signature: r.array("signature")?,
        };
        r.finish()?;
        Ok(confirm)
    }
}

fn transcript(domain: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut t = domain.to_vec();
    for part in parts {
        t.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        t.extend_from_slice(part);
    }
    t
}

fn derive(
    secret: &StaticSecret,
    their_ephemeral: &[u8; 32],
    transcript_bytes: &[u8],
    initiator: bool,
) -> Result<LinkKeys, HandshakeError> {
    let shared = secret.diffie_hellman(&PublicKey::from(*their_ephemeral));
    if !shared.was_contributory() {
        return Err(HandshakeError::WeakKey);
    }
    let th = blake3::hash(transcript_bytes);
    let mut material = shared.as_bytes().to_vec();
    material.extend_from_slice(th.as_bytes());
    let i2r = blake3::derive_key(KEY_I2R, &material);
    let r2i = blake3::derive_key(KEY_R2I, &material);
    Ok(if initiator {
        LinkKeys {
            send: i2r,
            recv: r2i,
        }
    } else {
        LinkKeys {
            send: r2i,
            recv: i2r,
        }
    })
}

fn verify(id: &NodeId, message: &[u8], signature: &[u8; 64]) -> Result<(), HandshakeError> {
    if id.verify(message, signature) {
        Ok(())
    } else {
        Err(HandshakeError::BadSignature)
    }
}

/// The initiator's side, between sending [`Hello`] and reading [`Welcome`].
pub struct Initiator {
    key: SigningKey,
    secret: StaticSecret,
    hello: Vec<u8>,
    purpose: Purpose,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiator")
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

/// What the initiator learned from the welcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitiatorOutcome {
    /// Linked: send `confirm` (already framed), then use `keys`.
    Linked {
        responder: NodeId,
        responder_link_id: u64,
        keys: LinkKeys,
        neighbours: Vec<NeighbourEntry>,
        confirm: Vec<u8>,
    },
    /// Not linked (full, rejected, or only queried): the responder's neighbours.
    NotLinked {
        responder: NodeId,
        decision: Decision,
        neighbours: Vec<NeighbourEntry>,
    },
}

impl Initiator {
    /// Starts a handshake from a dialable peer at `my_addr`; returns the state and the
    /// framed hello to send. `ephemeral_seed` must be fresh randomness.
    pub fn start(
        key: &SigningKey,
        my_addr: PeerAddr,
        purpose: Purpose,
        ephemeral_seed: [u8; 32],
    ) -> (Self, Vec<u8>) {
        Self::start_from(key, my_addr, true, purpose, ephemeral_seed)
    }

    /// [`Initiator::start`] for a peer that says whether it can be dialled.
    pub fn start_from(
        key: &SigningKey,
        my_addr: PeerAddr,
        dialable: bool,
        purpose: Purpose,
        ephemeral_seed: [u8; 32],
    ) -> (Self, Vec<u8>) {
        Self::start_with(key, my_addr, dialable, false, purpose, ephemeral_seed)
    }

    /// [`Initiator::start_from`], also saying whether the link's datagrams should travel
    /// over this TCP connection (`stream`) rather than UDP.
    pub fn start_with(
        key: &SigningKey,
        my_addr: PeerAddr,
        dialable: bool,
        stream: bool,
        purpose: Purpose,
        ephemeral_seed: [u8; 32],
    ) -> (Self, Vec<u8>) {
        let secret = StaticSecret::from(ephemeral_seed);
        let hello = Hello {
            initiator: NodeId::from_key(&key.verifying_key()),
            initiator_addr: my_addr,
            initiator_dialable: dialable,
            stream,
            ephemeral: PublicKey::from(&secret).to_bytes(),
            purpose,
        }
        .encode();
        let framed = frame(&hello);
        (
            Self {
                key: key.clone(),
                secret,
                hello,
                purpose,
            },
            framed,
        )
    }

    /// Reads the welcome payload. `expected` is the id we meant to reach, when known;
    /// `my_link_id` is the id we will recognise the link by.
    pub fn on_welcome(
        self,
        payload: &[u8],
        expected: Option<NodeId>,
        my_link_id: u64,
    ) -> Result<InitiatorOutcome, HandshakeError> {
        let welcome = Welcome::decode(payload)?;
        if let Some(expected) = expected.filter(|e| *e != welcome.responder) {
            return Err(HandshakeError::WrongPeer {
                expected,
                got: welcome.responder,
            });
        }
        let me = NodeId::from_key(&self.key.verifying_key());
        if welcome.responder == me {
            return Err(HandshakeError::SelfLink);
        }
        // Decoding succeeded, so the payload ends with the 64-byte signature.
        let unsigned = &payload[..payload.len() - 64];
        let signed = transcript(WELCOME_DOMAIN, &[&self.hello, unsigned]);
        verify(&welcome.responder, &signed, &welcome.signature)?;
        if welcome.decision != Decision::Accept || self.purpose != Purpose::Link {
            return Ok(InitiatorOutcome::NotLinked {
                responder: welcome.responder,
                decision: welcome.decision,
                neighbours: welcome.neighbours,
            });
        }
        let mut confirm = Confirm {
            link_id: my_link_id,
            signature: [0; 64],
        };
        let unsigned_confirm = confirm.encode_unsigned();
        let to_sign = transcript(CONFIRM_DOMAIN, &[&self.hello, payload, &unsigned_confirm]);
        confirm.signature = self.key.sign(&to_sign).to_bytes();
        let confirm_bytes = confirm.encode();
        let all = transcript(&[], &[&self.hello, payload, &confirm_bytes]);
        let keys = derive(&self.secret, &welcome.ephemeral, &all, true)?;
        Ok(InitiatorOutcome::Linked {
            responder: welcome.responder,
            responder_link_id: welcome.link_id,
            keys,
            neighbours: welcome.neighbours,
            confirm: frame(&confirm_bytes),
        })
    }
}

/// The responder's side after it sent an accepting [`Welcome`], waiting for [`Confirm`].
pub struct Responder {
    secret: StaticSecret,
    hello: Vec<u8>,
    welcome: Vec<u8>,
    initiator: NodeId,
    their_ephemeral: [u8; 32],
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("initiator", &self.initiator)
            .finish_non_exhaustive()
    }
}

/// A verified link, from the responder's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub initiator: NodeId,
    pub initiator_link_id: u64,
    pub keys: LinkKeys,
}

impl Responder {
    /// Answers a decoded hello (`hello_payload` is its exact bytes) with `decision`.
    /// Returns the framed welcome, and the state to finish with when it accepted a link.
    pub fn answer(
        key: &SigningKey,
        hello_payload: &[u8],
        hello: &Hello,
        decision: Decision,
        my_link_id: u64,
        neighbours: Vec<NeighbourEntry>,
        ephemeral_seed: [u8; 32],
    ) -> (Option<Self>, Vec<u8>) {
        let secret = StaticSecret::from(ephemeral_seed);
        let mut welcome = Welcome {
            responder: NodeId::from_key(&key.verifying_key()),
            ephemeral: PublicKey::from(&secret).to_bytes(),
            decision,
            link_id: my_link_id,
            neighbours,
            signature: [0; 64],
        };
        let to_sign = transcript(WELCOME_DOMAIN, &[hello_payload, &welcome.encode_unsigned()]);
        welcome.signature = key.sign(&to_sign).to_bytes();
        let welcome_bytes = welcome.encode();
        let framed = frame(&welcome_bytes);
        let pending =
            (decision == Decision::Accept && hello.purpose == Purpose::Link).then(|| Self {
                secret,
                hello: hello_payload.to_vec(),
                welcome: welcome_bytes,
                initiator: hello.initiator,
                their_ephemeral: hello.ephemeral,
            });
        (pending, framed)
    }

    pub fn on_confirm(self, payload: &[u8]) -> Result<Accepted, HandshakeError> {
        let confirm = Confirm::decode(payload)?;
        let unsigned = &payload[..payload.len() - 64];
        let signed = transcript(CONFIRM_DOMAIN, &[&self.hello, &self.welcome, unsigned]);
        verify(&self.initiator, &signed, &confirm.signature)?;
        let all = transcript(&[], &[&self.hello, &self.welcome, payload]);
        let keys = derive(&self.secret, &self.their_ephemeral, &all, false)?;
        Ok(Accepted {
            initiator: self.initiator,
            initiator_link_id: confirm.link_id,
            keys,
        })
    }
}
