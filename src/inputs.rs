//! Finding input files: named files are taken as they are, directories are
//! walked recursively for audio files (symlink loops are detected).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Stage};

/// File extensions taken from directories (case-insensitive).
pub const AUDIO_EXTENSIONS: &[&str] = &[
    "wav", "wave", "flac", "mp3", "ogg", "oga", "opus", "m4a", "mp4", "aac",
];

/// One input found under the paths the user gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The file, as found (the user's path joined with the walked part).
    pub path: PathBuf,
    /// The path relative to the directory argument it was found in, or its
    /// file name when the file was named directly.
    pub relative: PathBuf,
}

/// Whether `path` has an audio extension.
pub fn is_audio(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| AUDIO_EXTENSIONS.iter().any(|a| a.eq_ignore_ascii_case(e)))
        .unwrap_or(false)
}

/// Expands `paths` into input files, sorted within each directory. Paths
/// that cannot be read, and anything that is not a regular file or a
/// directory (a named pipe would block the reader), are returned as errors
/// beside the inputs found.
pub fn collect(paths: &[PathBuf]) -> (Vec<Input>, Vec<Error>) {
    let mut inputs = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => {
                let mut seen = HashSet::new();
                walk(p, p, &mut seen, &mut inputs, &mut errors);
            }
            Ok(m) if m.is_file() => inputs.push(Input {
                path: p.clone(),
                relative: p
                    .file_name()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| p.clone()),
            }),
            Ok(_) => errors.push(not_a_file(p)),
            Err(e) => errors.push(Error::at(p, Stage::Open, ErrorKind::Io(e))),
        }
    }
    (inputs, errors)
}

/// The error for a path that is neither a directory nor a regular file.
pub fn not_a_file(path: &Path) -> Error {
    Error::at(
        path,
        Stage::Open,
        ErrorKind::Unsupported(
            "not a regular file (a pipe, socket or device); give audio files or directories".into(),
        ),
    )
}

fn walk(
    root: &Path,
    dir: &Path,
    seen: &mut HashSet<PathBuf>,
    inputs: &mut Vec<Input>,
    errors: &mut Vec<Error>,
) {
    match std::fs::canonicalize(dir) {
        Ok(c) => {
            if !seen.insert(c) {
                return; // a symlink loop or a directory reached twice
            }
        }
        Err(e) => {
            errors.push(Error::at(dir, Stage::Open, ErrorKind::Io(e)));
            return;
        }
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            errors.push(Error::at(dir, Stage::Open, ErrorKind::Io(e)));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => walk(root, &path, seen, inputs, errors),
            Ok(m) if m.is_file() && is_audio(&path) => {
                let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                inputs.push(Input { path, relative });
            }
            // a named pipe or a device with an audio name: opening it could
            // block forever or never end
            Ok(m) if !m.is_file() && is_audio(&path) => errors.push(not_a_file(&path)),
            Ok(_) => {}
            Err(e) => {
                // a dangling symlink with an audio name is worth reporting
                if is_audio(&path) {
                    errors.push(Error::at(&path, Stage::Open, ErrorKind::Io(e)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_directories_skips_non_audio_and_survives_symlink_loops() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(d.path().join("x.wav"), b"").unwrap();
        std::fs::write(sub.join("y.MP3"), b"").unwrap();
        std::fs::write(sub.join("notes.txt"), b"").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(d.path(), sub.join("loop")).unwrap();
        let (inputs, errors) = collect(&[d.path().to_path_buf(), d.path().join("missing.wav")]);
        let rel: Vec<_> = inputs.iter().map(|i| i.relative.clone()).collect();
        assert_eq!(
            rel,
            vec![PathBuf::from("a/b/y.MP3"), PathBuf::from("x.wav")]
        );
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("missing.wav"));
    }
}
