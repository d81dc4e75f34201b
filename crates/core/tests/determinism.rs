//! The state machine is deterministic: the same seeds and the same inputs at the same
//! instants give the same datagrams and events, byte for byte, in the same order.

mod harness;

use harness::{Line, Net, Rec, ms};
use highway_core::Config;

/// Ten peers join over half a second on a lossy network with slow handshakes; one
/// crashes, a link is cut, one leaves, the crashed one comes back.
fn scenario() -> Net {
    let mut net = Net::new(10, Config::test());
    net.handshake_rtt = ms(20);
    net.set_loss(0.02, 7);
    for i in 0..10 {
        net.join(i);
        net.advance(ms(50));
    }
    net.advance(ms(2500));
    net.kill(3);
    net.cut(1, 2);
    net.advance(ms(3000));
    net.leave(5);
    net.restart(3);
    net.join(3);
    net.advance(ms(3000));
    net
}

#[test]
fn same_seeds_give_identical_histories() {
    let first = scenario();
    let second = scenario();
    let events = |net: &Net| {
        net.log
            .iter()
            .filter(|l| matches!(l, Line::Event { .. }))
            .count()
    };
    // The scenario exercised what it claims to.
    let failures = first
        .log
        .iter()
        .filter(|l| {
            matches!(
                l,
                Line::Event {
                    rec: Rec::ReportFailed { .. },
                    ..
                }
            )
        })
        .count();
    assert!(failures > 0, "someone declared the crashed peer failed");
    assert!(first.log.len() > 1000 && events(&first) > 50);

    assert_eq!(first.log.len(), second.log.len(), "as many lines");
    for (n, (a, b)) in first.log.iter().zip(&second.log).enumerate() {
        assert!(
            a == b,
            "the histories diverge at line {n}:\n{}\n{}",
            short(a),
            short(b)
        );
    }
}

/// A line without the datagram's bytes, for the failure message.
fn short(line: &Line) -> String {
    match line {
        Line::Event { at, node, rec } => format!("{at:?} peer {node}: {rec:?}"),
        Line::Sent {
            at,
            node,
            to,
            bytes,
        } => {
            format!("{at:?} peer {node} -> {to}: {} bytes", bytes.len())
        }
    }
}
