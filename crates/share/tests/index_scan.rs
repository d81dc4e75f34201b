//! Full scans: progress to completion, the hash cache across restarts, what is never
//! shared, and the checks made before a file is served.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use highway_share::{ScanPhase, Share, ShareOptions};
use highway_wire::ContentId;

async fn wait_scan_done(share: &Share, scan: u64) {
    let mut progress = share.progress();
    tokio::time::timeout(
        Duration::from_secs(10),
        progress.wait_for(|p| p.scan >= scan && p.is_done()),
    )
    .await
    .expect("scan finishes")
    .unwrap();
}

fn write_old(path: &Path, content: &[u8]) {
    fs::write(path, content).unwrap();
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

#[tokio::test]
async fn scanning_a_thousand_files_reports_progress_to_completion() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut bytes = 0u64;
    for i in 0..1000 {
        let dir = root.path().join(format!("d{}", i % 10));
        fs::create_dir_all(&dir).unwrap();
        let content = format!("file number {i}");
        bytes += content.len() as u64;
        fs::write(dir.join(format!("item {i}.txt")), content).unwrap();
    }
    let opened = Instant::now();
    let share = Share::open(root.path(), data.path(), ShareOptions::test()).unwrap();
    assert!(
        opened.elapsed() < Duration::from_secs(1),
        "open does not wait for the scan"
    );

    let mut progress = share.progress();
    let mut phases = vec![progress.borrow().phase];
    let last = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            progress.changed().await.unwrap();
            let p = progress.borrow_and_update().clone();
            assert!(p.files_done <= p.files_total.max(p.files_done));
            assert!(p.bytes_done <= p.bytes_total || p.phase == ScanPhase::Walking);
            if phases.last() != Some(&p.phase) {
                phases.push(p.phase);
            }
            if p.is_done() {
                break p;
            }
        }
    })
    .await
    .expect("scan finishes");
    assert_eq!(last.scan, 1);
    assert_eq!((last.files_done, last.files_total), (1000, 1000));
    assert_eq!((last.bytes_done, last.bytes_total), (bytes, bytes));
    assert_eq!(last.files_hashed, 1000);
    assert_eq!(last.errors, 0);
    assert_eq!(phases.last(), Some(&ScanPhase::Done));

    assert_eq!(share.stats().files, 1000);
    assert_eq!(share.files().len(), 1000);
    let hits = share.search("item 517", 10);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].rel_path, Path::new("d7/item 517.txt"));
    assert_eq!(share.search("txt", 5).len(), 5);
    share.stop().await;
}

/// Issue 12: the outboard is made in the hashing pass and kept, so the file server need
/// not read the file again for the first download; it goes when the file does.
#[tokio::test]
async fn indexing_keeps_each_file_s_outboard_until_the_file_leaves() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    write_old(&root.path().join("big.bin"), &big);
    write_old(&root.path().join("small.txt"), b"one chunk group");
    let share = Share::open(root.path(), data.path(), ShareOptions::test()).unwrap();
    wait_scan_done(&share, 1).await;
    let id = ContentId::of(&big);
    let kept = share.outboard_path(&id);
    let expected = highway_share::transfer::compute_outboard(&big[..], big.len() as u64).unwrap();
    assert_eq!(fs::read(&kept).unwrap(), expected.outboard);
    assert!(kept.starts_with(data.path()), "{}", kept.display());
    // One chunk group has no outboard to keep.
    assert!(
        !share
            .outboard_path(&ContentId::of(b"one chunk group"))
            .exists()
    );

    fs::remove_file(root.path().join("big.bin")).unwrap();
    share.rescan();
    wait_scan_done(&share, 2).await;
    assert!(
        !kept.exists(),
        "the outboard of a file no longer shared stays"
    );
    share.stop().await;
}

#[tokio::test]
async fn the_hash_cache_avoids_rehashing_across_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    for i in 0..20 {
        write_old(
            &root.path().join(format!("song {i}.mp3")),
            format!("tune {i}").as_bytes(),
        );
    }
    let first = Share::open(root.path(), data.path(), ShareOptions::test()).unwrap();
    wait_scan_done(&first, 1).await;
    assert_eq!(first.stats().files_hashed, 20);
    first.stop().await;
    assert!(data.path().join("hashcache.json").is_file());

    // One file changes while the share is down.
    write_old(&root.path().join("song 3.mp3"), b"a different tune");
    let second = Share::open(root.path(), data.path(), ShareOptions::test()).unwrap();
    wait_scan_done(&second, 1).await;
    assert_eq!(second.stats().files, 20);
    assert_eq!(
        second.stats().files_hashed,
        1,
        "only the changed file is read"
    );
    assert!(second.lookup(&ContentId::of(b"a different tune")).is_some());
    assert!(second.lookup(&ContentId::of(b"tune 3")).is_none());
    assert!(second.lookup(&ContentId::of(b"tune 7")).is_some());

    // A rescan reads nothing either.
    second.rescan();
    wait_scan_done(&second, 2).await;
    assert_eq!(second.stats().files_hashed, 1);
    second.stop().await;
}

#[tokio::test]
async fn a_corrupt_hash_cache_only_costs_a_rehash() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    write_old(&root.path().join("a.txt"), b"a");
    fs::write(data.path().join("hashcache.json"), b"\x00garbage").unwrap();
    let share = Share::open(root.path(), data.path(), ShareOptions::test()).unwrap();
    wait_scan_done(&share, 1).await;
    assert!(share.lookup(&ContentId::of(b"a")).is_some());
    share.stop().await;
    let saved = fs::read_to_string(data.path().join("hashcache.json")).unwrap();
    assert!(saved.contains(&ContentId::of(b"a").to_string()));
}

#[cfg(unix)]
#[tokio::test]
async fn a_symlink_pointing_outside_the_root_is_never_indexed() {
    use std::os::unix::fs::symlink;
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret passwords.txt"), b"hunter2").unwrap();
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    symlink(outside.path(), root.path().join("linked dir")).unwrap();
    symlink(
        outside.path().join("secret passwords.txt"),
        root.path().join("secret link.txt"),
    )
    .unwrap();
    fs::write(root.path().join("public.txt"), b"hello").unwrap();

    let share = Share::open(root.path(), data.path(), ShareOptions::test()).unwrap();
    wait_scan_done(&share, 1).await;
    assert_eq!(share.files().len(), 1);
    assert!(share.search("secret", 10).is_empty());

    // Links made while running, and writes behind them, are ignored by the watcher too.
    symlink(outside.path(), root.path().join("second link")).unwrap();
    fs::write(outside.path().join("secret diary.txt"), b"dear diary").unwrap();
    fs::write(root.path().join("marker.txt"), b"m").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while share.search("marker", 1).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    share.rescan();
    wait_scan_done(&share, 2).await;
    assert_eq!(share.search("marker", 1).len(), 1);
    assert!(share.search("secret", 10).is_empty());
    assert!(share.search("diary", 10).is_empty());
    assert!(share.lookup(&ContentId::of(b"hunter2")).is_none());
    assert_eq!(share.files().len(), 2);
    share.stop().await;
}

#[tokio::test]
async fn hidden_partial_and_data_dir_files_are_not_shared() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join(".hidden.txt"), b"h").unwrap();
    fs::write(root.path().join("movie.mkv.part"), b"p").unwrap();
    fs::write(root.path().join("visible.txt"), b"v").unwrap();
    let data = root.path().join("highway-data");
    let share = Share::open(root.path(), &data, ShareOptions::test()).unwrap();
    wait_scan_done(&share, 1).await;
    share.stop().await;
    // The data dir now holds the cache; a second scan must not index it.
    let share = Share::open(root.path(), &data, ShareOptions::test()).unwrap();
    wait_scan_done(&share, 1).await;
    let files: Vec<_> = share.files().into_iter().map(|f| f.name).collect();
    assert_eq!(files, ["visible.txt"]);
    share.stop().await;
}

#[tokio::test]
async fn a_located_file_opens_only_while_it_is_what_was_indexed() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("sub")).unwrap();
    let path = root.path().join("sub/served.bin");
    write_old(&path, b"served bytes");
    let options = ShareOptions {
        watch: false,
        rescan_interval: Duration::from_secs(600),
        ..ShareOptions::test()
    };
    let share = Share::open(root.path(), data.path(), options).unwrap();
    wait_scan_done(&share, 1).await;

    let located = share.lookup(&ContentId::of(b"served bytes")).unwrap();
    assert!(located.path.starts_with(share.root()));
    assert!(located.path.is_absolute());
    let mut text = String::new();
    located.open().unwrap().read_to_string(&mut text).unwrap();
    assert_eq!(text, "served bytes");

    fs::write(&path, b"other bytes!").unwrap();
    assert_eq!(
        located.open().unwrap_err().kind(),
        std::io::ErrorKind::InvalidData
    );

    #[cfg(unix)]
    {
        // The directory is swapped for a symlink to a look-alike outside the root.
        let outside = tempfile::tempdir().unwrap();
        write_old(&outside.path().join("served.bin"), b"served bytes");
        fs::remove_dir_all(root.path().join("sub")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("sub")).unwrap();
        assert_eq!(
            located.open().unwrap_err().kind(),
            std::io::ErrorKind::PermissionDenied
        );
    }
    share.stop().await;
}

#[tokio::test]
async fn opening_a_missing_root_fails_and_bad_options_are_refused() {
    let data = tempfile::tempdir().unwrap();
    assert!(
        Share::open(
            "/nonexistent/highway/root",
            data.path(),
            ShareOptions::test()
        )
        .is_err()
    );
    let bad = ShareOptions {
        max_files: 0,
        ..ShareOptions::test()
    };
    assert!(Share::open(data.path(), data.path().join("d"), bad).is_err());
}
