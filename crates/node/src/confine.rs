//! What the control API may make the node touch on disk: downloads only inside
//! `--download-dir` (unless `--allow-download-anywhere`), shares only the `--share` folder
//! or folders under a `--share-root`. Paths are checked after symlinks are resolved, so a
//! link cannot lead out, and the resolved path is what the node then uses.

use std::path::{Component, Path, PathBuf};

/// Why a download destination was refused.
#[derive(Debug, thiserror::Error)]
pub enum OutError {
    #[error(
        "\"out\" {0} contains `..`; give a name inside the node's download folder, or an \
         absolute path inside it"
    )]
    ParentDir(PathBuf),
    #[error("\"out\" {0:?} names no file; give a file name such as \"movie.mkv\"")]
    NoFileName(PathBuf),
    #[error("the directory {0} does not exist; create it first")]
    NoDirectory(PathBuf),
    #[error("{0} is a file, not a folder; give a path inside a folder")]
    NotAFolder(PathBuf),
    #[error(
        "{out} is outside the node's download folder {dir}; give a path inside it (a \
         relative \"out\" goes there), or start the node with another --download-dir, or \
         with --allow-download-anywhere"
    )]
    Outside { out: PathBuf, dir: PathBuf },
    #[error("cannot resolve {path}: {error}")]
    Unresolvable {
        path: PathBuf,
        error: std::io::Error,
    },
}

fn resolve(path: &Path) -> Result<PathBuf, OutError> {
    std::fs::canonicalize(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            OutError::NoDirectory(path.to_path_buf())
        } else {
            OutError::Unresolvable {
                path: path.to_path_buf(),
                error,
            }
        }
    })
}

/// Where a download asked to go to `out` really goes: a relative `out` is joined to
/// `dir`; its folder is resolved (symlinks followed) and, unless `anywhere`, must be
/// `dir` or below it. The file itself is not checked here (it must not exist; the
/// caller says so with its own error).
pub fn download_destination(out: &Path, dir: &Path, anywhere: bool) -> Result<PathBuf, OutError> {
    if out.is_relative() && out.components().any(|c| c == Component::ParentDir) {
        return Err(OutError::ParentDir(out.to_path_buf()));
    }
    let Some(name) = out.file_name() else {
        return Err(OutError::NoFileName(out.to_path_buf()));
    };
    let joined = if out.is_absolute() {
        out.to_path_buf()
    } else {
        dir.join(out)
    };
    let parent = joined.parent().unwrap_or(Path::new("/"));
    let parent = resolve(parent)?;
    if !parent.is_dir() {
        return Err(OutError::NotAFolder(parent));
    }
    if !anywhere {
        let dir = resolve(dir)?;
        if !parent.starts_with(&dir) {
            return Err(OutError::Outside { out: joined, dir });
        }
    }
    Ok(parent.join(name))
}

/// The folders `POST /v1/share` may share.
#[derive(Debug, Clone, Default)]
pub struct ShareRoots {
    /// The `--share` folder given at start, resolved.
    start: Option<PathBuf>,
    /// `--share-root` folders, resolved: they and everything below them.
    roots: Vec<PathBuf>,
}

/// Why a folder may not be shared.
#[derive(Debug, thiserror::Error)]
pub enum ShareRootError {
    #[error("cannot share {path}: {error}")]
    Unresolvable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "{path} is not a folder this node may share: it was started with {allowed}; start \
         it with --share-root DIR (a folder containing {path}) to allow sharing it"
    )]
    NotAllowed { path: PathBuf, allowed: String },
}

impl ShareRoots {
    /// From the start `--share` folder (if it resolves: if not, starting the share
    /// reports why) and the `--share-root` folders (which must resolve).
    pub fn new(start: Option<&Path>, roots: &[PathBuf]) -> Result<Self, (PathBuf, std::io::Error)> {
        let start = start.and_then(|p| std::fs::canonicalize(p).ok());
        let roots = roots
            .iter()
            .map(|root| std::fs::canonicalize(root).map_err(|e| (root.clone(), e)))
            .collect::<Result<_, _>>()?;
        Ok(Self { start, roots })
    }

    /// The resolved folder to share, when `path` is the start folder or under a root.
    pub fn check(&self, path: &Path) -> Result<PathBuf, ShareRootError> {
        let resolved =
            std::fs::canonicalize(path).map_err(|error| ShareRootError::Unresolvable {
                path: path.to_path_buf(),
                error,
            })?;
        let allowed = self.start.as_ref() == Some(&resolved)
            || self.roots.iter().any(|root| resolved.starts_with(root));
        if allowed {
            Ok(resolved)
        } else {
            Err(ShareRootError::NotAllowed {
                path: resolved,
                allowed: self.describe(),
            })
        }
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(start) = &self.start {
            parts.push(format!("--share {}", start.display()));
        }
        for root in &self.roots {
            parts.push(format!("--share-root {}", root.display()));
        }
        if parts.is_empty() {
            "neither --share nor --share-root".to_string()
        } else {
            parts.join(" and ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_outs_go_to_the_download_dir_and_cannot_climb_out() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(base.join("sub")).unwrap();
        assert_eq!(
            download_destination(Path::new("a.bin"), &base, false).unwrap(),
            base.join("a.bin")
        );
        assert_eq!(
            download_destination(Path::new("sub/a.bin"), &base, false).unwrap(),
            base.join("sub/a.bin")
        );
        for bad in ["../a.bin", "sub/../../a.bin", "sub/.."] {
            let err = download_destination(Path::new(bad), &base, true).unwrap_err();
            assert!(matches!(err, OutError::ParentDir(_)), "{bad}: {err}");
        }
        let err = download_destination(Path::new("nope/a.bin"), &base, false).unwrap_err();
        assert!(matches!(err, OutError::NoDirectory(_)), "{err}");
    }

    #[test]
    fn absolute_outs_must_resolve_inside_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let downloads = base.join("downloads");
        let elsewhere = base.join("elsewhere");
        std::fs::create_dir(&downloads).unwrap();
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, downloads.join("link")).unwrap();

        let inside = downloads.join("a.bin");
        assert_eq!(
            download_destination(&inside, &downloads, false).unwrap(),
            inside
        );
        for bad in [
            elsewhere.join("a.bin"),
            downloads.join("link/a.bin"),
            downloads.join("../elsewhere/a.bin"),
        ] {
            let err = download_destination(&bad, &downloads, false).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, OutError::Outside { .. }), "{text}");
            assert!(text.contains("--allow-download-anywhere"), "{text}");
        }
        assert_eq!(
            download_destination(&downloads.join("link/a.bin"), &downloads, true).unwrap(),
            elsewhere.join("a.bin")
        );
    }

    #[test]
    fn shares_are_the_start_folder_or_under_a_root_after_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        for sub in ["start", "start/inner", "root/a", "secret"] {
            std::fs::create_dir_all(base.join(sub)).unwrap();
        }
        std::os::unix::fs::symlink(base.join("secret"), base.join("root/escape")).unwrap();
        let roots = ShareRoots::new(Some(&base.join("start")), &[base.join("root")]).unwrap();
        assert_eq!(
            roots.check(&base.join("start")).unwrap(),
            base.join("start")
        );
        assert_eq!(
            roots.check(&base.join("root/a")).unwrap(),
            base.join("root/a")
        );
        assert!(roots.check(&base.join("root")).is_ok());
        for bad in ["start/inner", "secret", "root/escape", "root/../secret"] {
            let err = roots.check(&base.join(bad)).unwrap_err().to_string();
            assert!(err.contains("--share-root DIR"), "{bad}: {err}");
        }
        let none = ShareRoots::new(None, &[]).unwrap();
        let err = none.check(&base.join("start")).unwrap_err().to_string();
        assert!(err.contains("neither --share nor --share-root"), "{err}");
        assert!(ShareRoots::new(None, &[base.join("missing")]).is_err());
    }
}
