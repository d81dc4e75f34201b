//! Loopback throughput of a verified download, against `curl` from the same server.
//!
//! Ignored by default (it moves hundreds of MiB); run it in release mode:
//! `cargo test --release -p highway-share --test transfer_throughput -- --ignored --nocapture`
//! (`HIGHWAY_BENCH_MIB` sets the size, default 256).

mod transfer_support;

use std::sync::Arc;
use std::time::Instant;

use highway_share::transfer::{DownloadOptions, DownloadRequest, ServerConfig, download};
use transfer_support::{MapSource, random_bytes, share, start_server, url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "moves hundreds of MiB; run in release with --ignored"]
async fn loopback_download_throughput() {
    let mib: usize = std::env::var("HIGHWAY_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let root = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let source = Arc::new(MapSource::default());
    let content = random_bytes(mib << 20, 99);
    let id = share(&source, root.path(), "bench.bin", &content);
    drop(content);
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    let mut config = ServerConfig::new(root.path());
    config.read_chunk = env("HIGHWAY_BENCH_READ_CHUNK").unwrap_or(config.read_chunk);
    config.read_ahead = env("HIGHWAY_BENCH_READ_AHEAD").unwrap_or(config.read_ahead);
    let mut options = DownloadOptions::default();
    options.buffer_size = env("HIGHWAY_BENCH_BUFFER").unwrap_or(options.buffer_size);
    options.buffers = env("HIGHWAY_BENCH_BUFFERS").unwrap_or(options.buffers);
    let server = start_server(config, source).await;
    let size = (mib << 20) as f64;

    // Warm the server's outboard cache and the page cache, as a long-running peer would be.
    let warm = out.path().join("warm.bin");
    download(
        DownloadRequest {
            id,
            holders: vec![server.addr.into()],
            expected_size: None,
            dest: warm.clone(),
        },
        options.clone(),
        None,
    )
    .await
    .unwrap();
    std::fs::remove_file(&warm).unwrap();

    let mut ours = Vec::new();
    for run in 0..3 {
        let dest = out.path().join(format!("run{run}.bin"));
        let started = Instant::now();
        let report = download(
            DownloadRequest {
                id,
                holders: vec![server.addr.into()],
                expected_size: None,
                dest: dest.clone(),
            },
            options.clone(),
            None,
        )
        .await
        .unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(report.bytes_fetched, mib as u64 * (1 << 20));
        ours.push(size / secs / 1e6);
        std::fs::remove_file(&dest).unwrap();
    }

    let mut curl = Vec::new();
    let target = url(server.addr, &format!("/v1/files/{id}"));
    for run in 0..3 {
        let dest = out.path().join(format!("curl{run}.bin"));
        let target = target.clone();
        let dest2 = dest.clone();
        let secs = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let status = std::process::Command::new("curl")
                .args(["-sS", "--fail", "-o"])
                .arg(&dest2)
                .arg(&target)
                .status();
            status.ok().filter(|s| s.success())?;
            Some(started.elapsed().as_secs_f64())
        })
        .await
        .unwrap();
        if let Some(secs) = secs {
            curl.push(size / secs / 1e6);
        }
        let _ = std::fs::remove_file(&dest);
    }
    println!("{mib} MiB verified download, MB/s per run: {ours:.0?}");
    println!("{mib} MiB curl from the same server to a file, MB/s per run: {curl:.0?}");
}
