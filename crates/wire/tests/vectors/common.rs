//! Shared helpers: where the files live, how they are rendered, fixed keys.

use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use highway_wire::NodeId;

/// Produces a vector file's contents.
pub type Generator = fn() -> String;

/// Every vector file and the function that produces its contents.
pub const FILES: [(&str, Generator); 4] = [
    ("tokens.json", super::tokens::generate),
    ("summary.json", super::summary::generate),
    ("handshake.json", super::handshake::generate),
    ("datagrams.json", super::datagrams::generate),
];

pub fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/vectors")
        .join(name)
}

/// Pretty JSON with a final newline, straight from structs (never through
/// `serde_json::Value`, whose key order depends on serde_json's features), so fields come
/// in declaration order.
pub fn render<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("vectors serialise") + "\n"
}

/// Reads a vector file as another implementation would.
pub fn load<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let text = std::fs::read_to_string(path(name)).expect("vector file readable");
    serde_json::from_str(&text).expect("vector file parses")
}

pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("vector hex")
}

pub fn unhex32(s: &str) -> [u8; 32] {
    unhex(s).try_into().expect("32 bytes")
}

/// The identity key whose RFC 8032 secret seed is `[seed; 32]`.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn id(seed: u8) -> NodeId {
    NodeId::from_key(&key(seed).verifying_key())
}
