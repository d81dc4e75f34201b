//! A running share follows changes to its root through the file watcher: added, removed,
//! renamed and modified files show in the index within seconds. Rescans are set far apart
//! here, so what these tests see is the watcher's work, not the safety net's.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use highway_share::{Share, ShareOptions};
use highway_wire::ContentId;

const DEADLINE: Duration = Duration::from_secs(5);

fn watch_only() -> ShareOptions {
    ShareOptions {
        rescan_interval: Duration::from_secs(600),
        ..ShareOptions::test()
    }
}

/// Polls `cond` until it holds or `DEADLINE` passes; true if it held.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + DEADLINE;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn open_scanned(root: &Path, data: &Path) -> Share {
    let share = Share::open(root, data, watch_only()).unwrap();
    let mut progress = share.progress();
    tokio::time::timeout(Duration::from_secs(10), progress.wait_for(|p| p.is_done()))
        .await
        .expect("first scan finishes")
        .unwrap();
    share
}

fn names(share: &Share, query: &str) -> Vec<String> {
    share
        .search(query, 100)
        .into_iter()
        .map(|f| f.rel_path.to_string_lossy().into_owned())
        .collect()
}

/// Writes `content` at `path` with a modification time an hour ago, so its hash is not
/// "racy" (see `hashcache`) and a later rename can reuse it.
fn write_old(path: &Path, content: &[u8]) {
    fs::write(path, content).unwrap();
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

#[tokio::test]
async fn an_added_file_becomes_searchable() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let share = open_scanned(root.path(), data.path()).await;
    assert!(share.search("sunrise", 10).is_empty());

    fs::write(root.path().join("Sunrise Over Tokyo.mp4"), b"video").unwrap();
    assert!(eventually(|| names(&share, "sunrise tokyo") == ["Sunrise Over Tokyo.mp4"]).await);
    let hit = &share.search("sunrise", 1)[0];
    assert_eq!(hit.content, ContentId::of(b"video"));
    assert_eq!(hit.size, 5);
    share.stop().await;
}

#[tokio::test]
async fn a_file_in_a_new_directory_becomes_searchable() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let share = open_scanned(root.path(), data.path()).await;

    // Written before the watcher can have added the new directory: the walk of the
    // directory's own event must find it.
    fs::create_dir_all(root.path().join("new/deeper")).unwrap();
    fs::write(root.path().join("new/deeper/nested note.txt"), b"n").unwrap();
    assert!(eventually(|| names(&share, "nested") == ["new/deeper/nested note.txt"]).await);
    share.stop().await;
}

/// Folders are watched one by one (issue 13): those made after the start, at any
/// depth, and one removed and made again under the same name, are all watched.
#[tokio::test]
async fn new_nested_and_remade_folders_are_watched_too() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("old/one/two")).unwrap();
    let share = open_scanned(root.path(), data.path()).await;

    fs::write(root.path().join("old/one/two/deep early.txt"), b"1").unwrap();
    assert!(eventually(|| names(&share, "early") == ["old/one/two/deep early.txt"]).await);

    fs::create_dir_all(root.path().join("fresh/a/b")).unwrap();
    fs::write(root.path().join("fresh/a/b/first.txt"), b"2").unwrap();
    assert!(eventually(|| names(&share, "first") == ["fresh/a/b/first.txt"]).await);
    // Written once the new folders are surely watched: only their own watch sees it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    fs::write(root.path().join("fresh/a/b/second.txt"), b"3").unwrap();
    assert!(eventually(|| names(&share, "second") == ["fresh/a/b/second.txt"]).await);

    fs::remove_dir_all(root.path().join("fresh")).unwrap();
    assert!(eventually(|| names(&share, "second").is_empty()).await);
    fs::create_dir_all(root.path().join("fresh/a")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    fs::write(root.path().join("fresh/a/third.txt"), b"4").unwrap();
    assert!(eventually(|| names(&share, "third") == ["fresh/a/third.txt"]).await);
    assert!(share.skipped().is_empty(), "{:?}", share.skipped());
    share.stop().await;
}

#[tokio::test]
async fn a_deleted_file_disappears() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    fs::write(root.path().join("doomed.txt"), b"d").unwrap();
    fs::create_dir(root.path().join("dir")).unwrap();
    fs::write(root.path().join("dir/inside.txt"), b"i").unwrap();
    let share = open_scanned(root.path(), data.path()).await;
    assert_eq!(names(&share, "doomed"), ["doomed.txt"]);

    fs::remove_file(root.path().join("doomed.txt")).unwrap();
    fs::remove_dir_all(root.path().join("dir")).unwrap();
    assert!(eventually(|| share.search("doomed", 10).is_empty()).await);
    assert!(eventually(|| share.search("inside", 10).is_empty()).await);
    assert!(share.lookup(&ContentId::of(b"d")).is_none());
    assert_eq!(share.stats().files, 0);
    share.stop().await;
}

#[tokio::test]
async fn a_renamed_file_is_found_by_its_new_name_only_without_rehashing() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    write_old(&root.path().join("draft report.pdf"), b"report");
    fs::create_dir(root.path().join("old dir")).unwrap();
    write_old(&root.path().join("old dir/track.ogg"), b"track");
    let share = open_scanned(root.path(), data.path()).await;
    let hashed = share.stats().files_hashed;
    assert_eq!(hashed, 2);

    fs::rename(
        root.path().join("draft report.pdf"),
        root.path().join("final summary.pdf"),
    )
    .unwrap();
    fs::rename(root.path().join("old dir"), root.path().join("new dir")).unwrap();
    assert!(eventually(|| names(&share, "final") == ["final summary.pdf"]).await);
    assert!(eventually(|| share.search("draft", 10).is_empty()).await);
    assert!(eventually(|| names(&share, "track") == ["new dir/track.ogg"]).await);
    let located = share.lookup(&ContentId::of(b"report")).unwrap();
    assert_eq!(located.path, share.root().join("final summary.pdf"));
    assert_eq!(share.stats().files, 2);
    assert_eq!(
        share.stats().files_hashed,
        hashed,
        "a rename reuses the hash"
    );
    share.stop().await;
}

#[tokio::test]
async fn a_modified_file_gets_its_new_content_hash() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = root.path().join("notes.txt");
    write_old(&path, b"version one");
    let share = open_scanned(root.path(), data.path()).await;
    assert!(share.lookup(&ContentId::of(b"version one")).is_some());

    fs::write(&path, b"version two, longer").unwrap();
    assert!(
        eventually(|| share
            .lookup(&ContentId::of(b"version two, longer"))
            .is_some())
        .await
    );
    assert!(share.lookup(&ContentId::of(b"version one")).is_none());

    // Same size, different bytes: caught even though only the time changed.
    fs::write(&path, b"version TWO, longer").unwrap();
    assert!(
        eventually(|| share
            .lookup(&ContentId::of(b"version TWO, longer"))
            .is_some())
        .await
    );
    assert_eq!(share.stats().files, 1);
    share.stop().await;
}

#[tokio::test]
async fn the_summary_version_moves_when_keywords_change() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let share = open_scanned(root.path(), data.path()).await;
    let empty = share.summary();
    assert!(empty.version > 0);
    assert!(!empty.might_match(&["zebra"]));

    fs::write(root.path().join("Zebra Crossing.png"), b"z").unwrap();
    assert!(eventually(|| share.summary().might_match(&["zebra", "cross"])).await);
    let with_zebra = share.summary();
    assert!(with_zebra.version > empty.version);
    assert_eq!(
        share.summary_version(),
        with_zebra.version,
        "stable while nothing changes"
    );

    fs::remove_file(root.path().join("Zebra Crossing.png")).unwrap();
    assert!(eventually(|| share.summary().version > with_zebra.version).await);
    assert_eq!(share.summary().count_ones(), 0);
    share.stop().await;
}
