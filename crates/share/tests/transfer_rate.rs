//! Bandwidth caps over real sockets: the server's upload cap and the downloader's
//! receive cap hold across transfers, and capped transfers still arrive intact.
//!
//! Only lower bounds on time are asserted: a cap guarantees them however slow the machine.

mod transfer_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use highway_share::transfer::{
    DownloadOptions, DownloadRequest, RateLimit, ServerConfig, download,
};
use transfer_support::{MapSource, random_bytes, share, start_server, url};

const MIB: usize = 1 << 20;

#[tokio::test]
async fn the_upload_cap_is_shared_by_concurrent_transfers() {
    let root = tempfile::tempdir().unwrap();
    let source = Arc::new(MapSource::default());
    let first = random_bytes(MIB, 1);
    let second = random_bytes(MIB, 2);
    let ids = [
        share(&source, root.path(), "first.bin", &first),
        share(&source, root.path(), "second.bin", &second),
    ];
    let config = ServerConfig {
        upload_limit: Some(Arc::new(RateLimit::new(4 * MIB as u64))),
        ..ServerConfig::new(root.path())
    };
    let server = start_server(config, source).await;
    let client = reqwest::Client::new();

    let started = Instant::now();
    let fetch = |id| {
        let client = client.clone();
        let url = url(server.addr, &format!("/v1/files/{id}"));
        async move { client.get(url).send().await.unwrap().bytes().await.unwrap() }
    };
    let (a, b) = tokio::join!(fetch(ids[0]), fetch(ids[1]));
    let elapsed = started.elapsed();

    assert_eq!(a, first);
    assert_eq!(b, second);
    // 2 MiB at 4 MiB/s in 256 KiB frames: the first frame goes at once, the other seven
    // wait 62.5 ms each, whichever transfer they belong to.
    assert!(
        elapsed >= Duration::from_millis(420),
        "2 MiB under a 4 MiB/s cap took only {elapsed:?}"
    );
}

#[tokio::test]
async fn the_download_cap_slows_receiving_and_the_file_still_verifies() {
    let root = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let source = Arc::new(MapSource::default());
    let content = random_bytes(3 * MIB, 3);
    let id = share(&source, root.path(), "capped.bin", &content);
    let server = start_server(ServerConfig::new(root.path()), source).await;

    let dest = out.path().join("capped.bin");
    let options = DownloadOptions {
        rate_limit: Some(Arc::new(RateLimit::new(6 * MIB as u64))),
        ..DownloadOptions::test()
    };
    let started = Instant::now();
    let report = download(
        DownloadRequest {
            id,
            holders: vec![server.addr.into()],
            expected_size: None,
            dest: dest.clone(),
        },
        options,
        None,
    )
    .await
    .unwrap();
    let elapsed = started.elapsed();

    assert_eq!(std::fs::read(&dest).unwrap(), content);
    assert_eq!(report.size, content.len() as u64);
    // Whatever the chunk sizes, every byte but the last chunk's waited its turn: at
    // least (3 MiB - one chunk of at most 512 KiB) / 6 MiB/s.
    assert!(
        elapsed >= Duration::from_millis(400),
        "3 MiB under a 6 MiB/s cap took only {elapsed:?}"
    );
}
