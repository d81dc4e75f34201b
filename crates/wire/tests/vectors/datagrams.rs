//! docs/vectors/datagrams.json: link datagrams of every message kind on the link of the
//! accepted handshake vector (its keys), the stranger datagrams, and datagrams a receiver
//! must refuse.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use highway_wire::ContentId;
use highway_wire::PeerAddr;
use highway_wire::peer::datagram::{MIN_LINK_LEN, MIN_PROBE_LEN};
use highway_wire::peer::{
    Datagram, Heartbeat, Hit, NeighbourEntry, NotNeighbour, PeerMsg, Probe, ProbeAck, QueryTarget,
    decode, seal,
};
use serde::{Deserialize, Serialize};

use super::common::{id, key, load, render, unhex};
use super::handshake::{INITIATOR_LINK_ID, RESPONDER_LINK_ID, accepted_link};

#[derive(Serialize, Deserialize)]
pub struct File {
    about: String,
    link: Vec<Link>,
    stranger: Vec<Stranger>,
    rejected: Vec<Rejected>,
}

#[derive(Serialize, Deserialize)]
struct Link {
    name: String,
    /// `i2r` (initiator to responder, key k_i2r) or `r2i`.
    direction: String,
    /// The receiver's link id, as 8 big-endian bytes.
    link_id_hex: String,
    counter: u64,
    kind: u8,
    /// The message alone (kind byte and fields), before padding.
    message_hex: String,
    /// The whole datagram: header, message, zero padding to 128 bytes, tag.
    datagram_hex: String,
    tag_hex: String,
}

#[derive(Serialize, Deserialize)]
struct Stranger {
    name: String,
    kind: u8,
    /// What the signature covers, for signed kinds.
    signed_message_hex: Option<String>,
    signer: Option<String>,
    datagram_hex: String,
}

#[derive(Serialize, Deserialize)]
struct Rejected {
    about: String,
    datagram_hex: String,
    /// `decode` (the outer frame is refused) or `open` (the tag or message is refused
    /// with the link's key, `i2r`).
    stage: String,
    error: String,
}

fn entry(seed: u8, last: u8) -> NeighbourEntry {
    NeighbourEntry {
        id: id(seed),
        addr: PeerAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), 6000, 6001),
        dialable: true,
    }
}

fn messages() -> Vec<(&'static str, PeerMsg)> {
    let query_id = *b"0123456789abcdef";
    let content = ContentId::of(b"hello");
    vec![
        (
            "heartbeat",
            PeerMsg::Heartbeat(Heartbeat {
                seq: 1,
                incarnation: 0,
                summary_version: 1_764_000_000_000,
                neighbours: vec![entry(3, 4)],
            }),
        ),
        (
            "heartbeat_ack",
            PeerMsg::HeartbeatAck {
                seq: 1,
                observed: "203.0.113.9:4000".parse().unwrap(),
            },
        ),
        (
            "ping_req",
            PeerMsg::PingReq {
                probe_id: 7,
                target: id(3),
                target_addr: entry(3, 4).addr,
            },
        ),
        (
            "ping_req_ack",
            PeerMsg::PingReqAck {
                probe_id: 7,
                target: id(3),
                alive: true,
            },
        ),
        (
            "witness_probe",
            PeerMsg::WitnessProbe {
                probe_id: 8,
                suspecter: id(4),
            },
        ),
        (
            "witness_probe_ack",
            PeerMsg::WitnessProbeAck { probe_id: 8 },
        ),
        ("leave", PeerMsg::Leave),
        (
            "summary_request",
            PeerMsg::SummaryRequest {
                version: 1_764_000_000_000,
                chunk: 0,
            },
        ),
        (
            "summary_chunk",
            PeerMsg::SummaryChunk {
                version: 1_764_000_000_000,
                chunk: 0,
                chunks: 1,
                data: vec![0x01, 0x00, 0x00, 0xc6, 0x01],
            },
        ),
        (
            "query_keywords",
            PeerMsg::Query {
                id: query_id,
                ttl: 5,
                hops: 0,
                target: QueryTarget::Keywords("café del".into()),
            },
        ),
        (
            "query_hash",
            PeerMsg::Query {
                id: query_id,
                ttl: 1,
                hops: 4,
                target: QueryTarget::Hash(content),
            },
        ),
        (
            "query_hits",
            PeerMsg::QueryHits {
                id: query_id,
                hits: vec![Hit {
                    content,
                    size: 5,
                    holder: id(3),
                    server: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4)), 8080),
                    hops: 1,
                    name: "music/Café del Mar.mp3".into(),
                    dialable: true,
                    relays: Vec::new(),
                }],
            },
        ),
        (
            "query_hits_behind_a_nat",
            PeerMsg::QueryHits {
                id: query_id,
                hits: vec![Hit {
                    content,
                    size: 5,
                    holder: id(3),
                    server: "192.0.2.10:8080".parse().unwrap(),
                    hops: 2,
                    name: "a.txt".into(),
                    dialable: false,
                    relays: vec![highway_wire::peer::Relay {
                        id: id(4),
                        addr: "203.0.113.4:7001".parse().unwrap(),
                    }],
                }],
            },
        ),
        ("query_done", PeerMsg::QueryDone { id: query_id }),
        (
            "reverse",
            PeerMsg::Reverse {
                token: [0x5a; 16],
                to: "203.0.113.4:7001".parse().unwrap(),
            },
        ),
    ]
}

fn message_bytes(msg: &PeerMsg) -> Vec<u8> {
    let mut w = highway_wire::peer::codec::Writer::default();
    msg.encode(&mut w);
    w.buf
}

fn link(name: &str, i2r: bool, counter: u64, msg: &PeerMsg) -> Link {
    let t = accepted_link();
    let (key, link_id) = if i2r {
        (t.k_i2r(), RESPONDER_LINK_ID)
    } else {
        (t.k_r2i(), INITIATOR_LINK_ID)
    };
    let bytes = seal(link_id, counter, msg, &key);
    let message = message_bytes(msg);
    Link {
        name: name.into(),
        direction: if i2r { "i2r" } else { "r2i" }.into(),
        link_id_hex: hex::encode(link_id.to_be_bytes()),
        counter,
        kind: message[0],
        message_hex: hex::encode(&message),
        tag_hex: hex::encode(&bytes[bytes.len() - 16..]),
        datagram_hex: hex::encode(&bytes),
    }
}

/// A link datagram with the given body and a valid tag for the i2r key.
fn retagged(body: &[u8]) -> Vec<u8> {
    let mut bytes = b"HW\x02\x01".to_vec();
    bytes.extend_from_slice(&RESPONDER_LINK_ID.to_be_bytes());
    bytes.extend_from_slice(&99u64.to_be_bytes());
    bytes.extend_from_slice(body);
    let tag = blake3::keyed_hash(&accepted_link().k_i2r(), &bytes);
    bytes.extend_from_slice(&tag.as_bytes()[..16]);
    bytes
}

fn rejected() -> Vec<(&'static str, Vec<u8>)> {
    let t = accepted_link();
    let good = seal(
        RESPONDER_LINK_ID,
        1,
        &PeerMsg::HeartbeatAck {
            seq: 1,
            observed: "203.0.113.9:4000".parse().unwrap(),
        },
        &t.k_i2r(),
    );
    let mut flipped = good.clone();
    flipped[30] ^= 0x01;
    let mut padded_ack = vec![0x11];
    padded_ack.extend_from_slice(&1u64.to_be_bytes());
    padded_ack.resize(MIN_LINK_LEN - 20 - 16, 0);
    let mut nonzero_padding = padded_ack.clone();
    *nonzero_padding.last_mut().expect("padding") = 1;
    let probe = Datagram::Probe(Probe {
        nonce: 1,
        requester: id(1),
        target: id(2),
    })
    .encode();
    let ack = Datagram::ProbeAck(ProbeAck::sign(
        &key(2),
        &Probe {
            nonce: 1,
            requester: id(1),
            target: id(2),
        },
    ))
    .encode();
    vec![
        ("bad magic", [b"hw".as_slice(), &good[2..]].concat()),
        (
            "protocol version 1 (before reachability)",
            [&good[..2], &[1], &good[3..]].concat(),
        ),
        (
            "protocol version 3",
            [&good[..2], &[3], &good[3..]].concat(),
        ),
        (
            "unknown datagram kind 0x05",
            [&good[..3], &[5], &good[4..]].concat(),
        ),
        ("longer than 1,200 bytes", vec![0; 1201]),
        (
            "link datagram with no room for a message and a tag",
            good[..36].to_vec(),
        ),
        (
            "probe shorter than 256 bytes",
            probe[..MIN_PROBE_LEN - 1].to_vec(),
        ),
        (
            "probe ack with a trailing byte",
            [ack.as_slice(), &[0]].concat(),
        ),
        ("link datagram with one bit of the message flipped", flipped),
        (
            "link datagram with a wrong tag",
            [&good[..good.len() - 1], &[good[good.len() - 1] ^ 0x80]].concat(),
        ),
        (
            "link datagram with nonzero padding (valid tag)",
            retagged(&nonzero_padding),
        ),
        (
            "link datagram with unknown message kind 0x30 (valid tag)",
            retagged(&[0x30; 92]),
        ),
        (
            "summary chunk with chunk >= chunks (valid tag)",
            retagged(&{
                let mut m = message_bytes(&PeerMsg::SummaryChunk {
                    version: 1,
                    chunk: 0,
                    chunks: 1,
                    data: vec![1],
                });
                m[9..11].copy_from_slice(&1u16.to_be_bytes());
                m.resize(92, 0);
                m
            }),
        ),
        (
            "query with ttl 8 (valid tag)",
            retagged(&{
                let mut m = message_bytes(&PeerMsg::Query {
                    id: [0; 16],
                    ttl: 1,
                    hops: 0,
                    target: QueryTarget::Keywords("a".into()),
                });
                m[17] = 8;
                m.resize(92, 0);
                m
            }),
        ),
    ]
}

fn reject(bytes: &[u8]) -> (String, String) {
    match decode(bytes) {
        Err(e) => ("decode".into(), format!("{e:?}")),
        Ok(Datagram::Link(frame)) => match frame.open(&accepted_link().k_i2r()) {
            Err(e) => ("open".into(), format!("{e:?}")),
            Ok(msg) => panic!("accepted: {msg:?}"),
        },
        Ok(other) => panic!("accepted: {other:?}"),
    }
}

fn stranger() -> Vec<Stranger> {
    let probe = Probe {
        nonce: 0x0102_0304_0506_0708,
        requester: id(1),
        target: id(2),
    };
    let ack = ProbeAck::sign(&key(2), &probe);
    let nn = NotNeighbour::sign(&key(2), 0xdead_beef_0000_0001);
    let mut ack_signed = b"highway-probe-ack-v1\0".to_vec();
    ack_signed.extend_from_slice(&probe.nonce.to_be_bytes());
    ack_signed.extend_from_slice(id(2).as_bytes());
    ack_signed.extend_from_slice(id(1).as_bytes());
    let mut nn_signed = b"highway-not-neighbour-v1\0".to_vec();
    nn_signed.extend_from_slice(&nn.link_id.to_be_bytes());
    nn_signed.extend_from_slice(id(2).as_bytes());
    vec![
        Stranger {
            name: "probe".into(),
            kind: 0x02,
            signed_message_hex: None,
            signer: None,
            datagram_hex: hex::encode(Datagram::Probe(probe).encode()),
        },
        Stranger {
            name: "probe_ack".into(),
            kind: 0x03,
            signed_message_hex: Some(hex::encode(ack_signed)),
            signer: Some(id(2).to_string()),
            datagram_hex: hex::encode(Datagram::ProbeAck(ack).encode()),
        },
        Stranger {
            name: "not_neighbour".into(),
            kind: 0x04,
            signed_message_hex: Some(hex::encode(nn_signed)),
            signer: Some(id(2).to_string()),
            datagram_hex: hex::encode(Datagram::NotNeighbour(nn).encode()),
        },
    ]
}

fn build() -> File {
    let mut links: Vec<Link> = messages()
        .iter()
        .enumerate()
        .map(|(i, (name, msg))| link(name, true, i as u64 + 1, msg))
        .collect();
    links.push(link(
        "heartbeat_ack",
        false,
        1,
        &PeerMsg::HeartbeatAck {
            seq: 1,
            observed: "203.0.113.9:4000".parse().unwrap(),
        },
    ));
    File {
        about: "Datagram vectors, docs/PROTOCOL.md \"Datagrams (UDP)\" and \"Test vectors\". \
                Link datagrams travel on the link of handshake.json's accepted transcript: \
                i2r ones carry the responder's link id and are tagged with k_i2r, r2i ones \
                the initiator's and k_r2i."
            .into(),
        link: links,
        stranger: stranger(),
        rejected: rejected()
            .into_iter()
            .map(|(about, bytes)| {
                let (stage, error) = reject(&bytes);
                Rejected {
                    about: about.into(),
                    datagram_hex: hex::encode(&bytes),
                    stage,
                    error,
                }
            })
            .collect(),
    }
}

pub fn generate() -> String {
    render(&build())
}

#[test]
fn link_datagrams_open_with_the_handshake_keys() {
    let file: File = load("datagrams.json");
    let t = accepted_link();
    for l in &file.link {
        let bytes = unhex(&l.datagram_hex);
        let key = if l.direction == "i2r" {
            t.k_i2r()
        } else {
            t.k_r2i()
        };
        // Header, then the message, zero padding to 128 bytes, then the 16-byte tag.
        assert_eq!(bytes[..4], *b"HW\x02\x01");
        assert_eq!(hex::encode(&bytes[4..12]), l.link_id_hex);
        assert_eq!(bytes[12..20], l.counter.to_be_bytes());
        let message = unhex(&l.message_hex);
        assert_eq!(message[0], l.kind);
        let (body, tag) = bytes.split_at(bytes.len() - 16);
        assert_eq!(&body[20..20 + message.len()], message.as_slice());
        assert!(body[20 + message.len()..].iter().all(|&b| b == 0));
        assert!(bytes.len() >= MIN_LINK_LEN);
        assert_eq!(&blake3::keyed_hash(&key, body).as_bytes()[..16], tag);
        assert_eq!(hex::encode(tag), l.tag_hex);
        let Ok(Datagram::Link(frame)) = decode(&bytes) else {
            panic!("{}: not a link datagram", l.name)
        };
        assert_eq!(
            frame.open(&key).expect("opens"),
            PeerMsg::decode(&message).expect("message")
        );
    }
}

#[test]
fn stranger_datagrams_decode_and_verify() {
    let file: File = load("datagrams.json");
    for s in &file.stranger {
        let bytes = unhex(&s.datagram_hex);
        assert_eq!(bytes[3], s.kind);
        let d = decode(&bytes).expect("decodes");
        if let (Some(msg), Some(signer)) = (&s.signed_message_hex, &s.signer) {
            let signer: highway_wire::NodeId = signer.parse().expect("id");
            let sig: [u8; 64] = bytes[bytes.len() - 64..].try_into().expect("64");
            assert!(signer.verify(&unhex(msg), &sig), "{}", s.name);
        }
        match d {
            Datagram::Probe(_) => assert!(bytes.len() >= MIN_PROBE_LEN),
            Datagram::ProbeAck(a) => assert!(a.verify(&id(1))),
            Datagram::NotNeighbour(n) => assert!(n.verify()),
            Datagram::Link(_) => panic!("not a stranger datagram"),
        }
    }
}

#[test]
fn rejected_datagrams_are_refused() {
    let file: File = load("datagrams.json");
    assert!(!file.rejected.is_empty());
    for r in &file.rejected {
        let (stage, error) = reject(&unhex(&r.datagram_hex));
        assert_eq!(
            (stage, error),
            (r.stage.clone(), r.error.clone()),
            "{}",
            r.about
        );
    }
}
