//! Round trips, snapshots and hostile input for the peer protocol's codecs.

use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::datagram::{LINK_HEADER_LEN, MIN_PROBE_LEN, TAG_LEN};
use super::handshake::{
    Decision, HandshakeError, Hello, Initiator, InitiatorOutcome, MAX_FRAME, Purpose, Responder,
    split_frame,
};
use super::message::MAX_HEARTBEAT_NEIGHBOURS;
use super::*;
use crate::{NodeId, PeerAddr};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn id(seed: u8) -> NodeId {
    NodeId::from_key(&key(seed).verifying_key())
}

fn addr(last: u8) -> PeerAddr {
    PeerAddr::new([127, 0, 0, last].into(), 4000, 4001)
}

fn entries(n: usize) -> Vec<NeighbourEntry> {
    (0..n)
        .map(|i| NeighbourEntry {
            id: id(i as u8 + 10),
            addr: addr(i as u8 + 2),
            dialable: true,
        })
        .collect()
}

fn samples() -> Vec<PeerMsg> {
    vec![
        PeerMsg::Heartbeat(Heartbeat {
            seq: 7,
            incarnation: 2,
            summary_version: 9,
            neighbours: entries(2),
        }),
        PeerMsg::HeartbeatAck {
            seq: 7,
            observed: "[2001:db8::1]:4000".parse().unwrap(),
        },
        PeerMsg::PingReq {
            probe_id: 1,
            target: id(3),
            target_addr: addr(3),
        },
        PeerMsg::PingReqAck {
            probe_id: 1,
            target: id(3),
            alive: true,
        },
        PeerMsg::WitnessProbe {
            probe_id: 5,
            suspecter: id(4),
        },
        PeerMsg::WitnessProbeAck { probe_id: 5 },
        PeerMsg::Leave,
        PeerMsg::SummaryRequest {
            version: 3,
            chunk: 0,
        },
        PeerMsg::SummaryChunk {
            version: 3,
            chunk: 1,
            chunks: 2,
            data: vec![0xab; 5],
        },
    ]
}

#[test]
fn every_message_survives_sealing_and_opening() {
    let k = [7u8; 32];
    for msg in samples() {
        let bytes = seal(42, 9, &msg, &k);
        assert!(bytes.len() <= MAX_DATAGRAM);
        let Ok(Datagram::Link(frame)) = decode(&bytes) else {
            panic!("not a link datagram")
        };
        assert_eq!((frame.link_id, frame.counter), (42, 9));
        assert_eq!(frame.open(&k), Ok(msg));
    }
}

#[test]
fn a_wrong_key_or_a_flipped_bit_fails_authentication() {
    let msg = PeerMsg::HeartbeatAck {
        seq: 1,
        observed: "127.0.0.1:1".parse().unwrap(),
    };
    let bytes = seal(1, 1, &msg, &[1; 32]);
    let Ok(Datagram::Link(frame)) = decode(&bytes) else {
        panic!()
    };
    assert_eq!(frame.open(&[2; 32]), Err(DecodeError::BadTag));
    for i in 4..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        if let Ok(Datagram::Link(frame)) = decode(&bad) {
            assert!(
                frame.open(&[1; 32]).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
    }
}

#[test]
fn heartbeat_bytes_are_stable() {
    let msg = PeerMsg::Heartbeat(Heartbeat {
        seq: 1,
        incarnation: 0,
        summary_version: 0,
        neighbours: vec![NeighbourEntry {
            id: id(1),
            addr: addr(2),
            dialable: true,
        }],
    });
    let bytes = seal(0x0102, 3, &msg, &[0; 32]);
    let body = &bytes[LINK_HEADER_LEN..bytes.len() - TAG_LEN];
    assert_eq!(
        hex::encode(&bytes[..LINK_HEADER_LEN]),
        "485702010000000000000102000000000000000300"[..LINK_HEADER_LEN * 2]
    );
    let expected_body = format!(
        "10{}{}{}01{}01 047f000002 0fa0 0fa1",
        "0000000000000001",
        "0000000000000000",
        "0000000000000000",
        id(1)
    )
    .replace(' ', "");
    let (message, padding) = body.split_at(expected_body.len() / 2);
    assert_eq!(hex::encode(message), expected_body);
    assert!(padding.iter().all(|&b| b == 0));
    assert_eq!(bytes.len(), super::datagram::MIN_LINK_LEN);
}

#[test]
fn nonzero_padding_is_refused() {
    let mut body = Vec::new();
    let mut w = super::codec::Writer::default();
    PeerMsg::Leave.encode(&mut w);
    body.extend_from_slice(&w.buf);
    body.extend_from_slice(&[0, 0, 1]);
    assert_eq!(
        PeerMsg::decode_padded(&body),
        Err(DecodeError::BadValue("padding"))
    );
    body.pop();
    assert_eq!(PeerMsg::decode_padded(&body), Ok(PeerMsg::Leave));
}

#[test]
fn established_is_recognised_and_nothing_else_is() {
    let framed = super::handshake::established_frame();
    let (payload, _) = split_frame(&framed).unwrap().unwrap();
    assert!(super::handshake::is_established(payload));
    assert!(!super::handshake::is_established(&payload[..3]));
    assert!(!super::handshake::is_established(b"HW\x01\x23"));
}

#[test]
fn probes_are_padded_and_short_ones_refused() {
    let probe = Probe {
        nonce: 9,
        requester: id(1),
        target: id(2),
    };
    let bytes = Datagram::Probe(probe).encode();
    assert_eq!(bytes.len(), MIN_PROBE_LEN);
    assert_eq!(decode(&bytes), Ok(Datagram::Probe(probe)));
    assert!(matches!(
        decode(&bytes[..MIN_PROBE_LEN - 1]),
        Err(DecodeError::ProbeTooShort { .. })
    ));
    let ack = ProbeAck::sign(&key(2), &probe);
    let ack_bytes = Datagram::ProbeAck(ack).encode();
    assert!(
        ack_bytes.len() < bytes.len() / 2,
        "the answer must be much smaller than the probe"
    );
    assert_eq!(decode(&ack_bytes), Ok(Datagram::ProbeAck(ack)));
    assert!(ack.verify(&id(1)));
    assert!(
        !ack.verify(&id(3)),
        "an answer to someone else's probe must not count"
    );
}

#[test]
fn not_neighbour_is_signed_by_its_sender() {
    let nn = NotNeighbour::sign(&key(5), 77);
    assert!(nn.verify());
    let forged = NotNeighbour {
        responder: id(6),
        ..nn
    };
    assert!(!forged.verify());
    let bytes = Datagram::NotNeighbour(nn).encode();
    assert_eq!(decode(&bytes), Ok(Datagram::NotNeighbour(nn)));
}

#[test]
fn outer_frame_errors_are_typed() {
    assert_eq!(decode(b""), Err(DecodeError::Truncated("magic")));
    assert_eq!(decode(b"XX\x02\x01"), Err(DecodeError::BadMagic));
    assert_eq!(
        decode(b"HW\x01\x01"),
        Err(DecodeError::UnsupportedVersion(1))
    );
    assert_eq!(
        decode(b"HW\x03\x01"),
        Err(DecodeError::UnsupportedVersion(3))
    );
    assert!(matches!(
        decode(b"HW\x02\x7f"),
        Err(DecodeError::UnknownKind { .. })
    ));
    assert!(matches!(
        decode(&[0u8; MAX_DATAGRAM + 1]),
        Err(DecodeError::TooLong { .. })
    ));
}

#[test]
fn oversized_lists_are_refused_before_allocating() {
    let mut body = vec![0x10];
    body.extend_from_slice(&[0; 24]);
    body.push(MAX_HEARTBEAT_NEIGHBOURS as u8 + 1);
    assert!(matches!(
        PeerMsg::decode(&body),
        Err(DecodeError::TooMany { .. })
    ));
}

fn handshake(
    purpose: Purpose,
    decision: Decision,
) -> (InitiatorOutcome, Option<Responder>, Vec<u8>) {
    let (initiator, hello_frame) = Initiator::start(&key(1), addr(1), purpose, [11; 32]);
    let Ok(Some((hello_payload, used))) = split_frame(&hello_frame) else {
        panic!()
    };
    assert_eq!(used, hello_frame.len());
    let hello = Hello::decode(hello_payload).unwrap();
    assert_eq!(hello.initiator, id(1));
    let (pending, welcome_frame) = Responder::answer(
        &key(2),
        hello_payload,
        &hello,
        decision,
        500,
        entries(3),
        [22; 32],
    );
    let Ok(Some((welcome_payload, _))) = split_frame(&welcome_frame) else {
        panic!()
    };
    let outcome = initiator
        .on_welcome(welcome_payload, Some(id(2)), 600)
        .unwrap();
    (outcome, pending, welcome_frame)
}

#[test]
fn a_completed_handshake_gives_matching_keys_each_way() {
    let (outcome, pending, _) = handshake(Purpose::Link, Decision::Accept);
    let InitiatorOutcome::Linked {
        responder,
        responder_link_id,
        keys,
        neighbours,
        confirm,
    } = outcome
    else {
        panic!("expected a link");
    };
    assert_eq!(
        (responder, responder_link_id, neighbours.len()),
        (id(2), 500, 3)
    );
    let Ok(Some((confirm_payload, _))) = split_frame(&confirm) else {
        panic!()
    };
    let accepted = pending
        .expect("responder waits for confirm")
        .on_confirm(confirm_payload)
        .unwrap();
    assert_eq!(
        (accepted.initiator, accepted.initiator_link_id),
        (id(1), 600)
    );
    assert_eq!(keys.send, accepted.keys.recv);
    assert_eq!(keys.recv, accepted.keys.send);
    assert_ne!(keys.send, keys.recv);
}

#[test]
fn a_full_peer_answers_with_its_neighbours_and_no_link() {
    let (outcome, pending, _) = handshake(Purpose::Link, Decision::Full);
    assert!(pending.is_none());
    let InitiatorOutcome::NotLinked {
        decision,
        neighbours,
        ..
    } = outcome
    else {
        panic!()
    };
    assert_eq!((decision, neighbours.len()), (Decision::Full, 3));
    let (outcome, pending, _) = handshake(Purpose::Query, Decision::Accept);
    assert!(pending.is_none() && matches!(outcome, InitiatorOutcome::NotLinked { .. }));
}

#[test]
fn an_impostor_or_tampered_welcome_is_refused() {
    let (initiator, hello_frame) = Initiator::start(&key(1), addr(1), Purpose::Link, [11; 32]);
    let (hello_payload, _) = split_frame(&hello_frame).unwrap().unwrap();
    let hello = Hello::decode(hello_payload).unwrap();
    let (_, welcome_frame) = Responder::answer(
        &key(3),
        hello_payload,
        &hello,
        Decision::Accept,
        1,
        vec![],
        [22; 32],
    );
    let (payload, _) = split_frame(&welcome_frame).unwrap().unwrap();
    let err = initiator.on_welcome(payload, Some(id(2)), 1).unwrap_err();
    assert!(matches!(err, HandshakeError::WrongPeer { .. }));

    let (initiator, _) = Initiator::start(&key(1), addr(1), Purpose::Link, [11; 32]);
    let mut tampered = payload.to_vec();
    let link_id_at = 4 + 32 + 32 + 1 + 7;
    tampered[link_id_at] ^= 1;
    assert_eq!(
        initiator.on_welcome(&tampered, None, 1),
        Err(HandshakeError::BadSignature)
    );
}

#[test]
fn frames_are_split_only_when_complete_and_bounded() {
    assert_eq!(split_frame(&[0, 0]), Ok(None));
    assert_eq!(split_frame(&[0, 0, 0, 3, 1, 2]), Ok(None));
    assert_eq!(
        split_frame(&[0, 0, 0, 2, 1, 2, 9]),
        Ok(Some((&[1u8, 2][..], 6)))
    );
    let huge = (MAX_FRAME as u32 + 1).to_be_bytes();
    assert!(matches!(
        split_frame(&huge),
        Err(DecodeError::TooLong { .. })
    ));
}

proptest! {
    #[test]
    fn datagram_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1300)) {
        if let Ok(Datagram::Link(frame)) = decode(&bytes) {
            let _ = frame.open(&[0; 32]);
        }
        let _ = PeerMsg::decode(&bytes);
        let _ = Hello::decode(&bytes);
    }

    #[test]
    fn heartbeats_round_trip_and_fit_a_datagram(
        seq in any::<u64>(),
        incarnation in any::<u64>(),
        summary_version in any::<u64>(),
        n in 0..=MAX_HEARTBEAT_NEIGHBOURS,
        v6 in any::<bool>(),
    ) {
        let mut neighbours = entries(n);
        if v6 {
            for e in &mut neighbours {
                e.addr.ip = "2001:db8::1".parse().unwrap();
            }
        }
        let msg = PeerMsg::Heartbeat(Heartbeat { seq, incarnation, summary_version, neighbours });
        let bytes = seal(seq, incarnation, &msg, &[3; 32]);
        prop_assert!(bytes.len() <= MAX_DATAGRAM, "{} bytes", bytes.len());
        let Ok(Datagram::Link(frame)) = decode(&bytes) else { panic!() };
        prop_assert_eq!(frame.open(&[3; 32]), Ok(msg));
    }

    #[test]
    fn summary_chunks_round_trip(data in proptest::collection::vec(any::<u8>(), 0..=1024)) {
        let msg = PeerMsg::SummaryChunk { version: 1, chunk: 0, chunks: 1, data };
        let bytes = seal(1, 1, &msg, &[3; 32]);
        prop_assert!(bytes.len() <= MAX_DATAGRAM);
        let Ok(Datagram::Link(frame)) = decode(&bytes) else { panic!() };
        prop_assert_eq!(frame.open(&[3; 32]), Ok(msg));
    }
}

fn corpus_dir(target: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Valid datagrams of every kind: the fuzzer's starting corpus.
fn seed_datagrams() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = samples()
        .iter()
        .enumerate()
        .map(|(i, msg)| (format!("link-{i}"), seal(i as u64 + 1, 1, msg, &[9; 32])))
        .collect();
    let probe = Probe {
        nonce: 1,
        requester: id(1),
        target: id(2),
    };
    seeds.push(("probe".into(), Datagram::Probe(probe).encode()));
    seeds.push((
        "probe-ack".into(),
        Datagram::ProbeAck(ProbeAck::sign(&key(2), &probe)).encode(),
    ));
    seeds.push((
        "not-neighbour".into(),
        Datagram::NotNeighbour(NotNeighbour::sign(&key(3), 5)).encode(),
    ));
    seeds
}

/// Regenerates the seed corpus: `cargo test -p highway-wire -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes files; run by hand to refresh fuzz/corpus"]
fn write_fuzz_seeds() {
    let dir = corpus_dir("datagram");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in seed_datagrams() {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let (_, hello) = Initiator::start(&key(1), addr(1), Purpose::Link, [11; 32]);
    let dir = corpus_dir("handshake");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hello"), hello).unwrap();
}

/// Replays the whole fuzz corpus (seeds and whatever fuzzing added) through the decoders
/// on every test run, so CI exercises it on the stable toolchain.
#[test]
fn the_fuzz_corpus_decodes_without_panicking() {
    let mut files = 0;
    for target in ["datagram", "handshake"] {
        let Ok(entries) = std::fs::read_dir(corpus_dir(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let bytes = std::fs::read(entry.path()).unwrap();
            if let Ok(Datagram::Link(frame)) = decode(&bytes) {
                let _ = frame.open(&[9; 32]);
            }
            let _ = PeerMsg::decode_padded(&bytes);
            if let Ok(Some((payload, _))) = split_frame(&bytes) {
                let _ = Hello::decode(payload);
            }
            files += 1;
        }
    }
    assert!(
        files >= seed_datagrams().len(),
        "the fuzz corpus is missing ({files} files)"
    );
}
