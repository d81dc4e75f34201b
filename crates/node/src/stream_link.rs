//! Links whose datagrams travel over TCP: for a peer whose UDP does not get through (its
//! router drops it), the handshake's connection is kept open and carries the link's
//! datagrams, each framed like a handshake frame (a `u32` length, then the bytes). The core
//! sees them as datagrams from the connection's remote address and sends to that address;
//! the owner task routes those sends here instead of to the UDP socket.

use std::net::SocketAddr;

use highway_wire::peer::MAX_DATAGRAM;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::owner::Msg;

/// Datagrams queued for one connection; past it they are dropped (UDP would drop them too).
pub(crate) const STREAM_QUEUE: usize = 64;

/// A connection registered with the owner as the path to `addr`, before the link that
/// uses it is reported up (so the core's first datagrams to it already go this way).
pub(crate) struct Kept {
    addr: SocketAddr,
    rx: mpsc::Receiver<Vec<u8>>,
    owner: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept").field("addr", &self.addr).finish()
    }
}

/// Registers the path to `addr`; `None` when the owner is gone.
pub(crate) async fn keep(addr: SocketAddr, owner: &mpsc::Sender<Msg>) -> Option<Kept> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(STREAM_QUEUE);
    owner.send(Msg::StreamOpened { addr, tx }).await.ok()?;
    Some(Kept {
        addr,
        rx,
        owner: owner.clone(),
    })
}

impl Kept {
    /// The link did not come up after all: forget the path.
    pub fn abandon(self) {
        let _ = self.owner.try_send(Msg::StreamClosed { addr: self.addr });
    }

    /// Carries datagrams over `stream` both ways, in a task of its own, until either
    /// side closes; then tells the owner. `leftover` is what the handshake read past its
    /// last frame (the peer's first datagrams).
    pub fn carry(self, stream: TcpStream, leftover: Vec<u8>) {
        tokio::spawn(carry(stream, self.addr, leftover, self.owner, self.rx));
    }
}

async fn carry(
    stream: TcpStream,
    addr: SocketAddr,
    leftover: Vec<u8>,
    owner: mpsc::Sender<Msg>,
    mut rx: mpsc::Receiver<Vec<u8>>,
) {
    let (mut read, mut write) = stream.into_split();
    let sender = async {
        while let Some(datagram) = rx.recv().await {
            let len = u32::try_from(datagram.len()).unwrap_or(u32::MAX);
            if write.write_all(&len.to_be_bytes()).await.is_err()
                || write.write_all(&datagram).await.is_err()
            {
                break;
            }
        }
        let _ = write.shutdown().await;
    };
    let receiver = async {
        let mut buf = leftover;
        let mut chunk = vec![0u8; 4096];
        loop {
            while let Some((datagram, used)) = next_datagram(&buf) {
                let msg = Msg::StreamDatagram {
                    from: addr,
                    bytes: datagram,
                };
                if owner.send(msg).await.is_err() {
                    return;
                }
                buf.drain(..used);
            }
            // A length over a datagram's size is not a frame of ours: stop.
            if buf.len() >= 4 && frame_len(&buf) > MAX_DATAGRAM {
                return;
            }
            match read.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    // Either direction ending ends the link's path: the core then fails or drops the link.
    tokio::select! {
        () = sender => {}
        () = receiver => {}
    }
    let _ = owner.send(Msg::StreamClosed { addr }).await;
}

fn frame_len(buf: &[u8]) -> usize {
    u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize
}

/// The first whole datagram in `buf` and the bytes it took, if there is one.
fn next_datagram(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    if buf.len() < 4 {
        return None;
    }
    let len = frame_len(buf);
    if len > MAX_DATAGRAM || buf.len() < 4 + len {
        return None;
    }
    Some((buf[4..4 + len].to_vec(), 4 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_whole_and_oversized_ones_refused() {
        let mut buf = vec![0, 0, 0, 3, 1, 2, 3, 0, 0];
        assert_eq!(next_datagram(&buf), Some((vec![1, 2, 3], 7)));
        buf.drain(..7);
        assert_eq!(next_datagram(&buf), None, "half a length");
        let huge = (MAX_DATAGRAM as u32 + 1).to_be_bytes();
        assert_eq!(next_datagram(&huge), None);
        assert!(frame_len(&huge) > MAX_DATAGRAM);
    }
}
