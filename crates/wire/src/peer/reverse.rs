//! The first frame of a reverse connection: a peer that cannot be dialled, asked by
//! [`super::PeerMsg::Reverse`] to connect out, opens TCP to the given address and sends
//! this frame on the same port (and with the same framing) as a handshake's hello. It
//! names the token it was given and proves, by signing it, that it is the peer the token
//! was meant for: someone who saw the token go by cannot take the connection's place.
//!
//! ```text
//! magic "HW" | version | kind 0x25 | token [16] | holder id [32] | signature [64]
//! ```
//!
//! The signature is ed25519, by the holder's key, over `"highway-reverse-v1\0" || token`.
//! After the frame the connection carries HTTP/1.1 requests from the side that asked to
//! the holder's file server (docs/PROTOCOL.md, "Relays").

use ed25519_dalek::{Signer, SigningKey};

use super::codec::{Reader, Writer};
use super::handshake::{HandshakeError, frame, frame_header, read_header};
use crate::NodeId;

const KIND: u8 = 0x25;
const DOMAIN: &[u8] = b"highway-reverse-v1\0";

/// A holder's signed answer to a reverse request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReverseHello {
    pub token: [u8; 16],
    pub holder: NodeId,
    pub signature: [u8; 64],
}

fn signed_bytes(token: &[u8; 16]) -> Vec<u8> {
    [DOMAIN, token.as_slice()].concat()
}

impl ReverseHello {
    /// Signs `token` with the holder's key.
    pub fn sign(key: &SigningKey, token: [u8; 16]) -> Self {
        Self {
            token,
            holder: NodeId::from_key(&key.verifying_key()),
            signature: key.sign(&signed_bytes(&token)).to_bytes(),
        }
    }

    /// True when the signature is the holder's.
    pub fn verify(&self) -> bool {
        self.holder
            .verify(&signed_bytes(&self.token), &self.signature)
    }

    /// The framed bytes to send first.
    pub fn encode_framed(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(120);
        frame_header(&mut w, KIND);
        w.bytes(&self.token);
        w.node_id(&self.holder);
        w.bytes(&self.signature);
        frame(&w.buf)
    }

    /// Decodes a frame payload; the signature is not checked here ([`ReverseHello::verify`]).
    pub fn decode(payload: &[u8]) -> Result<Self, HandshakeError> {
        let mut r = Reader::new(payload);
        if read_header(&mut r)? != KIND {
            return Err(HandshakeError::UnexpectedFrame {
                expected: "reverse hello",
            });
        }
        let hello = Self {
            token: r.array("reverse token")?,
            holder: r.node_id("holder")?,
            signature: r.array("signature")?,
        };
        r.finish()?;
        Ok(hello)
    }

    /// True when a frame payload is a reverse hello rather than a handshake's hello
    /// (whatever else it holds).
    pub fn is_reverse(payload: &[u8]) -> bool {
        let mut r = Reader::new(payload);
        matches!(read_header(&mut r), Ok(KIND))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::handshake::split_frame;

    #[test]
    fn a_reverse_hello_round_trips_and_only_the_holder_can_sign_it() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let hello = ReverseHello::sign(&key, [3; 16]);
        assert!(hello.verify());
        let framed = hello.encode_framed();
        let (payload, used) = split_frame(&framed).unwrap().unwrap();
        assert_eq!(used, framed.len());
        assert!(ReverseHello::is_reverse(payload));
        assert_eq!(ReverseHello::decode(payload).unwrap(), hello);

        let other = SigningKey::from_bytes(&[8; 32]);
        let forged = ReverseHello {
            holder: NodeId::from_key(&other.verifying_key()),
            ..hello.clone()
        };
        assert!(!forged.verify(), "another key's id with this signature");
        let mut wrong_token = hello.clone();
        wrong_token.token[0] ^= 1;
        assert!(!wrong_token.verify());
        assert!(ReverseHello::decode(&payload[..payload.len() - 1]).is_err());
    }
}
