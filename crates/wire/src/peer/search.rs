//! The pieces of search messages: what a query asks for, and one hit.
//!
//! A query travels as [`super::PeerMsg::Query`] from neighbour to neighbour; hits come back
//! along the reverse path as [`super::PeerMsg::QueryHits`], and each branch closes with
//! [`super::PeerMsg::QueryDone`]. Everything here is bounded so that the largest message
//! still fits in one link datagram ([`MAX_LINK_MESSAGE`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::codec::{DecodeError, Reader, Writer};
use super::datagram::{LINK_HEADER_LEN, MAX_DATAGRAM, TAG_LEN};
use crate::{ContentId, NodeId};

/// Largest encoded message a link datagram carries.
pub const MAX_LINK_MESSAGE: usize = MAX_DATAGRAM - LINK_HEADER_LEN - TAG_LEN;
/// Longest keyword text in a query, in bytes.
pub const MAX_QUERY_TEXT: usize = 256;
/// Longest file name in a hit, in bytes (longer names are cut at a character boundary).
pub const MAX_HIT_NAME: usize = 255;
/// Most hits in one [`super::PeerMsg::QueryHits`].
pub const MAX_HITS_PER_MESSAGE: usize = 16;
/// Most hops a query may be given.
pub const MAX_TTL: u8 = 7;
/// Most relays a hit names for a holder that cannot be dialled.
pub const MAX_HIT_RELAYS: usize = 2;

/// A query id: 128 random bits chosen by the searcher.
pub type QueryId = [u8; 16];

/// What a query looks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QueryTarget {
    /// Files whose names hold every keyword (matching rules in [`crate::tokenize`]).
    Keywords(String),
    /// The file with exactly this content.
    Hash(ContentId),
}

mod target_kind {
    pub const KEYWORDS: u8 = 0;
    pub const HASH: u8 = 1;
}

impl QueryTarget {
    pub(crate) fn write(&self, w: &mut Writer) {
        match self {
            Self::Keywords(text) => {
                w.u8(target_kind::KEYWORDS);
                w.blob(truncate_utf8(text, MAX_QUERY_TEXT).as_bytes());
            }
            Self::Hash(content) => {
                w.u8(target_kind::HASH);
                w.bytes(content.as_bytes());
            }
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("query kind")? {
            target_kind::KEYWORDS => {
                let bytes = r.blob("query text", MAX_QUERY_TEXT)?;
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| DecodeError::BadValue("query text is not UTF-8"))?;
                Ok(Self::Keywords(text.to_string()))
            }
            target_kind::HASH => Ok(Self::Hash(ContentId::from_bytes(
                r.array::<32>("content hash")?,
            ))),
            other => Err(DecodeError::UnknownKind {
                what: "query",
                kind: other,
            }),
        }
    }
}

impl std::fmt::Display for QueryTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Keywords(text) => f.write_str(text),
            Self::Hash(content) => write!(f, "hash:{content}"),
        }
    }
}

/// One file that matched, and where to fetch it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hit {
    pub content: ContentId,
    pub size: u64,
    /// Who holds it.
    pub holder: NodeId,
    /// The holder's file server (HTTP/1.1: `GET /v1/files/{content}`).
    pub server: SocketAddr,
    /// Others can connect to `server`. False behind a NAT: fetch through a relay.
    pub dialable: bool,
    /// For a holder that cannot be dialled: neighbours of it that can, each with its TCP
    /// address, where `GET /v1/relay/{holder}/v1/files/{content}` reaches the holder
    /// (docs/PROTOCOL.md, "Relays"). At most [`MAX_HIT_RELAYS`].
    pub relays: Vec<Relay>,
    /// Hops the query took to reach the holder (0: the searcher itself).
    pub hops: u8,
    /// The file's name: its path relative to the holder's share root, `/`-separated.
    pub name: String,
}

/// A peer that relays for a holder: its id, and the TCP address its relay listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Relay {
    pub id: NodeId,
    pub addr: SocketAddr,
}

fn ip_len(addr: &SocketAddr) -> usize {
    match addr.ip() {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    }
}

impl Hit {
    /// Bytes this hit takes in a [`super::PeerMsg::QueryHits`].
    pub fn encoded_len(&self) -> usize {
        let relays: usize = self
            .relays
            .iter()
            .take(MAX_HIT_RELAYS)
            .map(|r| 32 + 1 + ip_len(&r.addr) + 2)
            .sum();
        32 + 8
            + 32
            + 1
            + ip_len(&self.server)
            + 2
            + 1
            + 1
            + relays
            + 1
            + 2
            + truncate_utf8(&self.name, MAX_HIT_NAME).len()
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.bytes(self.content.as_bytes());
        w.u64(self.size);
        w.node_id(&self.holder);
        write_socket_addr(w, &self.server);
        w.u8(if self.dialable { HIT_DIALABLE } else { 0 });
        let relays = &self.relays[..self.relays.len().min(MAX_HIT_RELAYS)];
        w.count(relays.len());
        for relay in relays {
            w.node_id(&relay.id);
            write_socket_addr(w, &relay.addr);
        }
        w.u8(self.hops);
        w.blob(truncate_utf8(&self.name, MAX_HIT_NAME).as_bytes());
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let content = ContentId::from_bytes(r.array::<32>("content hash")?);
        let size = r.u64("file size")?;
        let holder = r.node_id("holder")?;
        let server = read_socket_addr(r)?;
        let dialable = r.u8("hit flags")? & HIT_DIALABLE != 0;
        let n = r.count("relays", MAX_HIT_RELAYS)?;
        let mut relays = Vec::with_capacity(n);
        for _ in 0..n {
            relays.push(Relay {
                id: r.node_id("relay id")?,
                addr: read_socket_addr(r)?,
            });
        }
        let hops = r.u8("hops")?;
        let name = r.blob("file name", MAX_HIT_NAME)?;
        let name = std::str::from_utf8(name)
            .map_err(|_| DecodeError::BadValue("file name is not UTF-8"))?;
        if name.is_empty() {
            return Err(DecodeError::BadValue("empty file name"));
        }
        Ok(Self {
            content,
            size,
            holder,
            server,
            dialable,
            relays,
            hops,
            name: name.to_string(),
        })
    }
}

/// Bit 0 of a hit's flags: the holder's file server can be dialled. Other bits reserved.
const HIT_DIALABLE: u8 = 0x01;

/// Room for hits in one QueryHits message: everything but its kind, id and count.
pub const HITS_BUDGET: usize = MAX_LINK_MESSAGE - 1 - 16 - 1;

/// Splits `hits` into groups that each fit one QueryHits message.
pub fn pack_hits(hits: &[Hit]) -> Vec<Vec<Hit>> {
    let mut groups = Vec::new();
    let mut group: Vec<Hit> = Vec::new();
    let mut used = 0;
    for hit in hits {
        let len = hit.encoded_len();
        if !group.is_empty() && (used + len > HITS_BUDGET || group.len() == MAX_HITS_PER_MESSAGE) {
            groups.push(std::mem::take(&mut group));
            used = 0;
        }
        used += len;
        group.push(hit.clone());
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

fn write_socket_addr(w: &mut Writer, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(v4) => {
            w.u8(4);
            w.bytes(&v4.octets());
        }
        IpAddr::V6(v6) => {
            w.u8(6);
            w.bytes(&v6.octets());
        }
    }
    w.u16(addr.port());
}

fn read_socket_addr(r: &mut Reader<'_>) -> Result<SocketAddr, DecodeError> {
    let ip = match r.u8("address family")? {
        4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>("IPv4 address")?)),
        6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>("IPv6 address")?)),
        other => return Err(DecodeError::BadAddrFamily(other)),
    };
    Ok(SocketAddr::new(ip, r.u16("port")?))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
