//! Downloads over real sockets: verified, resumable, and robust to bad holders.

mod transfer_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use highway_share::transfer::{
    DownloadOptions, DownloadRequest, Downloader, GROUP_BYTES, Holder, HolderFault, Progress,
    ServerConfig, TransferError, compute_outboard, download,
};
use highway_wire::ContentId;
use tokio::sync::watch;
use transfer_support::{
    Behaviour, MapSource, fake_holder, random_bytes, served, share, start_server,
};

const MIB: usize = 1 << 20;

fn request(id: ContentId, holders: Vec<Holder>, dest: &Path) -> DownloadRequest {
    DownloadRequest {
        id,
        holders,
        expected_size: None,
        dest: dest.to_path_buf(),
    }
}

fn part_files_exist(dest: &Path) -> [bool; 3] {
    let name = dest.as_os_str().to_owned();
    [".part", ".part.outboard", ".part.state"].map(|suffix| {
        let mut p = name.clone();
        p.push(suffix);
        Path::new(&p).exists()
    })
}

#[tokio::test]
async fn a_full_download_from_a_real_server_is_byte_identical_and_reports_progress() {
    let root = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let source = Arc::new(MapSource::default());
    let content = random_bytes(5 * MIB + 12_345, 10);
    let id = share(&source, root.path(), "movie.bin", &content);
    let server = start_server(ServerConfig::new(root.path()), source).await;

    let dest = out.path().join("movie.bin");
    let (tx, rx) = watch::channel(Progress::default());
    let report = download(
        request(id, vec![server.addr.into()], &dest),
        DownloadOptions::test(),
        Some(tx),
    )
    .await
    .unwrap();

    let fetched = std::fs::read(&dest).unwrap();
    assert_eq!(blake3::hash(&fetched).as_bytes(), id.as_bytes());
    assert_eq!(fetched, content);
    assert_eq!(report.size, content.len() as u64);
    assert_eq!(report.bytes_fetched, content.len() as u64);
    assert_eq!(report.bytes_resumed, 0);
    assert_eq!(report.bytes_discarded, 0);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.holders_used.len(), 1);
    assert_eq!(report.holders_used[0].bytes, content.len() as u64);
    assert_eq!(
        part_files_exist(&dest),
        [false; 3],
        "partial files are cleaned up"
    );

    let progress = rx.borrow().clone();
    assert_eq!(progress.size, Some(content.len() as u64));
    assert_eq!(progress.verified, content.len() as u64);
    assert_eq!(
        progress.per_holder,
        vec![(Holder::from(server.addr), content.len() as u64)]
    );

    // The destination now exists, so a second download refuses to clobber it.
    let again = download(
        request(id, vec![server.addr.into()], &dest),
        DownloadOptions::test(),
        None,
    )
    .await;
    assert!(
        matches!(again, Err(TransferError::DestinationExists(_))),
        "{again:?}"
    );
}

#[tokio::test]
async fn tiny_and_empty_files_download_and_verify() {
    let root = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let source = Arc::new(MapSource::default());
    let server_source = Arc::clone(&source);
    let mut files = Vec::new();
    for (i, len) in [0usize, 1, 1024, 16 * 1024, 16 * 1024 + 1]
        .into_iter()
        .enumerate()
    {
        let content = random_bytes(len, 20 + i as u64);
        files.push((
            share(&source, root.path(), &format!("f{i}"), &content),
            content,
        ));
    }
    let server = start_server(ServerConfig::new(root.path()), server_source).await;
    let downloader = Downloader::new(DownloadOptions::test()).unwrap();
    for (i, (id, content)) in files.iter().enumerate() {
        let dest = out.path().join(format!("f{i}"));
        let report = downloader
            .download(request(*id, vec![server.addr.into()], &dest), None)
            .await
            .unwrap_or_else(|e| panic!("len {}: {e}", content.len()));
        assert_eq!(
            &std::fs::read(&dest).unwrap(),
            content,
            "len {}",
            content.len()
        );
        assert_eq!(report.size, content.len() as u64);
    }
}

#[tokio::test]
async fn an_interrupted_download_resumes_without_refetching_what_it_verified() {
    let out = tempfile::tempdir().unwrap();
    let content = Arc::new(random_bytes(5 * MIB + 777, 30));
    let id = ContentId::of(&content);
    let size = content.len() as u64;
    let dest = out.path().join("big.bin");

    // First run: the only holder cuts every body off after 1.5 MiB, twice, then is dropped.
    let flaky = fake_holder(
        Arc::clone(&content),
        Behaviour::CutAfter(3 * MIB as u64 / 2),
    )
    .await;
    let first = download(
        request(id, vec![flaky.addr.into()], &dest),
        DownloadOptions::test(),
        None,
    )
    .await;
    let Err(TransferError::HoldersExhausted {
        verified,
        size: Some(known),
        failures,
        part,
    }) = first
    else {
        panic!("expected the holder to be exhausted, got {first:?}");
    };
    assert_eq!(known, size);
    assert!(
        verified >= 2 * MIB as u64,
        "two cut-off attempts kept {verified} bytes"
    );
    assert_eq!(verified % GROUP_BYTES, 0);
    assert!(
        failures
            .iter()
            .all(|f| matches!(f.fault, HolderFault::ShortRead { .. })),
        "{failures:?}"
    );
    assert_eq!(std::fs::metadata(&part).unwrap().len(), verified);
    assert_eq!(part_files_exist(&dest), [true; 3]);

    // The partial proved the size; a caller expecting another one is told so, and nothing
    // is lost.
    let mut wrong = request(id, vec![flaky.addr.into()], &dest);
    wrong.expected_size = Some(size + 1);
    let refused = download(wrong, DownloadOptions::test(), None).await;
    assert!(
        matches!(refused, Err(TransferError::WrongExpectedSize { proven, .. }) if proven == size),
        "{refused:?}"
    );
    assert_eq!(std::fs::metadata(&part).unwrap().len(), verified);

    // Second run: an honest holder serves only the remainder.
    let honest = fake_holder(Arc::clone(&content), Behaviour::Honest).await;
    let report = download(
        request(id, vec![honest.addr.into()], &dest),
        DownloadOptions::test(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(report.bytes_resumed, verified);
    assert_eq!(report.bytes_fetched, size - verified);
    assert_eq!(
        report.outboard_bytes, 0,
        "the outboard was resumed, not refetched"
    );
    assert_eq!(
        served(&honest),
        size - verified,
        "the honest holder sent only the remainder"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), *content);
    assert_eq!(part_files_exist(&dest), [false; 3]);
}

#[tokio::test]
async fn a_killed_download_task_resumes_from_what_it_had_verified() {
    let out = tempfile::tempdir().unwrap();
    let content = Arc::new(random_bytes(4 * MIB + 5, 40));
    let id = ContentId::of(&content);
    let size = content.len() as u64;
    let dest = out.path().join("slow.bin");

    let slow = fake_holder(
        Arc::clone(&content),
        Behaviour::Slow(Duration::from_millis(10)),
    )
    .await;
    let (tx, mut rx) = watch::channel(Progress::default());
    let task = tokio::spawn(download(
        request(id, vec![slow.addr.into()], &dest),
        DownloadOptions::test(),
        Some(tx),
    ));
    let observed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            rx.changed().await.unwrap();
            let verified = rx.borrow().verified;
            if verified >= MIB as u64 {
                return verified;
            }
        }
    })
    .await
    .expect("the slow download made progress");
    task.abort();
    let _ = task.await;
    assert!(observed < size, "killed before the end");

    let honest = fake_holder(Arc::clone(&content), Behaviour::Honest).await;
    let report = download(
        request(id, vec![honest.addr.into()], &dest),
        DownloadOptions::test(),
        None,
    )
    .await
    .unwrap();
    assert!(
        report.bytes_resumed >= observed,
        "resumed {} < observed {observed}",
        report.bytes_resumed
    );
    assert_eq!(report.bytes_fetched, size - report.bytes_resumed);
    assert_eq!(served(&honest), size - report.bytes_resumed);
    assert_eq!(std::fs::read(&dest).unwrap(), *content);
}

#[tokio::test]
async fn a_holder_serving_corrupt_bytes_is_detected_and_another_holder_finishes() {
    let root = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let content = random_bytes(5 * MIB, 50);
    let source = Arc::new(MapSource::default());
    let id = share(&source, root.path(), "x.bin", &content);
    let honest = start_server(ServerConfig::new(root.path()), source).await;
    let flip_at = 2 * MIB as u64 + 12_345;
    let corrupt = fake_holder(Arc::new(content.clone()), Behaviour::FlipAt(flip_at)).await;
    let corrupt_holder = Holder::from(corrupt.addr);

    let dest = out.path().join("x.bin");
    let report = download(
        request(id, vec![corrupt_holder.clone(), honest.addr.into()], &dest),
        DownloadOptions::test(),
        None,
    )
    .await
    .unwrap();

    assert_eq!(std::fs::read(&dest).unwrap(), content);
    let bad_group = flip_at / GROUP_BYTES * GROUP_BYTES;
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert_eq!(report.failures[0].holder, corrupt_holder);
    assert_eq!(
        report.failures[0].fault,
        HolderFault::CorruptData { offset: bad_group }
    );
    assert_eq!(
        report.corrupt_holders().collect::<Vec<_>>(),
        vec![&corrupt_holder]
    );
    // Everything before the bad group came from the corrupt holder and was kept.
    assert_eq!(report.holders_used[0].holder, corrupt_holder);
    assert_eq!(report.holders_used[0].bytes, bad_group);
    assert_eq!(report.holders_used[1].holder, Holder::from(honest.addr));
    assert_eq!(
        report.holders_used[1].bytes,
        content.len() as u64 - bad_group
    );
    assert!(report.bytes_discarded >= GROUP_BYTES);

    // With only the corrupt holder, the download fails and keeps the good prefix.
    let dest2 = out.path().join("y.bin");
    let only_bad = download(
        request(id, vec![corrupt_holder.clone()], &dest2),
        DownloadOptions::test(),
        None,
    )
    .await;
    match only_bad {
        Err(TransferError::HoldersExhausted {
            verified, failures, ..
        }) => {
            assert_eq!(verified, bad_group);
            assert_eq!(
                failures.len(),
                1,
                "a corrupt holder is not retried: {failures:?}"
            );
        }
        other => panic!("expected exhaustion, got {other:?}"),
    }
}

#[tokio::test]
async fn holders_with_a_wrong_size_or_outboard_fail_validation_before_any_data_counts() {
    let out = tempfile::tempdir().unwrap();
    let content = Arc::new(random_bytes(3 * MIB + 1000, 60));
    let id = ContentId::of(&content);
    let size = content.len() as u64;

    // Shorter by 100 bytes: same tree shape, so only the final group can expose the lie.
    let liar = fake_holder(Arc::clone(&content), Behaviour::DeclareSize(size - 100)).await;
    // The outboard of another file.
    let other = random_bytes(2 * MIB, 61);
    let other_outboard = compute_outboard(&other[..], other.len() as u64)
        .unwrap()
        .encode();
    let impostor = fake_holder(
        Arc::clone(&content),
        Behaviour::OtherOutboard(other_outboard),
    )
    .await;
    let honest = fake_holder(Arc::clone(&content), Behaviour::Honest).await;

    let dest = out.path().join("z.bin");
    let report = download(
        request(
            id,
            vec![liar.addr.into(), impostor.addr.into(), honest.addr.into()],
            &dest,
        ),
        DownloadOptions::test(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), *content);
    let faults: Vec<_> = report
        .failures
        .iter()
        .map(|f| (f.holder.clone(), f.fault.clone()))
        .collect();
    assert_eq!(
        faults,
        vec![
            (
                Holder::from(liar.addr),
                HolderFault::SizeUnproven {
                    declared: size - 100
                }
            ),
            (Holder::from(impostor.addr), HolderFault::BadOutboard),
        ]
    );
    assert_eq!(
        served(&honest),
        size + (size % GROUP_BYTES),
        "final-group proof plus the file"
    );
    assert_eq!(report.holders_used.len(), 1);

    // Only liars: nothing is accepted, and the caller learns why.
    let dest2 = out.path().join("w.bin");
    let result = download(
        request(id, vec![liar.addr.into(), impostor.addr.into()], &dest2),
        DownloadOptions::test(),
        None,
    )
    .await;
    match result {
        Err(TransferError::HoldersExhausted {
            verified: 0,
            size: None,
            failures,
            ..
        }) => {
            assert_eq!(failures.len(), 2);
        }
        other => panic!("expected exhaustion, got {other:?}"),
    }
    assert!(!dest2.exists());
    assert_eq!(
        part_files_exist(&dest2),
        [false; 3],
        "nothing unproven is kept"
    );

    // A caller that expects another size rejects an honest holder's different size.
    let mut wrong_size = request(id, vec![honest.addr.into()], &out.path().join("v.bin"));
    wrong_size.expected_size = Some(size + 1);
    let result = download(wrong_size, DownloadOptions::test(), None).await;
    match result {
        Err(TransferError::HoldersExhausted { failures, .. }) => assert_eq!(
            failures[0].fault,
            HolderFault::SizeMismatch {
                expected: size + 1,
                declared: size
            }
        ),
        other => panic!("expected exhaustion, got {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_and_missing_holders_are_skipped() {
    let root = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let content = random_bytes(MIB, 70);
    let source = Arc::new(MapSource::default());
    let id = share(&source, root.path(), "a.bin", &content);
    let good = start_server(ServerConfig::new(root.path()), Arc::clone(&source)).await;
    let empty_root = tempfile::tempdir().unwrap();
    let without = start_server(
        ServerConfig::new(empty_root.path()),
        Arc::new(MapSource::default()),
    )
    .await;
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };

    let dest = out.path().join("a.bin");
    let report = download(
        request(
            id,
            vec![closed.into(), without.addr.into(), good.addr.into()],
            &dest,
        ),
        DownloadOptions::test(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), content);
    let faults: Vec<_> = report.failures.iter().map(|f| &f.fault).collect();
    // A refused connection drops the holder for the download at once (issue 13: a killed
    // holder was asked again and again, and named once per try).
    assert_eq!(faults[0], &HolderFault::Refused, "{faults:?}");
    assert_eq!(
        faults
            .iter()
            .filter(|f| ***f == HolderFault::Refused)
            .count(),
        1,
        "{faults:?}"
    );
    assert!(faults.contains(&&HolderFault::NotFound), "{faults:?}");

    // Only a gone holder: one try, and the error names it once.
    let error = download(
        request(id, vec![closed.into()], &out.path().join("c")),
        DownloadOptions::test(),
        None,
    )
    .await
    .unwrap_err()
    .to_string();
    assert_eq!(error.matches(&closed.to_string()).count(), 1, "{error}");
    assert!(error.contains("refused the connection"), "{error}");

    let none = download(
        request(id, vec![], &out.path().join("b")),
        DownloadOptions::test(),
        None,
    )
    .await;
    assert!(matches!(none, Err(TransferError::NoHolders)));
}

#[tokio::test]
async fn a_damaged_partial_is_reverified_on_resume_and_only_the_damage_onwards_is_refetched() {
    let out = tempfile::tempdir().unwrap();
    let content = Arc::new(random_bytes(3 * MIB, 80));
    let id = ContentId::of(&content);
    let size = content.len() as u64;
    let dest = out.path().join("damaged.bin");

    let flaky = fake_holder(Arc::clone(&content), Behaviour::CutAfter(MIB as u64)).await;
    let first = download(
        request(id, vec![flaky.addr.into()], &dest),
        DownloadOptions::test(),
        None,
    )
    .await;
    let Err(TransferError::HoldersExhausted { verified, part, .. }) = first else {
        panic!("expected exhaustion, got {first:?}");
    };
    assert_eq!(verified, 2 * MIB as u64);

    // Flip a byte inside the verified prefix, as a torn write or a meddler would.
    let damage_at = MIB as u64 + 40_000;
    let mut bytes = std::fs::read(&part).unwrap();
    bytes[damage_at as usize] ^= 1;
    std::fs::write(&part, bytes).unwrap();

    let honest = fake_holder(Arc::clone(&content), Behaviour::Honest).await;
    let report = download(
        request(id, vec![honest.addr.into()], &dest),
        DownloadOptions::test(),
        None,
    )
    .await
    .unwrap();
    let group = damage_at / GROUP_BYTES * GROUP_BYTES;
    assert_eq!(report.bytes_resumed, group);
    assert_eq!(served(&honest), size - group);
    assert_eq!(std::fs::read(&dest).unwrap(), *content);
}
