//! docs/vectors/handshake.json: complete handshakes between two fixed identities with fixed
//! ephemeral keys, every frame, the exact bytes each signature covers, and the link keys.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ed25519_dalek::SigningKey;
use highway_wire::peer::NeighbourEntry;
use highway_wire::peer::handshake::{
    Decision, Hello, Initiator, InitiatorOutcome, Purpose, Responder, Welcome, established_frame,
};
use highway_wire::{NodeId, PeerAddr};
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};

use super::common::{id, key, load, render, unhex, unhex32};

#[derive(Serialize, Deserialize)]
pub struct File {
    about: String,
    identities: Vec<Identity>,
    transcripts: Vec<Transcript>,
}

#[derive(Serialize, Deserialize)]
struct Identity {
    role: String,
    /// The ed25519 secret seed (RFC 8032).
    secret_seed_hex: String,
    /// The public key: the NodeId.
    node_id: String,
    addr: PeerAddr,
}

#[derive(Serialize, Deserialize)]
pub struct Transcript {
    about: String,
    purpose: u8,
    decision: u8,
    /// The id the initiator recognises the link by (in its Confirm), as 8 big-endian
    /// bytes: ids use all 64 bits, more than a JSON number holds exactly everywhere.
    initiator_link_id_hex: String,
    /// The id in the Welcome, likewise.
    responder_link_id_hex: String,
    /// X25519 secrets (RFC 7748, clamped when used) and their public keys.
    initiator_ephemeral_secret_hex: String,
    initiator_ephemeral_public_hex: String,
    responder_ephemeral_secret_hex: String,
    responder_ephemeral_public_hex: String,
    /// Frame payloads; on the wire each is preceded by its u32 big-endian length.
    hello_hex: String,
    hello_frame_hex: String,
    welcome_hex: String,
    /// "highway-welcome-v1\0" ‖ len‖hello ‖ len‖(welcome without its signature).
    welcome_signed_message_hex: String,
    confirm_hex: Option<String>,
    /// "highway-confirm-v1\0" ‖ len‖hello ‖ len‖welcome ‖ len‖(confirm without signature).
    confirm_signed_message_hex: Option<String>,
    established_hex: Option<String>,
    shared_secret_hex: Option<String>,
    /// BLAKE3(len‖hello ‖ len‖welcome ‖ len‖confirm), every part whole (signatures included).
    transcript_hash_hex: Option<String>,
    /// Key for datagrams from the initiator to the responder.
    k_i2r_hex: Option<String>,
    /// Key for datagrams from the responder to the initiator.
    k_r2i_hex: Option<String>,
}

const INITIATOR_SEED: u8 = 1;
const RESPONDER_SEED: u8 = 2;
const INITIATOR_EPHEMERAL: [u8; 32] = [0x11; 32];
const RESPONDER_EPHEMERAL: [u8; 32] = [0x22; 32];
pub const INITIATOR_LINK_ID: u64 = 0x0102_0304_0506_0708;
pub const RESPONDER_LINK_ID: u64 = 0x1112_1314_1516_1718;

fn initiator_addr() -> PeerAddr {
    PeerAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 4000, 4001)
}

fn responder_addr() -> PeerAddr {
    PeerAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), 5000, 5001)
}

/// The responder's other neighbours, as its Welcome lists them.
fn responder_neighbours() -> Vec<NeighbourEntry> {
    vec![
        NeighbourEntry {
            id: id(3),
            addr: PeerAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4)), 6000, 6001),
            dialable: true,
        },
        NeighbourEntry {
            id: id(4),
            addr: PeerAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 7000, 7001),
            dialable: true,
        },
    ]
}

/// A transcript's parts, each prefixed with its u32 big-endian length, after `domain`.
pub fn transcript(domain: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut out = domain.to_vec();
    for part in parts {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

fn public_hex(seed: [u8; 32]) -> String {
    hex::encode(PublicKey::from(&StaticSecret::from(seed)).as_bytes())
}

fn run(about: &str, purpose: Purpose, decision: Decision, responder_link_id: u64) -> Transcript {
    let (initiator, hello_frame) = Initiator::start(
        &key(INITIATOR_SEED),
        initiator_addr(),
        purpose,
        INITIATOR_EPHEMERAL,
    );
    let hello = hello_frame[4..].to_vec();
    let decoded = Hello::decode(&hello).expect("own hello");
    let (responder, welcome_frame) = Responder::answer(
        &key(RESPONDER_SEED),
        &hello,
        &decoded,
        decision,
        responder_link_id,
        responder_neighbours(),
        RESPONDER_EPHEMERAL,
    );
    let welcome = welcome_frame[4..].to_vec();
    let welcome_signed = transcript(
        b"highway-welcome-v1\0",
        &[&hello, &welcome[..welcome.len() - 64]],
    );
    let outcome = initiator
        .on_welcome(&welcome, Some(id(RESPONDER_SEED)), INITIATOR_LINK_ID)
        .expect("own welcome");
    let mut t = Transcript {
        about: about.into(),
        purpose: purpose as u8,
        decision: decision as u8,
        initiator_link_id_hex: hex::encode(INITIATOR_LINK_ID.to_be_bytes()),
        responder_link_id_hex: hex::encode(responder_link_id.to_be_bytes()),
        initiator_ephemeral_secret_hex: hex::encode(INITIATOR_EPHEMERAL),
        initiator_ephemeral_public_hex: public_hex(INITIATOR_EPHEMERAL),
        responder_ephemeral_secret_hex: hex::encode(RESPONDER_EPHEMERAL),
        responder_ephemeral_public_hex: public_hex(RESPONDER_EPHEMERAL),
        hello_hex: hex::encode(&hello),
        hello_frame_hex: hex::encode(&hello_frame),
        welcome_hex: hex::encode(&welcome),
        welcome_signed_message_hex: hex::encode(welcome_signed),
        confirm_hex: None,
        confirm_signed_message_hex: None,
        established_hex: None,
        shared_secret_hex: None,
        transcript_hash_hex: None,
        k_i2r_hex: None,
        k_r2i_hex: None,
    };
    let InitiatorOutcome::Linked { keys, confirm, .. } = outcome else {
        assert!(
            responder.is_none(),
            "no Confirm follows: the responder is done"
        );
        return t;
    };
    let confirm = confirm[4..].to_vec();
    let accepted = responder
        .expect("accepted link")
        .on_confirm(&confirm)
        .expect("own confirm");
    assert_eq!(accepted.keys.send, keys.recv);
    let shared = StaticSecret::from(INITIATOR_EPHEMERAL)
        .diffie_hellman(&PublicKey::from(&StaticSecret::from(RESPONDER_EPHEMERAL)));
    let th = blake3::hash(&transcript(&[], &[&hello, &welcome, &confirm]));
    t.confirm_signed_message_hex = Some(hex::encode(transcript(
        b"highway-confirm-v1\0",
        &[&hello, &welcome, &confirm[..confirm.len() - 64]],
    )));
    t.confirm_hex = Some(hex::encode(&confirm));
    t.established_hex = Some(hex::encode(&established_frame()[4..]));
    t.shared_secret_hex = Some(hex::encode(shared.as_bytes()));
    t.transcript_hash_hex = Some(th.to_hex().to_string());
    t.k_i2r_hex = Some(hex::encode(keys.send));
    t.k_r2i_hex = Some(hex::encode(keys.recv));
    t
}

/// The accepted link's keys and ids, for the datagram vectors.
pub fn accepted_link() -> Transcript {
    run(
        "link requested and accepted",
        Purpose::Link,
        Decision::Accept,
        RESPONDER_LINK_ID,
    )
}

impl Transcript {
    pub fn k_i2r(&self) -> [u8; 32] {
        unhex32(self.k_i2r_hex.as_deref().expect("accepted"))
    }
    pub fn k_r2i(&self) -> [u8; 32] {
        unhex32(self.k_r2i_hex.as_deref().expect("accepted"))
    }
}

fn identity(role: &str, seed: u8, addr: PeerAddr) -> Identity {
    Identity {
        role: role.into(),
        secret_seed_hex: hex::encode([seed; 32]),
        node_id: id(seed).to_string(),
        addr,
    }
}

fn build() -> File {
    File {
        about: "Handshake vectors, docs/PROTOCOL.md \"Handshake (TCP)\" and \"Test vectors\". \
                Hex strings are frame payloads unless named *_frame_hex (length-prefixed). \
                In a full or reject Welcome, and in any answer to a query Hello, link_id is \
                meaningless: a receiver ignores it."
            .into(),
        identities: vec![
            identity("initiator", INITIATOR_SEED, initiator_addr()),
            identity("responder", RESPONDER_SEED, responder_addr()),
        ],
        transcripts: vec![
            accepted_link(),
            run(
                "link requested, responder full: Welcome only, then the responder closes",
                Purpose::Link,
                Decision::Full,
                0x2122_2324_2526_2728,
            ),
            run(
                "link requested, responder rejects (already linked, leaving, or itself)",
                Purpose::Link,
                Decision::Reject,
                0x3132_3334_3536_3738,
            ),
            run(
                "query (purpose 2), responder has a free slot: Welcome only, no Confirm",
                Purpose::Query,
                Decision::Accept,
                0x4142_4344_4546_4748,
            ),
        ],
    }
}

pub fn generate() -> String {
    render(&build())
}

fn u64_hex(s: &str) -> u64 {
    u64::from_be_bytes(unhex(s).try_into().expect("8 bytes"))
}

fn verify(node_id: &str, message: &[u8], signature: &[u8]) {
    let id: NodeId = node_id.parse().expect("node id");
    assert!(
        id.verify(message, &signature.try_into().expect("64 bytes")),
        "signature"
    );
}

#[test]
fn transcripts_check_out_from_the_formulas() {
    let file: File = load("handshake.json");
    let [initiator, responder] = &file.identities[..] else {
        panic!("two identities")
    };
    for (who, seed) in [(initiator, INITIATOR_SEED), (responder, RESPONDER_SEED)] {
        let key = SigningKey::from_bytes(&unhex32(&who.secret_seed_hex));
        assert_eq!(
            NodeId::from_key(&key.verifying_key()).to_string(),
            who.node_id
        );
        assert_eq!(key.to_bytes(), [seed; 32]);
    }
    let mut linked = 0;
    for t in &file.transcripts {
        let hello = unhex(&t.hello_hex);
        let welcome = unhex(&t.welcome_hex);
        // Framing: u32 big-endian length, then the payload.
        let frame = unhex(&t.hello_frame_hex);
        assert_eq!(frame[..4], (hello.len() as u32).to_be_bytes());
        assert_eq!(frame[4..], hello[..]);
        let h = Hello::decode(&hello).expect("hello decodes");
        assert_eq!(h.purpose as u8, t.purpose);
        assert_eq!(h.initiator.to_string(), initiator.node_id);
        assert_eq!(h.initiator_addr, initiator.addr);
        assert_eq!(hex::encode(h.ephemeral), t.initiator_ephemeral_public_hex);
        let w = Welcome::decode(&welcome).expect("welcome decodes");
        assert_eq!(
            (w.decision as u8, w.link_id),
            (t.decision, u64_hex(&t.responder_link_id_hex))
        );
        let signed = transcript(
            b"highway-welcome-v1\0",
            &[&hello, &welcome[..welcome.len() - 64]],
        );
        assert_eq!(hex::encode(&signed), t.welcome_signed_message_hex);
        verify(&responder.node_id, &signed, &welcome[welcome.len() - 64..]);
        let Some(confirm) = t.confirm_hex.as_deref().map(unhex) else {
            assert!(t.decision != 1 || t.purpose == 2, "{}", t.about);
            continue;
        };
        linked += 1;
        let signed = transcript(
            b"highway-confirm-v1\0",
            &[&hello, &welcome, &confirm[..confirm.len() - 64]],
        );
        assert_eq!(Some(hex::encode(&signed)), t.confirm_signed_message_hex);
        verify(&initiator.node_id, &signed, &confirm[confirm.len() - 64..]);
        assert_eq!(hex::encode(&confirm[4..12]), t.initiator_link_id_hex);
        // Keys: X25519 both ways, transcript hash, BLAKE3 derive_key per direction.
        let i_secret = StaticSecret::from(unhex32(&t.initiator_ephemeral_secret_hex));
        let r_secret = StaticSecret::from(unhex32(&t.responder_ephemeral_secret_hex));
        let shared = i_secret.diffie_hellman(&PublicKey::from(&r_secret));
        assert_eq!(
            shared.as_bytes(),
            r_secret
                .diffie_hellman(&PublicKey::from(&i_secret))
                .as_bytes()
        );
        assert_eq!(Some(hex::encode(shared.as_bytes())), t.shared_secret_hex);
        let th = blake3::hash(&transcript(&[], &[&hello, &welcome, &confirm]));
        assert_eq!(Some(th.to_hex().to_string()), t.transcript_hash_hex);
        let material = [shared.as_bytes().as_slice(), th.as_bytes()].concat();
        let i2r = blake3::derive_key("highway link v1 initiator to responder", &material);
        let r2i = blake3::derive_key("highway link v1 responder to initiator", &material);
        assert_eq!((t.k_i2r(), t.k_r2i()), (i2r, r2i));
        assert_eq!(t.established_hex.as_deref(), Some("48570224"));
    }
    assert_eq!(linked, 1, "one transcript links");
}
