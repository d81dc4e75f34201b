//! Running `highway` as another OS user (`nobody`, through util-linux's `setpriv`), for
//! the tests of what a user other than the node's may do or read. Root only.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::BIN;

/// Whether this process runs as root (the tests that need `nobody` say so and skip).
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// How `nobody` runs a program: setpriv to nobody/nogroup, no supplementary groups, and
/// an environment of its own (no root HOME to find a token under).
pub fn nobody(program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(program)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent");
    cmd
}

/// The `highway` binary as `nobody` can run it: the build's, or a 0755 copy in `scratch`
/// when the target directory is closed to other users.
pub fn binary_for_nobody(scratch: &Path) -> PathBuf {
    let probe = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(BIN)
        .arg("--version")
        .output()
        .expect("setpriv runs (util-linux)");
    if probe.status.success() {
        return PathBuf::from(BIN);
    }
    let copy = scratch.join("highway");
    std::fs::copy(BIN, &copy).unwrap();
    chmod(&copy, 0o755);
    copy
}
