//! What neighbours say to each other inside an authenticated link datagram.

use super::codec::{DecodeError, Reader, Writer};
use super::search::{Hit, MAX_HITS_PER_MESSAGE, MAX_TTL, QueryId, QueryTarget};
use std::net::SocketAddr;

use crate::{NodeId, PeerAddr};

/// Most neighbours a heartbeat lists (a peer's maximum degree must not exceed it).
pub const MAX_HEARTBEAT_NEIGHBOURS: usize = 16;
/// Largest piece of a share summary carried by one datagram.
pub const MAX_SUMMARY_CHUNK: usize = 1024;

/// A peer as a heartbeat, a handshake or the Gatekeeper lists it: its id, its direct
/// address, and whether that address can be dialled from outside its network. A peer
/// behind a NAT publishes its address with `dialable` false: others link with it only when
/// it dials them, and never dial it (docs/PROTOCOL.md, "Reachability").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NeighbourEntry {
    pub id: NodeId,
    pub addr: PeerAddr,
    pub dialable: bool,
}

impl NeighbourEntry {
    /// A peer that can be dialled at `addr`.
    pub fn dialable(id: NodeId, addr: PeerAddr) -> Self {
        Self {
            id,
            addr,
            dialable: true,
        }
    }
}

/// Bit 0 of a peer's flags byte: its address can be dialled. The other bits are reserved:
/// sent as zero, ignored when read.
pub(crate) const FLAG_DIALABLE: u8 = 0x01;
/// Bit 1 of a Hello's flags: carry this link's datagrams over the handshake's TCP
/// connection, kept open, instead of UDP (the initiator's UDP is blocked).
pub(crate) const FLAG_STREAM: u8 = 0x02;

/// The periodic "I am alive" with the state a neighbour caches about us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// Increases by one per heartbeat on this link; echoed by [`PeerMsg::HeartbeatAck`].
    pub seq: u64,
    /// Raised by the sender to refute a suspicion (SWIM's incarnation number).
    pub incarnation: u64,
    /// Version of the sender's share summary; fetch it with [`PeerMsg::SummaryRequest`]
    /// when it differs from the cached one. 0 means "no summary".
    pub summary_version: u64,
    /// The sender's other neighbours: candidates for repair when the sender fails, and
    /// natural witnesses when it is suspected.
    pub neighbours: Vec<NeighbourEntry>,
}

/// Messages between linked neighbours, one enum for the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMsg {
    Heartbeat(Heartbeat),
    HeartbeatAck {
        seq: u64,
        /// The source address the heartbeat arrived from, as its receiver saw it: how the
        /// sender's UDP socket looks from outside (its NAT mapping, if any).
        observed: SocketAddr,
    },
    /// "Please check whether `target` is alive": sent to a witness.
    PingReq {
        probe_id: u64,
        target: NodeId,
        target_addr: PeerAddr,
    },
    /// The witness's verdict on a [`PeerMsg::PingReq`].
    PingReqAck {
        probe_id: u64,
        target: NodeId,
        alive: bool,
    },
    /// A witness asks its neighbour `target` directly; `suspecter` tells the target who
    /// suspects it, so it can refute at once.
    WitnessProbe {
        probe_id: u64,
        suspecter: NodeId,
    },
    WitnessProbeAck {
        probe_id: u64,
    },
    /// The sender is leaving the network: drop the link and repair now.
    Leave,
    /// Ask for one chunk of the sender's summary at `version`.
    SummaryRequest {
        version: u64,
        chunk: u16,
    },
    SummaryChunk {
        version: u64,
        chunk: u16,
        chunks: u16,
        data: Vec<u8>,
    },
    /// A search, flooded: answer from the local share, forward while `ttl` lasts, and
    /// close the branch with [`PeerMsg::QueryDone`].
    Query {
        id: QueryId,
        /// Hops left, counting this one (1: answer, do not forward).
        ttl: u8,
        /// Hops travelled so far (0 at the searcher's neighbours' sender, the searcher).
        hops: u8,
        target: QueryTarget,
    },
    /// Hits for query `id`, travelling back towards the searcher.
    QueryHits {
        id: QueryId,
        hits: Vec<Hit>,
    },
    /// Everything from this branch of query `id` was sent (or its time ran out).
    QueryDone {
        id: QueryId,
    },
    /// "Open a TCP connection to `to` and present `token` there": how a relay (or, for a
    /// push, a downloader the relay vouches for) reaches a neighbour that cannot be
    /// dialled. The connection then carries HTTP requests to the receiver's file server
    /// (docs/PROTOCOL.md, "Relays").
    Reverse {
        token: [u8; 16],
        to: SocketAddr,
    },
}

mod kind {
    pub const HEARTBEAT: u8 = 0x10;
    pub const HEARTBEAT_ACK: u8 = 0x11;
    pub const PING_REQ: u8 = 0x12;
    pub const PING_REQ_ACK: u8 = 0x13;
    pub const WITNESS_PROBE: u8 = 0x14;
    pub const WITNESS_PROBE_ACK: u8 = 0x15;
    pub const LEAVE: u8 = 0x16;
    pub const SUMMARY_REQUEST: u8 = 0x17;
    pub const SUMMARY_CHUNK: u8 = 0x18;
    pub const QUERY: u8 = 0x20;
    pub const QUERY_HITS: u8 = 0x21;
    pub const QUERY_DONE: u8 = 0x22;
    pub const REVERSE: u8 = 0x30;
}

pub(crate) fn write_entries(w: &mut Writer, entries: &[NeighbourEntry]) {
    let entries = &entries[..entries.len().min(MAX_HEARTBEAT_NEIGHBOURS)];
    w.count(entries.len());
    for e in entries {
        w.node_id(&e.id);
        w.u8(if e.dialable { FLAG_DIALABLE } else { 0 });
        w.addr(&e.addr);
    }
}

pub(crate) fn read_entries(r: &mut Reader<'_>) -> Result<Vec<NeighbourEntry>, DecodeError> {
    let n = r.count("neighbour list", MAX_HEARTBEAT_NEIGHBOURS)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.node_id("neighbour id")?;
        let flags = r.u8("neighbour flags")?;
        out.push(NeighbourEntry {
            id,
            addr: r.addr()?,
            dialable: flags & FLAG_DIALABLE != 0,
        });
    }
    Ok(out)
}

impl PeerMsg {
    /// Appends the encoding: a kind byte, then the fields in order.
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Self::Heartbeat(hb) => {
                w.u8(kind::HEARTBEAT);
                w.u64(hb.seq);
                w.u64(hb.incarnation);
                w.u64(hb.summary_version);
                write_entries(w, &hb.neighbours);
            }
            Self::HeartbeatAck { seq, observed } => {
                w.u8(kind::HEARTBEAT_ACK);
                w.u64(*seq);
                w.socket_addr(observed);
            }
            Self::PingReq {
                probe_id,
                target,
                target_addr,
            } => {
                w.u8(kind::PING_REQ);
                w.u64(*probe_id);
                w.node_id(target);
                w.addr(target_addr);
            }
            Self::PingReqAck {
                probe_id,
                target,
                alive,
            } => {
                w.u8(kind::PING_REQ_ACK);
                w.u64(*probe_id);
                w.node_id(target);
                w.bool(*alive);
            }
            Self::WitnessProbe {
                probe_id,
                suspecter,
            } => {
                w.u8(kind::WITNESS_PROBE);
                w.u64(*probe_id);
                w.node_id(suspecter);
            }
            Self::WitnessProbeAck { probe_id } => {
                w.u8(kind::WITNESS_PROBE_ACK);
                w.u64(*probe_id);
            }
            Self::Leave => w.u8(kind::LEAVE),
            Self::SummaryRequest { version, chunk } => {
                w.u8(kind::SUMMARY_REQUEST);
                w.u64(*version);
                w.u16(*chunk);
            }
            Self::SummaryChunk {
                version,
                chunk,
                chunks,
                data,
            } => {
                w.u8(kind::SUMMARY_CHUNK);
                w.u64(*version);
                w.u16(*chunk);
                w.u16(*chunks);
                w.blob(&data[..data.len().min(MAX_SUMMARY_CHUNK)]);
            }
            Self::Query {
                id,
                ttl,
                hops,
                target,
            } => {
                w.u8(kind::QUERY);
                w.bytes(id);
                w.u8(*ttl);
                w.u8(*hops);
                target.write(w);
            }
            Self::QueryHits { id, hits } => {
                w.u8(kind::QUERY_HITS);
                w.bytes(id);
                let hits = &hits[..hits.len().min(MAX_HITS_PER_MESSAGE)];
                w.count(hits.len());
                for hit in hits {
                    hit.write(w);
                }
            }
            Self::QueryDone { id } => {
                w.u8(kind::QUERY_DONE);
                w.bytes(id);
            }
            Self::Reverse { token, to } => {
                w.u8(kind::REVERSE);
                w.bytes(token);
                w.socket_addr(to);
            }
        }
    }

    /// Decodes exactly one message filling `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let msg = Self::read(&mut r)?;
        r.finish()?;
        Ok(msg)
    }

    /// Decodes one message followed by nothing but zero padding (as in link datagrams).
    pub fn decode_padded(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let msg = Self::read(&mut r)?;
        let rest = r.take(r.remaining(), "padding")?;
        if rest.iter().any(|&b| b != 0) {
            return Err(DecodeError::BadValue("padding"));
        }
        Ok(msg)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let msg = match r.u8("message kind")? {
            kind::HEARTBEAT => Self::Heartbeat(Heartbeat {
                seq: r.u64("seq")?,
                incarnation: r.u64("incarnation")?,
                summary_version: r.u64("summary version")?,
                neighbours: read_entries(r)?,
            }),
            kind::HEARTBEAT_ACK => Self::HeartbeatAck {
                seq: r.u64("seq")?,
                observed: r.socket_addr("observed address")?,
            },
            kind::PING_REQ => Self::PingReq {
                probe_id: r.u64("probe id")?,
                target: r.node_id("target")?,
                target_addr: r.addr()?,
            },
            kind::PING_REQ_ACK => Self::PingReqAck {
                probe_id: r.u64("probe id")?,
                target: r.node_id("target")?,
                alive: r.bool("alive")?,
            },
            kind::WITNESS_PROBE => Self::WitnessProbe {
                probe_id: r.u64("probe id")?,
                suspecter: r.node_id("suspecter")?,
            },
            kind::WITNESS_PROBE_ACK => Self::WitnessProbeAck {
                probe_id: r.u64("probe id")?,
            },
            kind::LEAVE => Self::Leave,
            kind::SUMMARY_REQUEST => Self::SummaryRequest {
                version: r.u64("version")?,
                chunk: r.u16("chunk")?,
            },
            kind::SUMMARY_CHUNK => {
                let version = r.u64("version")?;
                let chunk = r.u16("chunk")?;
                let chunks = r.u16("chunks")?;
                if chunk >= chunks {
                    return Err(DecodeError::BadValue("chunk index"));
                }
                let data = r.blob("summary chunk", MAX_SUMMARY_CHUNK)?.to_vec();
                Self::SummaryChunk {
                    version,
                    chunk,
                    chunks,
                    data,
                }
            }
            kind::QUERY => {
                let id = r.array::<16>("query id")?;
                let ttl = r.u8("ttl")?;
                if ttl == 0 || ttl > MAX_TTL {
                    return Err(DecodeError::BadValue("query ttl"));
                }
                let hops = r.u8("hops")?;
                Self::Query {
                    id,
                    ttl,
                    hops,
                    target: QueryTarget::read(r)?,
                }
            }
            kind::QUERY_HITS => {
                let id = r.array::<16>("query id")?;
                let n = r.count("hits", MAX_HITS_PER_MESSAGE)?;
                let mut hits = Vec::with_capacity(n);
                for _ in 0..n {
                    hits.push(Hit::read(r)?);
                }
                Self::QueryHits { id, hits }
            }
            kind::QUERY_DONE => Self::QueryDone {
                id: r.array::<16>("query id")?,
            },
            kind::REVERSE => Self::Reverse {
                token: r.array::<16>("reverse token")?,
                to: r.socket_addr("reverse address")?,
            },
            other => {
                return Err(DecodeError::UnknownKind {
                    what: "message",
                    kind: other,
                });
            }
        };
        Ok(msg)
    }
}
