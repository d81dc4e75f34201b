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
    while let Some(end) = prepare(coord, world, &mut [&mut *s0, &mut *s1], t) {
        s0.run_window(world, end);
        s1.run_window(world, end);
    }
}

/// Runs the shards on two threads, each window at once, until nothing is due by `t`.
/// The second shard and the world move behind locks for the duration; a lock is only
/// ever waited for when one thread was descheduled. The main thread runs the first
/// shard, then the second too if the worker has not started it yet: on a busy machine a
/// descheduled worker then costs no more than running serially.
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
    // The last window the second shard has run.
    let far_done = AtomicU64::new(0);
    let window_end = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    // Runs the second shard for `round` unless someone already has, or the round is
    // over (a worker descheduled for a while wakes with a stale round). Called with the
    // shard's lock held, while `go` and `window_end` cannot change.
    let run_far = |round: u64, shard: &mut Shard, world: &World| {
        if go.load(Ordering::Acquire) == round && far_done.load(Ordering::Acquire) != round {
            let end = SimTime::from_micros(window_end.load(Ordering::Acquire));
            shard.run_window(world, end);
            far_done.store(round, Ordering::Release);
        }
    };
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut seen = 0;
            loop {
                wait_until(|| go.load(Ordering::Acquire) != seen);
                seen = go.load(Ordering::Acquire);
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let world = shared.read().unwrap_or_else(PoisonError::into_inner);
                let mut shard = far.lock().unwrap_or_else(PoisonError::into_inner);
                run_far(seen, &mut shard, &world);
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
                if let Ok(mut shard) = far.try_lock() {
                    run_far(round, &mut shard, &world);
                }
            }
            wait_until(|| far_done.load(Ordering::Acquire) == round);
        }
        stop.store(true, Ordering::Release);
        go.store(round + 1, Ordering::Release);
    });
}
