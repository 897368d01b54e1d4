//! The library's one error type: every error names the file (when there is one)
//! and the processing stage it happened in, and says what to do about it.

use std::fmt;
use std::path::{Path, PathBuf};

/// The processing stage an [`Error`] happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Opening or reading an input file.
    Open,
    /// Demuxing or decoding compressed audio.
    Decode,
    /// Down-mixing and resampling to the analysis rate.
    Resample,
    /// Computing features from the analysis signal.
    Analyze,
    /// Reading a fingerprint file.
    ReadFingerprint,
    /// Writing a fingerprint file.
    WriteFingerprint,
    /// Reading a training-set index.
    ReadIndex,
    /// Writing a training-set index.
    WriteIndex,
    /// Auditing a query against an index.
    Audit,
    /// Calibrating thresholds or scoring an evaluation.
    Calibrate,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Open => "open",
            Stage::Decode => "decode",
            Stage::Resample => "resample",
            Stage::Analyze => "analyze",
            Stage::ReadFingerprint => "read fingerprint",
            Stage::WriteFingerprint => "write fingerprint",
            Stage::ReadIndex => "read index",
            Stage::WriteIndex => "write index",
            Stage::Audit => "audit",
            Stage::Calibrate => "calibrate",
        })
    }
}

/// What went wrong.
///
/// New kinds may be added in later versions (`#[non_exhaustive]`): match
/// with a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An operating-system I/O error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The input is in a container or codec Refrain cannot decode; the
    /// message names it and what to convert it to.
    #[error("unsupported format: {0}")]
    Unsupported(String),
    /// Something asked for is not there (no index in a directory).
    #[error("not found: {0}")]
    NotFound(String),
    /// The input is damaged or is not what its name says.
    #[error("damaged or invalid data: {0}")]
    Corrupt(String),
    /// The input holds no usable audio.
    #[error("no audio: {0}")]
    Empty(String),
    /// A value passed through the API is out of range.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A stored artifact was written by another format version.
    #[error("format version {found} is not supported (this build reads version {expected}); re-create it with this version of refrain")]
    Version {
        /// The version found in the file.
        found: u32,
        /// The version this build reads and writes.
        expected: u32,
    },
    /// A stored artifact was computed with other analysis parameters.
    #[error("analysis parameters differ (file {found:016x}, this build {expected:016x}); fingerprints made with other parameters cannot be compared: re-create it with this version of refrain")]
    Params {
        /// The parameter hash found in the file.
        found: u64,
        /// The parameter hash of this build.
        expected: u64,
    },
    /// An input exceeded a configured resource limit.
    #[error("{0}")]
    Limit(String),
}

/// The library's error: what went wrong, at which stage, with which file.
#[derive(Debug)]
pub struct Error {
    /// The file involved, if any.
    pub path: Option<PathBuf>,
    /// The stage that failed.
    pub stage: Stage,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl Error {
    /// An error at `stage` with no file attached.
    pub fn new(stage: Stage, kind: ErrorKind) -> Self {
        Error {
            path: None,
            stage,
            kind,
        }
    }

    /// An error at `stage` concerning the file `path`.
    pub fn at(path: &Path, stage: Stage, kind: ErrorKind) -> Self {
        Error {
            path: Some(path.to_path_buf()),
            stage,
            kind,
        }
    }

    /// Attaches `path` if the error does not name a file yet.
    pub fn with_path(mut self, path: &Path) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_path_buf());
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}: {}: {}", p.display(), self.stage, self.kind),
            None => write!(f, "{}: {}", self.stage, self.kind),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
