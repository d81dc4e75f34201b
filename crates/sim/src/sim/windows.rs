//! Running the shards through time in windows.
//!
//! Nothing one shard does can reach another shard (or the Gatekeeper) sooner than the
//! network's floor delay — the lookahead. So from the earliest pending instant `T`, every
//! shard can run everything before `T + lookahead` on its own; what it sends elsewhere
//! lands at `T + lookahead` or later. Between windows the coordinator moves the outboxes
//! to their destinations (in shard order, then sending order: deterministic), lets the
//! Gatekeeper handle the requests arriving in the next window (they were all sent at
//! least a lookahead earlier), and lets new peers arrive. Whether the shards of a window
//! run one after the other or on two threads at once, each sees exactly the same inputs,
//! so the run is the same bit for bit.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use super::shard::{Outgoing, Shard, shard_of};
use super::world::World;
use super::{Coordinator, GatekeeperItem, SHARDS};
use crate::clock::SimTime;

/// Iterations a waiting thread spins before it starts yielding the core.
const SPINS: u32 = 20_000;

fn wait_until(done: impl Fn() -> bool) {
    let mut spins = 0;
    while !done() {
        if spins < SPINS {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Moves every shard's outbox to where it goes.
fn route(coord: &mut Coordinator, shards: &mut [&mut Shard; SHARDS]) {
    for i in 0..SHARDS {
        let outbox = std::mem::take(&mut shards[i].outbox);
        for (at, out) in outbox {
            match out {
                Outgoing::Host(to, action) => shards[shard_of(to)].agenda.push(at, action),
                Outgoing::Gatekeeper { host, epoch, req } => coord
                    .requests
                    .push(at, GatekeeperItem::Request { host, epoch, req }),
            }
        }
    }
}

/// Gets the next window ready: routes the outboxes and runs the coordinator's part
/// (Gatekeeper, arrivals) up to its end. Returns the window's end, or `None` when
/// nothing is due by `t`.
fn prepare(
    coord: &mut Coordinator,
    world: &mut World,
    shards: &mut [&mut Shard; SHARDS],
    t: SimTime,
) -> Option<SimTime> {
    route(coord, shards);
    let next = shards
        .iter()
        .filter_map(|s| s.agenda.next_at())
        .chain(coord.requests.next_at())
        .chain(coord.next_arrival)
        .min()
        .filter(|&next| next <= t)?;
    let end = (next + world.net.lookahead()).min(SimTime::from_micros(t.as_micros() + 1));
    coord.run_gatekeeper(world, shards, end);
    coord.run_arrivals(world, shards, end);
    Some(end)
}

/// Runs every shard, one after the other, until nothing is due by `t`.
pub(super) fn run_serial(
    coord: &mut Coordinator,
    world: &mut World,
    shards: &mut [Shard],
    t: SimTime,
) {
    let [s0, s1] = shards else {
        unreachable!("SHARDS is 2");
    };
    loop {
        let Some(end) = prepare(coord, world, &mut [&mut *s0, &mut *s1], t) else {
            break;
        };
        s0.run_window(world, end);
        s1.run_window(world, end);
    }
}

/// Runs the shards on two threads, each window at once, until nothing is due by `t`.
/// The second shard and the world move behind locks for the duration; the protocol
/// (go, run, done) means no lock is ever contended.
pub(super) fn run_parallel(
    coord: &mut Coordinator,
    world: &mut World,
    shards: &mut [Shard],
    t: SimTime,
) {
    let [s0, s1] = shards else {
        unreachable!("SHARDS is 2");
    };
    let far = Mutex::new(s1);
    let shared = RwLock::new(world);
    let go = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let window_end = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut seen = 0;
            loop {
                wait_until(|| go.load(Ordering::Acquire) != seen);
                seen = go.load(Ordering::Acquire);
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let end = SimTime::from_micros(window_end.load(Ordering::Acquire));
                let world = shared.read().unwrap_or_else(PoisonError::into_inner);
                far.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .run_window(&world, end);
                drop(world);
                done.store(seen, Ordering::Release);
            }
        });
        let mut round = 0;
        loop {
            let end = {
                let mut world = shared.write().unwrap_or_else(PoisonError::into_inner);
                let mut s1 = far.lock().unwrap_or_else(PoisonError::into_inner);
                prepare(coord, &mut world, &mut [&mut *s0, &mut **s1], t)
            };
            let Some(end) = end else {
                break;
            };
            round += 1;
            window_end.store(end.as_micros(), Ordering::Release);
            go.store(round, Ordering::Release);
            {
                let world = shared.read().unwrap_or_else(PoisonError::into_inner);
                s0.run_window(&world, end);
            }
            wait_until(|| done.load(Ordering::Acquire) == round);
        }
        stop.store(true, Ordering::Release);
        go.store(round + 1, Ordering::Release);
    });
}
