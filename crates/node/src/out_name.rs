//! Where a download lands when the request names a folder (or nothing): the file's own
//! name from the hit, made safe for a file system, and a free ` (1)`-style variant when
//! that name is taken. One set of rules for `highway get`, the shell and the web UI, as
//! they all leave the choice to the node (issue 13).

use std::path::{Component, Path, PathBuf};

use crate::confine::{OutError, download_destination};

/// Where a request asked its download to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Exactly this file (resolved); it must not exist yet.
    File(PathBuf),
    /// Into this folder (resolved), under the file's own name.
    Folder(PathBuf),
}

/// Longest file name chosen, in bytes (most file systems allow 255; ` (99)` and `.part`
/// must still fit).
const MAX_NAME_BYTES: usize = 200;
/// How many ` (n)` variants are tried before giving up.
const MAX_VARIANTS: u32 = 999;

/// What `out` means: nothing, or an existing folder, is "into that folder"; anything else
/// is a file path, checked as [`download_destination`] does. A relative `out` is taken
/// from `dir`, the node's download folder.
pub fn download_target(out: Option<&Path>, dir: &Path, anywhere: bool) -> Result<Target, OutError> {
    let Some(out) = out else {
        return Ok(Target::Folder(resolve_folder(dir)?));
    };
    if out.is_relative() && out.components().any(|c| c == Component::ParentDir) {
        return Err(OutError::ParentDir(out.to_path_buf()));
    }
    let joined = dir.join(out);
    if joined.is_dir() {
        let folder = resolve_folder(&joined)?;
        if !anywhere && !folder.starts_with(resolve_folder(dir)?) {
            return Err(OutError::Outside {
                out: joined,
                dir: dir.to_path_buf(),
            });
        }
        return Ok(Target::Folder(folder));
    }
    // `out/` for a folder that is not there: say so rather than treat it as a file.
    if out.as_os_str().as_encoded_bytes().ends_with(b"/") {
        return Err(OutError::NoDirectory(joined));
    }
    download_destination(out, dir, anywhere).map(Target::File)
}

fn resolve_folder(path: &Path) -> Result<PathBuf, OutError> {
    std::fs::canonicalize(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => OutError::NoDirectory(path.to_path_buf()),
        _ => OutError::Unresolvable {
            path: path.to_path_buf(),
            error,
        },
    })
}

/// A file name for a hit's `name` (a `/`-separated path in the holder's share, from the
/// network, so hostile): its last part, with control characters and `\` replaced by
/// `_`, cut to [`MAX_NAME_BYTES`]. `None` when nothing usable is left.
pub fn safe_file_name(name: &str) -> Option<String> {
    let last = name.rsplit('/').next()?;
    let cleaned: String = last
        .chars()
        .map(|c| if c.is_control() || c == '\\' { '_' } else { c })
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() || trimmed == "." || trimmed == ".." {
        return None;
    }
    let mut end = trimmed.len().min(MAX_NAME_BYTES);
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    Some(trimmed[..end].to_string())
}

/// `name`, or `stem (n).ext` for the first `n` that is free in `folder`. A name counts
/// as free when nothing is there — unless `busy` says another download is writing it —
/// so a `.part` left by an interrupted attempt at the same name is resumed, not skipped.
pub fn free_name(folder: &Path, name: &str, busy: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let (stem, ext) = split_extension(name);
    (0..=MAX_VARIANTS)
        .map(|n| match n {
            0 => folder.join(name),
            n => folder.join(format!("{stem} ({n}){ext}")),
        })
        .find(|path| path.symlink_metadata().is_err() && !busy(path))
}

/// `("movie", ".mkv")` for `movie.mkv`; a leading dot (`.profile`) is no extension, and
/// `archive.tar.gz` keeps `.tar.gz` together so variants read `archive (1).tar.gz`.
fn split_extension(name: &str) -> (&str, &str) {
    let body_start = name.len() - name.trim_start_matches('.').len();
    let body = &name[body_start..];
    let dot = match body.find(".tar.") {
        Some(at) => Some(at),
        None => body.rfind('.'),
    };
    match dot {
        Some(at) if at > 0 => name.split_at(body_start + at),
        _ => (name, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_network_become_one_safe_file_name() {
        assert_eq!(safe_file_name("music/a.mp3").as_deref(), Some("a.mp3"));
        assert_eq!(
            safe_file_name("../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(
            safe_file_name("x\u{1b}]0;t\u{7}.txt").as_deref(),
            Some("x_]0;t_.txt")
        );
        assert_eq!(safe_file_name("a\\b").as_deref(), Some("a_b"));
        for bad in ["", "dir/", "..", "a/..", " ", "."] {
            assert_eq!(safe_file_name(bad), None, "{bad:?}");
        }
        let long = "é".repeat(300);
        let cut = safe_file_name(&long).unwrap();
        assert!(cut.len() <= MAX_NAME_BYTES && cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn taken_names_get_numbered_variants_and_parts_are_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path();
        let none = |_: &Path| false;
        assert_eq!(
            free_name(folder, "a.mp3", none).unwrap(),
            folder.join("a.mp3")
        );
        std::fs::write(folder.join("a.mp3"), b"x").unwrap();
        std::fs::write(folder.join("a (1).mp3"), b"x").unwrap();
        assert_eq!(
            free_name(folder, "a.mp3", none).unwrap(),
            folder.join("a (2).mp3")
        );
        // Another download writing `a (2).mp3` makes the next one `a (3).mp3`.
        let busy = |p: &Path| p.ends_with("a (2).mp3");
        assert_eq!(
            free_name(folder, "a.mp3", busy).unwrap(),
            folder.join("a (3).mp3")
        );
        // Only a `.part` there: the name is free, and the download resumes it.
        std::fs::write(folder.join("b.bin.part"), b"x").unwrap();
        assert_eq!(
            free_name(folder, "b.bin", none).unwrap(),
            folder.join("b.bin")
        );
        assert_eq!(split_extension("archive.tar.gz"), ("archive", ".tar.gz"));
        assert_eq!(split_extension(".profile"), (".profile", ""));
        assert_eq!(split_extension("README"), ("README", ""));
    }

    #[test]
    fn nothing_or_a_folder_means_into_it_and_a_file_path_stays_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(base.join("sub")).unwrap();
        assert_eq!(
            download_target(None, &base, false).unwrap(),
            Target::Folder(base.clone())
        );
        assert_eq!(
            download_target(Some(Path::new("sub")), &base, false).unwrap(),
            Target::Folder(base.join("sub"))
        );
        assert_eq!(
            download_target(Some(&base.join("sub/x.bin")), &base, false).unwrap(),
            Target::File(base.join("sub/x.bin"))
        );
        let err = download_target(Some(Path::new("new/")), &base, false).unwrap_err();
        assert!(matches!(err, OutError::NoDirectory(_)), "{err}");
        let err = download_target(Some(Path::new("/")), &base, false).unwrap_err();
        assert!(matches!(err, OutError::Outside { .. }), "{err}");
        assert_eq!(
            download_target(Some(Path::new("/")), &base, true).unwrap(),
            Target::Folder(PathBuf::from("/"))
        );
    }
}
