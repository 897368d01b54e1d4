//! Finding input files: named files are taken as they are, directories are
//! walked recursively for audio files (symlink loops are detected), and
//! what a walk passes over is reported ([`Scan::skipped`], [`skipped_summary`]).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Stage};

/// File extensions taken from directories (case-insensitive).
pub const AUDIO_EXTENSIONS: &[&str] = &[
    "wav", "wave", "aif", "aiff", "aifc", "flac", "mp3", "ogg", "oga", "opus", "m4a", "mp4", "aac",
];

/// What [`scan`] found under the paths given.
#[derive(Debug, Default)]
pub struct Scan {
    /// The files to process, sorted within each directory.
    pub inputs: Vec<Input>,
    /// Paths that could not be read, or that are not regular files.
    pub errors: Vec<Error>,
    /// Regular files a directory walk passed over because their extension
    /// is not one taken (files named directly are always taken).
    pub skipped: Vec<PathBuf>,
}

/// One sentence saying what a walk skipped and why (`"skipped 3 files:
/// unrecognised extension .xyz (2), no extension (1)"`), or `None` when it
/// skipped nothing.
pub fn skipped_summary(skipped: &[PathBuf]) -> Option<String> {
    if skipped.is_empty() {
        return None;
    }
    let mut by_ext: BTreeMap<String, usize> = BTreeMap::new();
    for p in skipped {
        let key = match p.extension().and_then(|e| e.to_str()) {
            Some(e) => format!(".{}", e.to_ascii_lowercase()),
            None => String::new(),
        };
        *by_ext.entry(key).or_insert(0) += 1;
    }
    let mut parts: Vec<(usize, String)> = by_ext.into_iter().map(|(k, n)| (n, k)).collect();
    parts.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let named: Vec<String> = parts
        .iter()
        .filter(|(_, k)| !k.is_empty())
        .map(|(n, k)| format!("{k} ({n})"))
        .collect();
    let mut why = Vec::new();
    if !named.is_empty() {
        why.push(format!("unrecognised extension {}", named.join(", ")));
    }
    if let Some((n, _)) = parts.iter().find(|(_, k)| k.is_empty()) {
        why.push(format!("no extension ({n})"));
    }
    let n = skipped.len();
    Some(format!(
        "skipped {n} file{}: {}",
        if n == 1 { "" } else { "s" },
        why.join("; ")
    ))
}

/// Expands `paths` like [`collect`], also taking fingerprint files
/// (`.rfp`) from directories when `fingerprints` is true, and listing the
/// files a walk skipped.
pub fn scan(paths: &[PathBuf], fingerprints: bool) -> Scan {
    let mut scan = Scan::default();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => {
                let mut seen = HashSet::new();
                walk(p, p, fingerprints, &mut seen, &mut scan);
            }
            Ok(m) if m.is_file() => scan.inputs.push(Input {
                path: p.clone(),
                relative: p
                    .file_name()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| p.clone()),
            }),
            Ok(_) => scan.errors.push(not_a_file(p)),
            Err(e) => scan
                .errors
                .push(Error::at(p, Stage::Open, ErrorKind::Io(e))),
        }
    }
    scan
}

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
/// beside the inputs found. [`scan`] also says what directories held that
/// was not taken.
pub fn collect(paths: &[PathBuf]) -> (Vec<Input>, Vec<Error>) {
    let s = scan(paths, false);
    (s.inputs, s.errors)
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

/// Whether `path` has the fingerprint file extension (`.rfp`).
pub fn is_fingerprint(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(crate::fingerprint::EXTENSION))
}

fn walk(root: &Path, dir: &Path, fingerprints: bool, seen: &mut HashSet<PathBuf>, scan: &mut Scan) {
    let Scan {
        inputs,
        errors,
        skipped,
    } = scan;
    let taken = |p: &Path| is_audio(p) || (fingerprints && is_fingerprint(p));
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
            Ok(m) if m.is_dir() => {
                let mut sub = Scan::default();
                walk(root, &path, fingerprints, seen, &mut sub);
                inputs.append(&mut sub.inputs);
                errors.append(&mut sub.errors);
                skipped.append(&mut sub.skipped);
            }
            Ok(m) if m.is_file() && taken(&path) => {
                let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                inputs.push(Input { path, relative });
            }
            Ok(m) if m.is_file() => skipped.push(path),
            // a named pipe or a device with an audio name: opening it could
            // block forever or never end
            Ok(_) if taken(&path) => errors.push(not_a_file(&path)),
            Ok(_) => {}
            Err(e) => {
                // a dangling symlink with an audio name is worth reporting
                if taken(&path) {
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

    #[test]
    fn a_scan_says_what_it_skipped_and_takes_fingerprints_when_asked() {
        let d = tempfile::tempdir().unwrap();
        for name in [
            "a.xyz",
            "b.xyz",
            "c.XYZ",
            "notes.txt",
            "README",
            "d.aiff",
            "e.rfp",
        ] {
            std::fs::write(d.path().join(name), b"").unwrap();
        }
        let s = scan(&[d.path().to_path_buf()], false);
        let names: Vec<_> = s.inputs.iter().map(|i| i.relative.clone()).collect();
        assert_eq!(names, vec![PathBuf::from("d.aiff")]);
        assert_eq!(s.skipped.len(), 6);
        assert_eq!(
            skipped_summary(&s.skipped).unwrap(),
            "skipped 6 files: unrecognised extension .xyz (3), .rfp (1), .txt (1); no extension (1)"
        );
        let s = scan(&[d.path().to_path_buf()], true);
        assert_eq!(s.inputs.len(), 2);
        assert_eq!(s.skipped.len(), 5);
        assert!(skipped_summary(&[]).is_none());
    }
}
