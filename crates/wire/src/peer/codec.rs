//! Byte-level reading and writing for the binary peer protocol. Big-endian integers,
//! length-prefixed lists with named maxima; every read is bounds-checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{NodeId, PeerAddr};

/// Why bytes from the network are not a valid message. The input was dropped; nothing
/// changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{len} bytes is more than the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("does not start with the Highway magic")]
    BadMagic,
    #[error("protocol version {0} is not supported (this peer speaks 1)")]
    UnsupportedVersion(u8),
    #[error("unknown {what} kind {kind:#04x}")]
    UnknownKind { what: &'static str, kind: u8 },
    #[error("cut short while reading {0}")]
    Truncated(&'static str),
    #[error("{0} bytes left over after the message")]
    TrailingBytes(usize),
    #[error("{0} is not a valid node id")]
    BadNodeId(&'static str),
    #[error("address family {0} is neither 4 nor 6")]
    BadAddrFamily(u8),
    #[error("{what}: {n} entries, at most {max} allowed")]
    TooMany {
        what: &'static str,
        n: usize,
        max: usize,
    },
    #[error("a stranger's probe must be at least {min} bytes, got {len}")]
    ProbeTooShort { len: usize, min: usize },
    #[error("authentication tag does not match")]
    BadTag,
    #[error("{0} has an invalid value")]
    BadValue(&'static str),
}

/// Reads fields off a byte slice, failing with [`DecodeError::Truncated`] at its end.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::BadValue(what)),
        }
    }

    pub fn node_id(&mut self, what: &'static str) -> Result<NodeId, DecodeError> {
        NodeId::from_bytes(self.array(what)?).map_err(|_| DecodeError::BadNodeId(what))
    }

    pub fn addr(&mut self) -> Result<PeerAddr, DecodeError> {
        let ip = match self.u8("address family")? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>("IPv4 address")?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>("IPv6 address")?)),
            other => return Err(DecodeError::BadAddrFamily(other)),
        };
        Ok(PeerAddr {
            ip,
            udp: self.u16("udp port")?,
            tcp: self.u16("tcp port")?,
        })
    }

    /// A socket address: family (4 or 6), the IP, a port.
    pub fn socket_addr(&mut self, what: &'static str) -> Result<SocketAddr, DecodeError> {
        let ip = match self.u8(what)? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>(what)?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>(what)?)),
            other => return Err(DecodeError::BadAddrFamily(other)),
        };
        Ok(SocketAddr::new(ip, self.u16(what)?))
    }

    /// A one-byte count, refused above `max` before anything is allocated.
    pub fn count(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let n = usize::from(self.u8(what)?);
        if n > max {
            return Err(DecodeError::TooMany { what, n, max });
        }
        Ok(n)
    }

    /// A two-byte length followed by that many bytes, at most `max`.
    pub fn blob(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let n = usize::from(self.u16(what)?);
        if n > max {
            return Err(DecodeError::TooMany { what, n, max });
        }
        self.take(n, what)
    }

    pub fn finish(self) -> Result<(), DecodeError> {
        match self.bytes.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// Appends fields to a buffer; the mirror of [`Reader`].
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes());
    }

    pub fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    pub fn node_id(&mut self, id: &NodeId) {
        self.bytes(id.as_bytes());
    }

    pub fn addr(&mut self, addr: &PeerAddr) {
        match addr.ip {
            IpAddr::V4(v4) => {
                self.u8(4);
                self.bytes(&v4.octets());
            }
            IpAddr::V6(v6) => {
                self.u8(6);
                self.bytes(&v6.octets());
            }
        }
        self.u16(addr.udp);
        self.u16(addr.tcp);
    }

    pub fn socket_addr(&mut self, addr: &SocketAddr) {
        match addr.ip() {
            IpAddr::V4(v4) => {
                self.u8(4);
                self.bytes(&v4.octets());
            }
            IpAddr::V6(v6) => {
                self.u8(6);
                self.bytes(&v6.octets());
            }
        }
        self.u16(addr.port());
    }

    /// Callers keep lists within their limits (all far below 256), so the count fits.
    pub fn count(&mut self, n: usize) {
        self.u8(u8::try_from(n).unwrap_or(u8::MAX));
    }

    pub fn blob(&mut self, b: &[u8]) {
        self.u16(u16::try_from(b.len()).unwrap_or(u16::MAX));
        self.bytes(b);
    }
}
