//! Issue 11's matrix: `scripts/nat-matrix` builds a small Internet of network namespaces
//! behind NATs of every kind (full cone, port-restricted, symmetric, UDP blocked,
//! carrier-grade, two peers in one home, two public peers) and checks that every ordered
//! pair of peers has neighbours, finds the other's file and downloads it, byte for byte.
//!
//! Namespaces and iptables need root: without root the test says SKIPPED and returns. A
//! missing `ip` or `iptables` is a skip too, unless `HIGHWAY_REQUIRE_TOOLS=1` (scripts/test,
//! which installs them) makes it a failure. `HW_NAT_REQUIRE_GET` (all, public-holders,
//! none; default all) says which downloads must succeed; `HW_NAT_KINDS` limits
//! the kinds (comma-separated, default [`DEFAULT_KINDS`]).

use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_highway");

/// The kinds checked by default: all of them.
const DEFAULT_KINDS: &str =
    "public,fullcone,restricted,symmetric,udpblocked,cgnat,samehome,forwarded";

/// Whether `program --version`-like `probe` runs, on PATH or in /usr/sbin (a non-login
/// root shell may lack it on PATH).
fn runs(program: &str, probe: &str) -> bool {
    [program.to_string(), format!("/usr/sbin/{program}")]
        .iter()
        .any(|p| {
            Command::new(p)
                .arg(probe)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn every_ordered_pair_of_peers_searches_and_downloads_across_nats() {
    if !is_root() {
        eprintln!(
            "SKIPPED: nat_matrix_process needs root (network namespaces, iptables); \
             run it as root, e.g. in CI"
        );
        return;
    }
    for (tool, probe, package) in [
        ("ip", "-V", "iproute2"),
        ("iptables", "--version", "iptables"),
    ] {
        if !runs(tool, probe) {
            let why = format!("{tool} is not installed ({package}); ./scripts/test installs it");
            assert!(
                std::env::var("HIGHWAY_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "{why}, and HIGHWAY_REQUIRE_TOOLS=1 forbids skipping"
            );
            eprintln!("SKIPPED: {why}");
            return;
        }
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/nat-matrix");
    let require_get = std::env::var("HW_NAT_REQUIRE_GET").unwrap_or_else(|_| "all".to_string());
    let mut command = Command::new(&script);
    command.args(["--bin", BIN, "--require-get", &require_get]);
    let kinds = std::env::var("HW_NAT_KINDS").unwrap_or_else(|_| DEFAULT_KINDS.to_string());
    command.args(["--kinds", &kinds]);
    // The script bounds every step itself (about a minute when nodes never link, less
    // when they do) and removes its namespaces and processes however it ends.
    let output = command.output().expect("run scripts/nat-matrix");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "scripts/nat-matrix failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
