//! Issue 13, tickets, against real node processes: `highway share FILE` prints a ticket,
//! `highway get TICKET` on another node fetches the file verified; with the ticket's
//! holder gone, the same ticket still works through the overlay from another peer that
//! holds the same content. `highway share FOLDER` with a folder the node does not share
//! switches its share and prints a ticket per file; the shell's `ticket` and `get
//! TICKET` do the same as the commands.

mod cli_support;
mod support;

use std::time::Duration;

use cli_support::{pattern, run, run_ok, saving_node_args, share_dir, texts, wait_searchable};
use support::Cluster;

const PEERS: usize = 3;
const FILE: &str = "harbour-chart.bin";
const SIZE: usize = 700_000;

fn tickets_in(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("hw1"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_fetches_the_file_from_its_holder_or_from_another_peer_once_it_is_gone() {
    let shares = tempfile::tempdir().unwrap();
    for i in 0..PEERS {
        std::fs::create_dir_all(share_dir(shares.path(), i)).unwrap();
    }
    // Peers 1 and 2 hold the same content; the ticket comes from peer 2.
    for i in 1..PEERS {
        std::fs::write(share_dir(shares.path(), i).join(FILE), pattern(SIZE, 5)).unwrap();
    }
    let root = shares.path().to_path_buf();
    let cwd = tempfile::tempdir().unwrap();
    let downloads = cwd.path().display().to_string();
    let mut cluster = Cluster::start_each(PEERS, |i, _| {
        let mut args = saving_node_args(i, &root, &downloads);
        args.extend(["--share-root".to_string(), root.display().to_string()]);
        args
    })
    .await;
    wait_searchable(&cluster.nodes, &[0, 1, 1]).await;
    let limit = Duration::from_secs(40);
    let holder = cluster.nodes[2].control.clone();
    let getter = cluster.nodes[0].control.clone();

    let file = share_dir(shares.path(), 2).join(FILE);
    let (out, _) = run_ok(
        &["share", "--node", &holder, file.to_str().unwrap()],
        "",
        cwd.path(),
        limit,
    )
    .await;
    let tickets = tickets_in(&out);
    assert_eq!(tickets.len(), 1, "{out}");
    assert!(out.contains(&format!("{FILE} (683.6 KiB)")), "{out}");
    let ticket = &tickets[0];

    // From the holder the ticket names; the link form works the same.
    for (form, out_name) in [
        (ticket.clone(), "first.bin"),
        (format!("highway://{ticket}"), "second.bin"),
    ] {
        let (out, _) = run_ok(
            &["get", "--node", &getter, &form, "--out", out_name],
            "",
            cwd.path(),
            limit,
        )
        .await;
        assert!(out.contains("verified against BLAKE3"), "{out}");
        assert_eq!(
            std::fs::read(cwd.path().join(out_name)).unwrap(),
            pattern(SIZE, 5)
        );
    }

    // The ticket's holder is gone: the file comes from peer 1, found by hash.
    cluster.nodes[2].kill_and_wait().await;
    let (_, err) = run_ok(
        &["get", "--node", &getter, ticket, "--out", "third.bin"],
        "",
        cwd.path(),
        Duration::from_secs(60),
    )
    .await;
    assert!(err.contains("looking for other peers holding it"), "{err}");
    assert_eq!(
        std::fs::read(cwd.path().join("third.bin")).unwrap(),
        pattern(SIZE, 5)
    );

    // A damaged ticket is refused before anything starts.
    let damaged = ticket.replace(&ticket[10..14], "1111");
    let output = run(&["get", "--node", &getter, &damaged], "", cwd.path(), limit).await;
    let (_, err) = texts(&output);
    assert!(!output.status.success());
    assert!(err.contains("ticket is damaged"), "{err}");

    // A folder the node does not share becomes its share; one ticket per file.
    let folder = shares.path().join("fresh");
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    std::fs::write(folder.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(folder.join("sub/b.txt"), b"beta\n").unwrap();
    let peer1 = cluster.nodes[1].control.clone();
    let (out, err) = run_ok(
        &["share", "--node", &peer1, folder.to_str().unwrap()],
        "",
        cwd.path(),
        limit,
    )
    .await;
    assert!(err.contains("the node now shares"), "{err}");
    assert_eq!(tickets_in(&out).len(), 2, "{out}");
    assert!(out.contains("sub/b.txt (5 B)"), "{out}");

    // The shell: `ticket` prints one, `get TICKET` fetches it.
    let script = format!("ticket {}\nexit\n", folder.join("a.txt").display());
    let (out, _) = run_ok(&["shell", "--node", &peer1], &script, cwd.path(), limit).await;
    let shell_ticket = tickets_in(&out).pop().expect("a ticket line");
    let script = format!("get {shell_ticket} from-shell.txt\nwait\nexit\n");
    let _ = run_ok(&["shell", "--node", &getter], &script, cwd.path(), limit).await;
    assert_eq!(
        std::fs::read(cwd.path().join("from-shell.txt")).unwrap(),
        b"alpha\n"
    );
    cluster.stop().await;
}
