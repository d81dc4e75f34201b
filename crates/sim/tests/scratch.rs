use highway_sim::scenario::{Setup, join};
use std::time::{Duration, Instant};

#[test]
fn scratch() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let secs: u64 = std::env::var("SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    if std::env::var("TRUST").is_ok() {
        highway_wire::id::trust_ids_in_this_process();
    }
    let mut setup = Setup::new(n, 1);
    setup.progress = true;
    setup.threads = std::env::var("THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut p = join::JoinParams::new(setup);
    p.duration = Duration::from_secs(secs);
    let t = Instant::now();
    let (report, outcome) = join::run(&p);
    eprintln!("wall {:?}", t.elapsed());
    eprintln!("{outcome:?}");
    println!("{}", report.markdown());
    report
        .write(std::path::Path::new("/tmp/simscratch"))
        .unwrap();
}
