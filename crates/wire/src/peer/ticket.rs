//! Tickets: one string that carries what is needed to fetch a file — its content hash,
//! size and name, and its holder (node id, file server, whether it can be dialled, the
//! relays of one that cannot) — like `sendme`'s tickets. `highway share` prints them,
//! `highway get TICKET` fetches the file: from that holder, or from any other peer the
//! overlay finds holding the same content. The content hash makes whatever arrives
//! verifiable, so a ticket need not be trusted.
//!
//! Form (docs/PROTOCOL.md, *Tickets*): `hw1` followed by the RFC 4648 base32 alphabet in
//! lowercase, without padding, of one version byte (1) and the holder's hit as a
//! QueryHits message carries it (hops 0). A link form for browsers and the web UI is
//! `highway://` followed by the ticket.

use std::fmt;
use std::str::FromStr;

use super::codec::{DecodeError, Reader, Writer};
use super::search::Hit;

/// What every ticket starts with.
pub const TICKET_PREFIX: &str = "hw1";
/// The link form's scheme.
pub const LINK_SCHEME: &str = "highway://";
/// The version byte inside.
const VERSION: u8 = 1;
/// Longest ticket text accepted (a hit is at most a few hundred bytes).
pub const MAX_TICKET_CHARS: usize = 2048;

/// A ticket: the holder's hit for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket(pub Hit);

/// Why a string is not a ticket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("a ticket starts with `{TICKET_PREFIX}` (or `{LINK_SCHEME}{TICKET_PREFIX}`)")]
    NoPrefix,
    #[error("a ticket is at most {MAX_TICKET_CHARS} characters; this is {0}")]
    TooLong(usize),
    #[error("the ticket is damaged: `{0}` is not one of its characters (a-z, 2-7)")]
    BadCharacter(char),
    #[error("the ticket is damaged: its length does not fit its encoding")]
    BadLength,
    #[error("ticket version {0} is not known to this version of highway")]
    UnknownVersion(u8),
    #[error("the ticket is damaged: {0}")]
    Decode(#[from] DecodeError),
}

impl Ticket {
    /// The `highway://` link form.
    pub fn link(&self) -> String {
        format!("{LINK_SCHEME}{self}")
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hit = Hit {
            hops: 0,
            ..self.0.clone()
        };
        let mut w = Writer::with_capacity(1 + hit.encoded_len());
        w.u8(VERSION);
        hit.write(&mut w);
        write!(f, "{TICKET_PREFIX}{}", base32(&w.buf))
    }
}

impl FromStr for Ticket {
    type Err = TicketError;

    fn from_str(text: &str) -> Result<Self, TicketError> {
        let text = text.trim();
        if text.len() > MAX_TICKET_CHARS {
            return Err(TicketError::TooLong(text.len()));
        }
        let text = text.strip_prefix(LINK_SCHEME).unwrap_or(text);
        let text = text.trim_end_matches('/');
        let body = text
            .strip_prefix(TICKET_PREFIX)
            .ok_or(TicketError::NoPrefix)?;
        let bytes = unbase32(body)?;
        let mut r = Reader::new(&bytes);
        let version = r.u8("ticket version")?;
        if version != VERSION {
            return Err(TicketError::UnknownVersion(version));
        }
        let hit = Hit::read(&mut r)?;
        r.finish()?;
        Ok(Self(hit))
    }
}

/// Whether `text` looks like a ticket or its link (so a command can tell it from a hash).
pub fn looks_like_ticket(text: &str) -> bool {
    let text = text.trim();
    text.strip_prefix(LINK_SCHEME)
        .unwrap_or(text)
        .starts_with(TICKET_PREFIX)
}

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// RFC 4648 base32, lowercase, no padding.
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

fn unbase32(text: &str) -> Result<Vec<u8>, TicketError> {
    // Lengths a whole number of bytes leaves: 8 characters per 5 bytes, and 2, 4, 5 or 7
    // for a last 1, 2, 3 or 4.
    if matches!(text.len() % 8, 1 | 3 | 6) {
        return Err(TicketError::BadLength);
    }
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.chars() {
        let lower = c.to_ascii_lowercase();
        let value = ALPHABET
            .iter()
            .position(|&a| char::from(a) == lower)
            .ok_or(TicketError::BadCharacter(c))?;
        acc = (acc << 5) | value as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // The leftover bits are padding and must be zero (one encoding per ticket).
    if acc != 0 {
        return Err(TicketError::BadLength);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::search::Relay;
    use crate::{ContentId, NodeId};

    fn node(seed: u8) -> NodeId {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        NodeId::from_key(&key.verifying_key())
    }

    fn hit() -> Hit {
        Hit {
            content: ContentId::of(b"hello highway\n"),
            size: 14,
            holder: node(1),
            server: "203.0.113.7:7001".parse().unwrap(),
            dialable: false,
            relays: vec![Relay {
                id: node(2),
                addr: "[2001:db8::5]:7002".parse().unwrap(),
            }],
            hops: 0,
            name: "notes/hello.txt".to_string(),
        }
    }

    /// The test vector in docs/PROTOCOL.md, *Tickets*.
    #[test]
    fn the_documented_vector() {
        let ticket = Ticket(Hit {
            relays: Vec::new(),
            dialable: true,
            name: "hello.txt".to_string(),
            ..hit()
        });
        assert_eq!(ticket.to_string(), VECTOR);
    }

    const VECTOR: &str = "hw1aefh4byn7w2qnzvyw7o5rz64fqvvsbcblzuc6rqj3ihdxwmjrtlu2aaaaaaaaaaab2firy65oqe7dfp5klns2pf2lvzmuzyjx4ozieq36n2iqanub5xvybglabyqog2zaeaaaaajnbswy3dpfz2hq5a";

    #[test]
    fn base32_matches_rfc_4648_vectors() {
        for (raw, encoded) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(base32(raw.as_bytes()), encoded);
            assert_eq!(unbase32(encoded).unwrap(), raw.as_bytes());
            assert_eq!(unbase32(&encoded.to_uppercase()).unwrap(), raw.as_bytes());
        }
    }

    #[test]
    fn a_ticket_round_trips_in_both_forms_and_drops_the_hop_count() {
        let ticket = Ticket(hit());
        let text = ticket.to_string();
        assert!(text.starts_with("hw1"), "{text}");
        assert_eq!(text.parse::<Ticket>().unwrap(), ticket);
        assert_eq!(ticket.link().parse::<Ticket>().unwrap(), ticket);
        assert_eq!(
            format!(" {}/ ", ticket.link()).parse::<Ticket>().unwrap(),
            ticket
        );
        assert!(looks_like_ticket(&text) && looks_like_ticket(&ticket.link()));
        assert!(!looks_like_ticket(&ticket.0.content.to_string()));
        let far = Ticket(Hit { hops: 5, ..hit() });
        assert_eq!(far.to_string(), text);
    }

    proptest::proptest! {
        /// Whatever follows the prefix, parsing ends in a ticket or a typed error.
        #[test]
        fn any_text_after_the_prefix_parses_or_is_refused(body in "[a-z2-7A-Z0-9]{0,600}") {
            let _ = format!("hw1{body}").parse::<Ticket>();
        }
    }

    #[test]
    fn damaged_tickets_are_typed_errors() {
        let text = Ticket(hit()).to_string();
        let cases = [
            (format!("xx{text}"), "starts with"),
            (format!("{text}a"), "damaged"),
            (text.replace('a', "1"), "not one of its characters"),
            (text[..text.len() - 8].to_string(), "damaged"),
            (format!("hw1{}", base32(&[9, 1, 2])), "version 9"),
            ("hw1".to_string() + &"a".repeat(3000), "at most"),
        ];
        for (bad, expected) in cases {
            let err = bad.parse::<Ticket>().unwrap_err().to_string();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }
}
