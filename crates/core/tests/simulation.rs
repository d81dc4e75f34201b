//! Seeded simulation of a small overlay under churn: crashes, restarts, graceful leaves,
//! partitions and random loss, then calm. The harness checks its invariants at every
//! step (maximum degree, no spinning, events matching the neighbour set); at the end the
//! overlay must have healed.

mod harness;

use harness::{Net, ms};
use highway_core::{Config, Phase};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const PEERS: usize = 20;

/// Thirty seconds of churn on a lossy network, then every fault is lifted.
fn churn(seed: u64, loss: f64) -> Net {
    let mut net = Net::new(PEERS, Config::test());
    net.handshake_rtt = ms(20);
    net.set_loss(loss, seed);
    let mut rng = SmallRng::seed_from_u64(seed);
    for i in 0..PEERS {
        net.join(i);
        net.advance(ms(30));
    }
    for _ in 0..60 {
        let i = rng.random_range(0..PEERS);
        let j = rng.random_range(0..PEERS);
        match rng.random_range(0..6) {
            0 => net.kill(i),
            1 => {
                net.restart(i);
                net.join(i);
            }
            2 => net.leave(i),
            3 if i != j => net.cut(i, j),
            4 => net.heal(i, j),
            _ => {}
        }
        net.advance(ms(500));
    }
    for i in 0..PEERS {
        for j in 0..PEERS {
            net.heal(i, j);
        }
    }
    net.loss_off();
    for i in 0..PEERS {
        if !net.nodes[i].alive || net.peer(i).phase() != Phase::Running {
            net.restart(i);
            net.join(i);
        }
    }
    net
}

#[test]
fn overlay_heals_after_churn_loss_and_partitions() {
    for (seed, loss) in [(1, 0.05), (2, 0.3), (3, 0.05), (4, 0.3)] {
        let mut net = churn(seed, loss);
        net.advance(ms(10_000));
        let settled: Vec<_> = (0..PEERS).map(|i| net.peer(i).stats().clone()).collect();
        net.advance(ms(5_000));
        for (i, then) in settled.iter().enumerate() {
            let neighbours = net.neighbours(i);
            assert!(
                neighbours.len() >= 3,
                "seed {seed}: peer {i} is stuck with {neighbours:?}"
            );
            for &j in &neighbours {
                assert!(net.linked(j, i), "seed {seed}: link {i}-{j} is one-sided");
                assert_eq!(net.state(i, j), Some("okay"), "seed {seed}: {i} on {j}");
            }
            // Calm means calm: no suspicion, no stale link, no forged-looking traffic.
            let now = net.peer(i).stats();
            assert_eq!(now.suspicions, then.suspicions, "seed {seed}: peer {i}");
            assert_eq!(
                now.unknown_links, then.unknown_links,
                "seed {seed}: peer {i}"
            );
            assert_eq!(now.bad_tags, then.bad_tags, "seed {seed}: peer {i}");
        }
    }
}
