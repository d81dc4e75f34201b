//! Identifiers: who a peer is ([`NodeId`]) and what a file is ([`ContentId`]).

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length in bytes of a [`NodeId`] and a [`ContentId`].
pub const ID_LEN: usize = 32;

/// Number of hex characters in the short printable form of an id.
pub const SHORT_LEN: usize = 10;

/// Why a string is not a valid id. Nothing was created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdParseError {
    #[error("expected {expected} hex characters, got {got}")]
    Length { expected: usize, got: usize },
    #[error("not hexadecimal: {0}")]
    NotHex(String),
    #[error("not a valid ed25519 public key")]
    NotAKey,
}

fn parse_hex32(s: &str) -> Result<[u8; ID_LEN], IdParseError> {
    if s.len() != ID_LEN * 2 {
        return Err(IdParseError::Length {
            expected: ID_LEN * 2,
            got: s.len(),
        });
    }
    let mut out = [0u8; ID_LEN];
    hex::decode_to_slice(s, &mut out).map_err(|e| IdParseError::NotHex(e.to_string()))?;
    Ok(out)
}

/// A peer's identity: its ed25519 public key.
///
/// Printed as 64 lowercase hex characters; [`NodeId::short`] gives the first
/// [`SHORT_LEN`] of them for logs and tables. The bytes are always a valid curve point,
/// so a `NodeId` can verify signatures without further checks.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; ID_LEN]);

/// Set only by the simulator (see [`trust_ids_in_this_process`]).
static TRUST_IDS: AtomicBool = AtomicBool::new(false);

/// **Simulation only.** From now on this process accepts any 32 bytes as a [`NodeId`]
/// without checking that they are a curve point. Checking is a square root in the field
/// (about 5 µs), and every heartbeat carries the sender's neighbour ids, so in a
/// simulation of thousands of peers in one process that check was three quarters of the
/// run time; where every peer is simulated and honest it never fails. Signatures are
/// still verified in full ([`NodeId::verify`] checks the key itself). Never call this in
/// a process that talks to a real network.
pub fn trust_ids_in_this_process() {
    TRUST_IDS.store(true, Ordering::Relaxed);
}

impl NodeId {
    /// Accepts `bytes` only when they are a valid ed25519 public key.
    pub fn from_bytes(bytes: [u8; ID_LEN]) -> Result<Self, IdParseError> {
        if !TRUST_IDS.load(Ordering::Relaxed) {
            VerifyingKey::from_bytes(&bytes).map_err(|_| IdParseError::NotAKey)?;
        }
        Ok(Self(bytes))
    }

    pub fn from_key(key: &VerifyingKey) -> Self {
        Self(key.to_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// The first [`SHORT_LEN`] hex characters: enough to tell peers apart by eye.
    pub fn short(&self) -> String {
        let mut s = hex::encode(&self.0[..SHORT_LEN / 2]);
        s.truncate(SHORT_LEN);
        s
    }

    /// True when `signature` is this key's strict ed25519 signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let signature = Signature::from_bytes(signature);
        key.verify_strict(message, &signature).is_ok()
    }
}

/// Lets maps keyed by `NodeId` be searched with raw bytes from an index, without
/// re-validating the key (it was validated when the entry was made).
impl std::borrow::Borrow<[u8; ID_LEN]> for NodeId {
    fn borrow(&self) -> &[u8; ID_LEN] {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

impl FromStr for NodeId {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_bytes(parse_hex32(s)?)
    }
}

/// A file's identity: the BLAKE3 hash of its whole content, printed as 64 hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId([u8; ID_LEN]);

impl ContentId {
    pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The id of `content`, hashed in one go (for small inputs and tests; files are
    /// hashed incrementally by the share crate).
    pub fn of(content: &[u8]) -> Self {
        Self(*blake3::hash(content).as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    pub fn short(&self) -> String {
        let mut s = hex::encode(&self.0[..SHORT_LEN / 2]);
        s.truncate(SHORT_LEN);
        s
    }
}

impl From<blake3::Hash> for ContentId {
    fn from(hash: blake3::Hash) -> Self {
        Self(*hash.as_bytes())
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({})", self.short())
    }
}

impl FromStr for ContentId {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex32(s).map(Self)
    }
}

macro_rules! hex_serde {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_serde!(NodeId);
hex_serde!(ContentId);

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn node_id_round_trips_through_its_printed_form() {
        let id = NodeId::from_key(&key(7).verifying_key());
        let printed = id.to_string();
        assert_eq!(printed.len(), 64);
        assert_eq!(printed.parse::<NodeId>(), Ok(id));
        assert!(printed.starts_with(&id.short()));
        assert_eq!(id.short().len(), SHORT_LEN);
    }

    #[test]
    fn node_id_rejects_bad_text() {
        assert!(matches!(
            "abc".parse::<NodeId>(),
            Err(IdParseError::Length { .. })
        ));
        let not_hex = "z".repeat(64);
        assert!(matches!(
            not_hex.parse::<NodeId>(),
            Err(IdParseError::NotHex(_))
        ));
    }

    #[test]
    fn node_id_verifies_only_its_own_signatures() {
        let signer = key(1);
        let id = NodeId::from_key(&signer.verifying_key());
        let sig = signer.sign(b"hello").to_bytes();
        assert!(id.verify(b"hello", &sig));
        assert!(!id.verify(b"hellO", &sig));
        let other = NodeId::from_key(&key(2).verifying_key());
        assert!(!other.verify(b"hello", &sig));
    }

    #[test]
    fn content_id_is_blake3_of_the_bytes() {
        let id = ContentId::of(b"abc");
        assert_eq!(
            id.to_string(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert_eq!(id.to_string().parse::<ContentId>(), Ok(id));
    }

    #[test]
    fn ids_serialize_as_hex_strings() {
        let id = NodeId::from_key(&key(3).verifying_key());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<NodeId>("\"00\"").is_err());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_text_parses_to_an_id_or_an_error(text in ".{0,80}") {
            let _ = text.parse::<NodeId>();
            let _ = text.parse::<ContentId>();
        }

        #[test]
        fn node_ids_from_any_bytes_round_trip_when_valid(bytes in any::<[u8; 32]>()) {
            if let Ok(id) = NodeId::from_bytes(bytes) {
                prop_assert_eq!(id.to_string().parse::<NodeId>(), Ok(id));
            }
        }

        #[test]
        fn content_ids_round_trip(bytes in any::<[u8; 32]>()) {
            let id = ContentId::from_bytes(bytes);
            prop_assert_eq!(id.to_string().parse::<ContentId>(), Ok(id));
            prop_assert_eq!(id.to_string().len(), 64);
        }
    }
}
