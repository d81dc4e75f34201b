//! Regression (found by `highway sim partition`): two parts of the overlay split by a
//! network partition must join again once it heals. Each part repairs itself while
//! split, and a peer at its target degree used to stop asking the Gatekeeper, so nothing
//! ever linked the parts again; the refresh interval makes peers with free slots ask for
//! one more neighbour now and then.

mod harness;

use harness::{Net, ms};
use highway_core::Config;

const SIDE: usize = 8;

fn connected(net: &Net) -> bool {
    let n = net.nodes.len();
    let mut seen = vec![false; n];
    let mut stack = vec![0];
    seen[0] = true;
    while let Some(i) = stack.pop() {
        for j in net.neighbours(i) {
            if !seen[j] && net.linked(j, i) {
                seen[j] = true;
                stack.push(j);
            }
        }
    }
    seen.iter().all(|s| *s)
}

/// An overlay of two sides that a partition split and that then healed.
fn split_and_healed(refresh_interval: std::time::Duration) -> Net {
    let config = Config {
        refresh_interval,
        ..Config::test()
    };
    let mut net = Net::new(2 * SIDE, config);
    net.handshake_rtt = ms(20);
    for i in 0..2 * SIDE {
        net.join(i);
        net.advance(ms(50));
    }
    net.advance(ms(5_000));
    assert!(connected(&net), "the overlay formed");
    for a in 0..SIDE {
        for b in SIDE..2 * SIDE {
            net.cut(a, b);
        }
    }
    net.advance(ms(10_000));
    assert!(!connected(&net), "the partition split the overlay");
    for a in 0..SIDE {
        for b in SIDE..2 * SIDE {
            net.heal(a, b);
        }
    }
    net
}

#[test]
fn parts_split_by_a_partition_join_again_after_it_heals() {
    let mut net = split_and_healed(ms(2_000));
    assert!(
        net.run_until_cond(ms(30_000), connected),
        "still split 30 s after the partition healed"
    );
}

#[test]
fn without_refreshing_the_parts_would_stay_apart() {
    // The bug the refresh interval fixes: with it out of reach, both sides are whole
    // and at their target degree, so nobody asks the Gatekeeper again.
    let mut net = split_and_healed(ms(3_600_000));
    assert!(!net.run_until_cond(ms(30_000), connected));
}
