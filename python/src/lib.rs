//! Python bindings of Refrain (the `refrain._refrain` extension module).
//!
//! The objects are thin: an [`Index`] holds the opened index behind an
//! `Arc`, an [`Auditor`] builds a library auditor per call (cheap: the
//! per-thread scratch buffers live in the library), and every call releases
//! the GIL while it works. Samples are copied out of the caller's array
//! before the GIL is released, so the caller may change the array meanwhile.

use std::sync::Arc;
use std::time::Instant;

use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyInt, PyList, PyType};
use rayon::prelude::*;
use refrain_lib::analysis::Analyzer;
use refrain_lib::audit::{self, AuditConfig, Report};
use refrain_lib::index::{self, Thresholds};
use refrain_lib::shard;
use refrain_lib::stream::{StreamCheck, StreamChecker, StreamConfig};
use refrain_lib::{decode, AnalysisParams, ErrorKind};

/// An exception of the class `name` from `refrain._errors` (every one a
/// subclass of `refrain.RefrainError` and of the built-in exception a
/// caller expects: `InvalidInputError` is a `ValueError`,
/// `InvalidTypeError` a `TypeError`, ...).
fn refrain_err(name: &str, msg: String) -> PyErr {
    Python::attach(|py| {
        let class = py
            .import("refrain._errors")
            .and_then(|m| m.getattr(name))
            .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
        match class {
            Ok(c) => PyErr::from_type(c, msg),
            Err(e) => e,
        }
    })
}

/// Bad input: `refrain.InvalidInputError`, a `ValueError`.
fn value_err(msg: String) -> PyErr {
    refrain_err("InvalidInputError", msg)
}

/// Input of the wrong type: `refrain.InvalidTypeError`, a `TypeError`.
fn type_err(msg: String) -> PyErr {
    refrain_err("InvalidTypeError", msg)
}

/// A call in the wrong state: `refrain.StateError`, a `RuntimeError`.
fn state_err(msg: String) -> PyErr {
    refrain_err("StateError", msg)
}

/// Maps a library error to the Python exception a caller expects: bad input
/// is an `InvalidInputError` (a `ValueError`), a missing index or file a
/// `NotFoundError` (a `FileNotFoundError`), other I/O a `RefrainOSError`
/// (an `OSError`), and an index of another version or parameters an
/// `IncompatibleError` (a `RuntimeError`); all are `RefrainError`s.
fn py_err(e: refrain_lib::Error) -> PyErr {
    py_err_with(e, "")
}

/// [`py_err`] with `prefix` before the message.
fn py_err_with(e: refrain_lib::Error, prefix: &str) -> PyErr {
    let msg = format!("{prefix}{e}");
    let class = match &e.kind {
        ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::NotFound => "NotFoundError",
        ErrorKind::NotFound(_) => "NotFoundError",
        ErrorKind::Io(_) => "RefrainOSError",
        ErrorKind::Version { .. } | ErrorKind::Params { .. } => "IncompatibleError",
        _ => "InvalidInputError",
    };
    refrain_err(class, msg)
}

/// An `f32` as the `f64` it prints as (0.3, not 0.30000001192092896).
fn py_f32(v: f32) -> f64 {
    if v.is_finite() {
        v.to_string().parse().unwrap_or(f64::from(v))
    } else {
        f64::from(v)
    }
}

/// Interleaved `f32` samples and their channel count, copied out of any
/// float array-like of shape `(n,)` or `(n, channels)`.
struct Samples {
    data: Vec<f32>,
    channels: u16,
}

/// Most channels accepted in `(n, channels)` arrays.
const MAX_CHANNELS: usize = 64;
/// Most channels accepted in channels-first `(channels, n)` arrays (as
/// torchaudio gives them), when the time axis is also at least
/// [`CHANNELS_FIRST_RATIO`] times longer.
const MAX_CHANNELS_FIRST: usize = 8;
const CHANNELS_FIRST_RATIO: usize = 16;
/// Clips shorter than this cannot be analysed (a few spectral frames); they
/// are refused before any work.
const MIN_CLIP_S: f64 = 0.25;

fn as_float_array<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Bound<'py, PyAny>> {
    let np = PyModule::import(obj.py(), "numpy")?;
    // numpy.asarray takes lists, arrays and objects with __array__ (CPU
    // tensors among them)
    let arr = np.call_method1("asarray", (obj,)).map_err(|e| {
        type_err(format!(
            "{what} must be a float array or a sequence of floats ({e})"
        ))
    })?;
    let kind: String = arr.getattr("dtype")?.getattr("kind")?.extract()?;
    let name: String = arr.getattr("dtype")?.getattr("name")?.extract()?;
    match (kind.as_str(), name.as_str()) {
        ("f", "float32") | ("f", "float64") => Ok(arr),
        ("f", _) => arr.call_method1("astype", ("float32",)),
        _ => Err(type_err(format!(
            "{what} must be float32 or float64 samples in [-1, 1], got dtype {name} \
             (for 16-bit PCM, divide by 32768.0)"
        ))),
    }
}

/// Copies an array's elements as `f32` in logical (C) order, whatever its
/// memory layout: C, Fortran, transposed or sliced views, negative strides.
/// (Only a C-contiguous array is copied as one slice: the slice of a
/// Fortran-ordered one is in memory order, which is not the samples' order.)
fn copy_f32(arr: &Bound<'_, PyAny>) -> PyResult<Vec<f32>> {
    if let Ok(a) = arr.cast::<PyArrayDyn<f32>>() {
        let r = a.readonly();
        if a.is_c_contiguous() {
            if let Ok(s) = r.as_slice() {
                return Ok(s.to_vec());
            }
        }
        return Ok(r.as_array().iter().copied().collect());
    }
    if let Ok(a) = arr.cast::<PyArrayDyn<f64>>() {
        let r = a.readonly();
        if a.is_c_contiguous() {
            if let Ok(s) = r.as_slice() {
                return Ok(s.iter().map(|&x| x as f32).collect());
            }
        }
        return Ok(r.as_array().iter().map(|&x| x as f32).collect());
    }
    Err(type_err("samples must be float32 or float64".into()))
}

/// Which axis of a two-dimensional clip is time: `Some(false)` for
/// `(n, channels)`, `Some(true)` for channels-first `(channels, n)`, `None`
/// when the shape says neither plainly.
fn channels_first(rows: usize, cols: usize) -> Option<bool> {
    if (1..=MAX_CHANNELS).contains(&cols) && rows >= CHANNELS_FIRST_RATIO * cols {
        Some(false)
    } else if (1..=MAX_CHANNELS_FIRST).contains(&rows) && cols >= CHANNELS_FIRST_RATIO * rows {
        Some(true)
    } else {
        None
    }
}

/// Samples of one clip: shape `(n,)` (mono), `(n, channels)`, or
/// channels-first `(channels, n)` when the channel axis is plainly the
/// short one (at most 8, and at least 16 times shorter than time).
fn clip_samples(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Samples> {
    let mut arr = as_float_array(obj, what)?;
    let shape: Vec<usize> = arr.getattr("shape")?.extract()?;
    let channels = match shape.as_slice() {
        [_] => 1,
        [r, c] => match channels_first(*r, *c) {
            Some(false) => *c,
            Some(true) => {
                // the transposed view, copied in logical order: interleaved
                arr = arr.getattr("T")?;
                *r
            }
            None => {
                return Err(value_err(format!(
                    "{what} has shape ({r}, {c}): expected (n,), (n, channels) with 1 to \
                     {MAX_CHANNELS} channels, or (channels, n) with 1 to {MAX_CHANNELS_FIRST}, \
                     the time axis at least {CHANNELS_FIRST_RATIO} times longer"
                )))
            }
        },
        s => {
            return Err(value_err(format!(
                "{what} has {} dimensions: expected shape (n,), (n, channels) or (channels, n)",
                s.len()
            )))
        }
    };
    let data = copy_f32(&arr)?;
    if data.is_empty() {
        return Err(value_err(format!("{what} holds no samples")));
    }
    // NaN and infinities are refused by the library, with the GIL released
    Ok(Samples {
        data,
        channels: channels as u16,
    })
}

impl Samples {
    /// Frames per channel.
    fn frames(&self) -> usize {
        self.data.len() / usize::from(self.channels.max(1))
    }

    /// Refuses a clip too short to analyse, before any work.
    fn check_length(&self, rate: u32, what: &str) -> PyResult<()> {
        let secs = self.frames() as f64 / f64::from(rate);
        if secs < MIN_CLIP_S {
            return Err(value_err(format!(
                "{what} holds {} frame(s), {secs:.4} s at {rate} Hz: too short to analyse \
                 (at least {MIN_CLIP_S} s)",
                self.frames()
            )));
        }
        Ok(())
    }
}

/// A sample rate given as an int or an integral float (44100.0), checked.
fn check_rate(sample_rate: &Bound<'_, PyAny>) -> PyResult<u32> {
    let lo = i64::from(decode::MIN_SAMPLE_RATE);
    let hi = i64::from(decode::MAX_SAMPLE_RATE);
    let rate: i64 = if sample_rate.is_instance_of::<PyBool>() {
        return Err(type_err(
            "sample_rate must be a number of Hz, got a bool".into(),
        ));
    } else if sample_rate.is_instance_of::<PyInt>() {
        sample_rate.extract::<i64>().unwrap_or(i64::MAX)
    } else if let Ok(f) = sample_rate.extract::<f64>() {
        if !(f.is_finite() && f.fract() == 0.0) {
            return Err(value_err(format!(
                "sample_rate must be a whole number of Hz, got {f}"
            )));
        }
        if f.abs() > 1e12 {
            i64::MAX
        } else {
            f as i64
        }
    } else {
        let t = sample_rate
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        return Err(type_err(format!(
            "sample_rate must be a number of Hz, got {t}"
        )));
    };
    if (lo..=hi).contains(&rate) {
        Ok(rate as u32)
    } else {
        Err(value_err(format!(
            "sample_rate {rate} Hz is outside {lo}..={hi} Hz"
        )))
    }
}

/// A training-set index, opened once and shared by its auditors.
#[pyclass(module = "refrain", frozen)]
struct Index {
    inner: Arc<index::Index>,
}

#[pymethods]
impl Index {
    /// Opens the index directory written by `refrain index` (or
    /// `IndexBuilder.build(path)`).
    #[staticmethod]
    fn open(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        let ix = py.detach(|| index::Index::open(&path)).map_err(py_err)?;
        Ok(Index {
            inner: Arc::new(ix),
        })
    }

    /// An auditor over this index. Thresholds default to the index's own.
    #[pyo3(signature = (*, top_k = 5, audio_threshold = None, melody_threshold = None))]
    fn auditor(
        &self,
        top_k: usize,
        audio_threshold: Option<f32>,
        melody_threshold: Option<f32>,
    ) -> PyResult<Auditor> {
        // refused outside [0, 1]; an override carries no calibration claim
        let t: Thresholds = refrain_lib::calibrate::set_by_caller(
            &self.inner.manifest.thresholds,
            audio_threshold,
            melody_threshold,
        )
        .map_err(|e| value_err(e.to_string()))?;
        Ok(Auditor {
            index: self.inner.clone(),
            config: AuditConfig {
                top_k: top_k.max(1),
                thresholds: Some(t),
                ..AuditConfig::default()
            },
        })
    }

    /// Number of training items.
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Hours of training audio.
    #[getter]
    fn hours(&self) -> f64 {
        self.inner.hours()
    }

    /// The items' paths as given at index time, by item id.
    #[getter]
    fn paths(&self) -> Vec<String> {
        self.inner
            .manifest
            .items
            .iter()
            .map(|i| i.path.clone())
            .collect()
    }

    /// The index's default thresholds.
    #[getter]
    fn thresholds<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        thresholds_dict(py, &self.inner.manifest.thresholds)
    }

    fn __repr__(&self) -> String {
        format!(
            "<refrain.Index: {} items, {:.2} h>",
            self.inner.len(),
            self.inner.hours()
        )
    }
}

fn thresholds_dict<'py>(py: Python<'py>, t: &Thresholds) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("audio", py_f32(t.audio))?;
    d.set_item("melody", py_f32(t.melody))?;
    d.set_item("method", &t.method)?;
    d.set_item("target_fpr", t.target_fpr)?;
    Ok(d)
}

/// Builds an index from samples held in memory (for tests, or a training
/// set already loaded in Python). `refrain index` does the same from files.
#[pyclass(module = "refrain")]
struct IndexBuilder {
    inner: Option<index::IndexBuilder>,
    analyzer: Analyzer,
}

#[pymethods]
impl IndexBuilder {
    #[new]
    fn new() -> Self {
        let p = AnalysisParams::default();
        IndexBuilder {
            inner: Some(index::IndexBuilder::new(&p)),
            analyzer: Analyzer::new(&p),
        }
    }

    /// Fingerprints one training item (`(n,)` or `(n, channels)` floats at
    /// `sample_rate`) and adds it under `name`. Returns False when the same
    /// samples were already added.
    fn add(
        &mut self,
        py: Python<'_>,
        name: &str,
        samples: &Bound<'_, PyAny>,
        sample_rate: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let rate = check_rate(sample_rate)?;
        let s = clip_samples(samples, "samples")?;
        s.check_length(rate, "samples")?;
        let builder = self
            .inner
            .as_mut()
            .ok_or_else(|| state_err("this builder was already built".into()))?;
        let mut h = blake3::Hasher::new();
        h.update(&rate.to_le_bytes());
        h.update(&s.channels.to_le_bytes());
        for x in &s.data {
            h.update(&x.to_le_bytes());
        }
        let hash = h.finalize().to_hex().to_string();
        if builder.contains(&hash) {
            return Ok(false);
        }
        let analyzer = &mut self.analyzer;
        let fp = py
            .detach(|| {
                let target = analyzer.params().sample_rate;
                let audio = decode::from_interleaved(&s.data, rate, s.channels, target)?;
                analyzer.analyze(&audio)
            })
            .map_err(py_err)?;
        builder.add(name, &hash, &fp).map_err(py_err)?;
        Ok(true)
    }

    /// Decodes an audio file (any format `refrain index` reads) and adds
    /// it under `name`. Returns False when the same decoded samples were
    /// already added.
    fn add_file(&mut self, py: Python<'_>, name: &str, path: std::path::PathBuf) -> PyResult<bool> {
        let builder = self
            .inner
            .as_mut()
            .ok_or_else(|| state_err("this builder was already built".into()))?;
        let analyzer = &mut self.analyzer;
        let target = analyzer.params().sample_rate;
        let audio = py
            .detach(|| {
                decode::decode_file_with_limits(&path, target, &decode::DecodeLimits::default())
            })
            .map_err(py_err)?;
        let mut h = blake3::Hasher::new();
        h.update(&audio.sample_rate.to_le_bytes());
        for x in &audio.samples {
            h.update(&x.to_le_bytes());
        }
        let hash = h.finalize().to_hex().to_string();
        if builder.contains(&hash) {
            return Ok(false);
        }
        let fp = py
            .detach(|| analyzer.analyze(&audio).map_err(|e| e.with_path(&path)))
            .map_err(py_err)?;
        builder.add(name, &hash, &fp).map_err(py_err)?;
        Ok(true)
    }

    /// Number of items added.
    fn __len__(&self) -> usize {
        self.inner.as_ref().map_or(0, |b| b.len())
    }

    fn __repr__(&self) -> String {
        match &self.inner {
            Some(b) => format!("<refrain.IndexBuilder: {} item(s) added>", b.len()),
            None => "<refrain.IndexBuilder: built>".into(),
        }
    }

    /// Builds the index; with `path`, also writes it there (as `refrain
    /// index --out path` would), so `Index.open(path)` reads it back.
    #[pyo3(signature = (path = None))]
    fn build(&mut self, py: Python<'_>, path: Option<std::path::PathBuf>) -> PyResult<Index> {
        let b = self
            .inner
            .take()
            .ok_or_else(|| state_err("this builder was already built".into()))?;
        if b.is_empty() {
            self.inner = Some(b);
            return Err(value_err("no item was added: nothing to build".into()));
        }
        let ix = py
            .detach(|| {
                let mut ix = b.build();
                if let Some(p) = &path {
                    ix.save(p)?;
                }
                Ok(ix)
            })
            .map_err(py_err)?;
        Ok(Index {
            inner: Arc::new(ix),
        })
    }
}

/// Checks clips against one index. Thread-safe: share one auditor between
/// threads; each call releases the GIL while it works.
#[pyclass(module = "refrain", frozen)]
struct Auditor {
    index: Arc<index::Index>,
    config: AuditConfig,
}

impl Auditor {
    /// One check and the time it took inside the library, ms.
    fn check_one(&self, s: &Samples, rate: u32) -> (refrain_lib::Result<Report>, f64) {
        let t = Instant::now();
        let r = audit::Auditor::with_config(&self.index, self.config.clone())
            .check_samples(&s.data, rate, s.channels);
        (r, t.elapsed().as_secs_f64() * 1e3)
    }
}

#[pymethods]
impl Auditor {
    /// Audits one clip: `samples` of shape `(n,)` (mono) or `(n, channels)`,
    /// float32 or float64, at any `sample_rate`. Returns a `Verdict`.
    fn check(
        &self,
        py: Python<'_>,
        samples: &Bound<'_, PyAny>,
        sample_rate: &Bound<'_, PyAny>,
    ) -> PyResult<Verdict> {
        let rate = check_rate(sample_rate)?;
        let s = clip_samples(samples, "samples")?;
        s.check_length(rate, "samples")?;
        let (report, ms) = py.detach(|| self.check_one(&s, rate));
        Ok(Verdict::new(report.map_err(py_err)?, None, ms))
    }

    /// Audits an audio file (any format `refrain audit` reads). Returns a
    /// `Verdict`.
    fn check_file(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<Verdict> {
        let (report, ms) = py.detach(|| {
            let t = Instant::now();
            let r = audit::Auditor::with_config(&self.index, self.config.clone()).check_file(&path);
            (r, t.elapsed().as_secs_f64() * 1e3)
        });
        Ok(Verdict::new(report.map_err(py_err)?, None, ms))
    }

    /// Audits many clips in parallel (all cores): a list of clips (each as
    /// for `check`), or an array of shape `(batch, n)` (mono), `(batch, n,
    /// channels)` or `(batch, channels, n)`. Returns one item per clip, in
    /// order: its `Verdict`, or, for a clip that could not be checked, the
    /// exception `check` would have raised for it (a `RefrainError`,
    /// naming the clip), so one bad clip does not cost the batch.
    ///
    /// A batch array whose clips are too short to analyse (an array of
    /// shape `(n, 2)` is read as n clips of two samples) is refused whole,
    /// before any work.
    fn check_batch(
        &self,
        py: Python<'_>,
        clips: &Bound<'_, PyAny>,
        sample_rate: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let rate = check_rate(sample_rate)?;
        let items: Vec<Bound<'_, PyAny>> =
            if clips.is_instance_of::<PyList>() || clips.is_instance_of::<pyo3::types::PyTuple>() {
                clips.try_iter()?.collect::<PyResult<_>>()?
            } else {
                let arr = as_float_array(clips, "clips")?;
                let shape: Vec<usize> = arr.getattr("shape")?.extract()?;
                if !(2..=3).contains(&shape.len()) {
                    return Err(value_err(format!(
                        "clips as an array must have shape (batch, n), (batch, n, channels) or \
                     (batch, channels, n), got {} dimension(s); pass a list for clips of \
                     different lengths",
                        shape.len()
                    )));
                }
                let frames = match shape.as_slice() {
                    [_, n] => *n,
                    [_, r, c] => match channels_first(*r, *c) {
                        Some(true) => *c,
                        _ => *r,
                    },
                    _ => 0,
                };
                let secs = frames as f64 / f64::from(rate);
                if secs < MIN_CLIP_S {
                    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
                    return Err(value_err(format!(
                        "clips of shape ({}) are {} clip(s) of {frames} frame(s), {secs:.4} s at \
                     {rate} Hz: too short to analyse (at least {MIN_CLIP_S} s); for one clip \
                     of shape (n, channels) call check(x) instead",
                        dims.join(", "),
                        shape[0]
                    )));
                }
                arr.try_iter()?.collect::<PyResult<_>>()?
            };
        let samples: Vec<PyResult<Samples>> = items
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let what = format!("clip {i}");
                clip_samples(c, &what).and_then(|s| s.check_length(rate, &what).map(|()| s))
            })
            .collect();
        let reports: Vec<Option<(refrain_lib::Result<Report>, f64)>> = py.detach(|| {
            samples
                .par_iter()
                .map(|s| s.as_ref().ok().map(|s| self.check_one(s, rate)))
                .collect()
        });
        let mut out = Vec::with_capacity(items.len());
        for (i, (s, r)) in samples.into_iter().zip(reports).enumerate() {
            let item: Py<PyAny> = match (s, r) {
                (Err(e), _) => e.into_value(py).into_any(),
                (Ok(_), Some((Ok(r), ms))) => Py::new(py, Verdict::new(r, None, ms))?.into_any(),
                (Ok(_), Some((Err(e), _))) => py_err_with(e, &format!("clip {i}: "))
                    .into_value(py)
                    .into_any(),
                (Ok(_), None) => unreachable!("every readable clip is checked"),
            };
            out.push(item);
        }
        Ok(out)
    }

    /// A stream checker for audio as it is generated: `push` chunks of
    /// shape `(n,)` or `(n, channels)`; the last `window_s` seconds are
    /// re-checked every `every_s` seconds of new audio.
    #[pyo3(signature = (sample_rate, channels = 1, *, window_s = 10.0, every_s = 5.0))]
    fn stream(
        &self,
        sample_rate: &Bound<'_, PyAny>,
        channels: usize,
        window_s: f64,
        every_s: f64,
    ) -> PyResult<Stream> {
        let rate = check_rate(sample_rate)?;
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(value_err(format!(
                "channels {channels} is outside 1..={MAX_CHANNELS}"
            )));
        }
        let inner = StreamChecker::new(rate, channels as u16, StreamConfig { window_s, every_s })
            .map_err(py_err)?;
        Ok(Stream {
            index: self.index.clone(),
            config: self.config.clone(),
            channels,
            inner,
        })
    }

    /// The thresholds in force.
    #[getter]
    fn thresholds<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let a = audit::Auditor::with_config(&self.index, self.config.clone());
        thresholds_dict(py, a.thresholds())
    }

    fn __repr__(&self) -> String {
        let a = audit::Auditor::with_config(&self.index, self.config.clone());
        let t = a.thresholds();
        format!(
            "<refrain.Auditor over {} items ({:.2} h), thresholds audio {:.3} melody {:.3} ({}), top_k {}>",
            self.index.len(),
            self.index.hours(),
            t.audio,
            t.melody,
            t.method,
            self.config.top_k
        )
    }
}

/// A stream being checked while it is generated (see `Auditor.stream`).
#[pyclass(module = "refrain")]
struct Stream {
    index: Arc<index::Index>,
    config: AuditConfig,
    channels: usize,
    inner: StreamChecker,
}

fn stream_verdict(c: StreamCheck, ms: f64) -> Verdict {
    Verdict::new(c.report, Some((c.window_start_s, c.window_end_s)), ms)
}

#[pymethods]
impl Stream {
    /// Appends a chunk and runs the checks that became due. Returns the
    /// first flagged check of this call, else the last check run, else None.
    fn push(&mut self, py: Python<'_>, chunk: &Bound<'_, PyAny>) -> PyResult<Option<Verdict>> {
        let s = clip_samples(chunk, "chunk")?;
        if usize::from(s.channels) != self.channels {
            return Err(value_err(format!(
                "chunk has {} channel(s) but the stream was opened for {}: pass shape (n, {})",
                s.channels, self.channels, self.channels
            )));
        }
        let Stream {
            index,
            config,
            inner,
            ..
        } = self;
        let t = Instant::now();
        let r = py.detach(|| {
            let a = audit::Auditor::with_config(index, config.clone());
            inner.push(&a, &s.data)
        });
        let ms = t.elapsed().as_secs_f64() * 1e3;
        Ok(r.map_err(py_err)?.map(|c| stream_verdict(c, ms)))
    }

    /// Checks the audio that arrived since the last check (call it when the
    /// generator is done). None when nothing did.
    fn finish(&mut self, py: Python<'_>) -> PyResult<Option<Verdict>> {
        let Stream {
            index,
            config,
            inner,
            ..
        } = self;
        let t = Instant::now();
        let r = py.detach(|| {
            let a = audit::Auditor::with_config(index, config.clone());
            inner.finish(&a)
        });
        let ms = t.elapsed().as_secs_f64() * 1e3;
        Ok(r.map_err(py_err)?.map(|c| stream_verdict(c, ms)))
    }

    /// The first flagged check of the stream, or None.
    #[getter]
    fn first_flag(&self) -> Option<Verdict> {
        // the time of the call that found it is not kept
        self.inner
            .first_flag()
            .cloned()
            .map(|c| stream_verdict(c, f64::NAN))
    }

    /// Seconds of audio pushed so far.
    #[getter]
    fn duration_s(&self) -> f64 {
        self.inner.duration_s()
    }

    fn __repr__(&self) -> String {
        format!(
            "<refrain.Stream {} channel(s), {:.1} s pushed, {}>",
            self.channels,
            self.inner.duration_s(),
            if self.inner.first_flag().is_some() {
                "flagged"
            } else {
                "not flagged"
            }
        )
    }
}

/// One candidate training item with its scores and evidence.
#[pyclass(module = "refrain", frozen, get_all)]
#[derive(Clone)]
struct Candidate {
    /// Item id in the index.
    item: usize,
    /// The item's path as given at index time.
    path: String,
    /// Same recording, transformed: 0–1.
    audio_score: f64,
    /// Same melody or harmony, any timbre, key or tempo: 0–1.
    melody_score: f64,
    /// Matched range in the query (stream time for a stream), seconds.
    query_start_s: f64,
    /// End of the matched range in the query, seconds.
    query_end_s: f64,
    /// Matched range in the training item, seconds.
    match_start_s: f64,
    /// End of the matched range in the training item, seconds.
    match_end_s: f64,
    /// Query pitch minus match pitch, semitones.
    transpose_semitones: f64,
    /// Query tempo / match tempo.
    tempo_ratio: f64,
}

#[pymethods]
impl Candidate {
    fn __repr__(&self) -> String {
        format!(
            "<refrain.Candidate {} audio {:.3} melody {:.3}: query {:.1}-{:.1} s = match {:.1}-{:.1} s, {:+.1} st, tempo x{:.3}>",
            self.path,
            self.audio_score,
            self.melody_score,
            self.query_start_s,
            self.query_end_s,
            self.match_start_s,
            self.match_end_s,
            self.transpose_semitones,
            self.tempo_ratio
        )
    }
}

/// The result of a check: pass or flag, both scores, and the evidence.
///
/// The score and evidence attributes describe the best candidate (None
/// when the index offered no candidate); `candidates` lists all, best first.
#[pyclass(module = "refrain", frozen)]
#[derive(Clone)]
struct Verdict {
    report: Report,
    window: Option<(f64, f64)>,
    elapsed_ms: f64,
}

impl Verdict {
    fn new(report: Report, window: Option<(f64, f64)>, elapsed_ms: f64) -> Self {
        Verdict {
            report,
            window,
            elapsed_ms,
        }
    }

    fn best<T>(&self, f: impl FnOnce(&audit::Candidate) -> T) -> Option<T> {
        self.report.best().map(f)
    }
}

#[pymethods]
impl Verdict {
    /// True when a score crossed its threshold: the clip copies `match`.
    #[getter]
    fn flagged(&self) -> bool {
        self.report.verdict == audit::Verdict::Flag
    }
    /// `"pass"` or `"flag"`.
    #[getter]
    fn verdict(&self) -> &'static str {
        self.report.verdict.as_str()
    }
    /// Duration of the checked audio, seconds.
    #[getter]
    fn duration_s(&self) -> f64 {
        self.report.duration_s
    }
    /// Best candidate's audio score (same recording), 0 without candidates.
    #[getter]
    fn audio_score(&self) -> f64 {
        py_f32(self.best(|c| c.audio_score).unwrap_or(0.0))
    }
    /// Best candidate's melody score (same melody/harmony), 0 without candidates.
    #[getter]
    fn melody_score(&self) -> f64 {
        py_f32(self.best(|c| c.melody_score).unwrap_or(0.0))
    }
    /// The best candidate's path (the training item matched).
    #[getter(r#match)]
    fn match_path(&self) -> Option<String> {
        self.best(|c| c.path.clone())
    }
    /// The best candidate's item id.
    #[getter]
    fn match_item(&self) -> Option<usize> {
        self.best(|c| c.item)
    }
    /// Start of the matched range in the clip, seconds (stream time for a
    /// stream).
    #[getter]
    fn query_start_s(&self) -> Option<f64> {
        self.best(|c| py_f32(c.query_start_s))
    }
    /// End of the matched range in the clip, seconds.
    #[getter]
    fn query_end_s(&self) -> Option<f64> {
        self.best(|c| py_f32(c.query_end_s))
    }
    /// Start of the matched range in the training item, seconds.
    #[getter]
    fn match_start_s(&self) -> Option<f64> {
        self.best(|c| py_f32(c.match_start_s))
    }
    /// End of the matched range in the training item, seconds.
    #[getter]
    fn match_end_s(&self) -> Option<f64> {
        self.best(|c| py_f32(c.match_end_s))
    }
    /// Clip pitch minus match pitch, semitones.
    #[getter]
    fn transpose_semitones(&self) -> Option<f64> {
        self.best(|c| py_f32(c.transpose_semitones))
    }
    /// Clip tempo / match tempo.
    #[getter]
    fn tempo_ratio(&self) -> Option<f64> {
        self.best(|c| py_f32(c.tempo_ratio))
    }
    /// Threshold on `audio_score`.
    #[getter]
    fn audio_threshold(&self) -> f64 {
        py_f32(self.report.thresholds.audio)
    }
    /// Threshold on `melody_score`.
    #[getter]
    fn melody_threshold(&self) -> f64 {
        py_f32(self.report.thresholds.melody)
    }
    /// What a reader must know to take the verdict at its word (the clip
    /// is too short to judge, its channels cancel, ...); empty when nothing.
    #[getter]
    fn notes(&self) -> Vec<String> {
        self.report.notes.clone()
    }
    /// The thresholds applied and how they were set.
    #[getter]
    fn thresholds<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        thresholds_dict(py, &self.report.thresholds)
    }
    /// For a stream check: (start, end) of the checked window in stream
    /// time, seconds; None for a clip.
    #[getter]
    fn window(&self) -> Option<(f64, f64)> {
        self.window
    }
    /// Milliseconds the check took inside the library (resampling,
    /// analysis, search, alignment), without the Python call around it; for
    /// a stream, the whole `push` or `finish` call; NaN for `first_flag`.
    #[getter]
    fn elapsed_ms(&self) -> f64 {
        self.elapsed_ms
    }
    /// Every candidate, best first.
    #[getter]
    fn candidates(&self) -> Vec<Candidate> {
        self.report
            .candidates
            .iter()
            .map(|c| Candidate {
                item: c.item,
                path: c.path.clone(),
                audio_score: py_f32(c.audio_score),
                melody_score: py_f32(c.melody_score),
                query_start_s: py_f32(c.query_start_s),
                query_end_s: py_f32(c.query_end_s),
                match_start_s: py_f32(c.match_start_s),
                match_end_s: py_f32(c.match_end_s),
                transpose_semitones: py_f32(c.transpose_semitones),
                tempo_ratio: py_f32(c.tempo_ratio),
            })
            .collect()
    }
    /// The full report as JSON (the schema of one result in `refrain audit
    /// --format json`, including the raw numbers behind the scores).
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.report).map_err(|e| refrain_err("RefrainError", e.to_string()))
    }
    /// The full report as a dict (see `to_json`).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = PyModule::import(py, "json")?;
        json.call_method1("loads", (self.to_json()?,))
    }
    fn __repr__(&self) -> String {
        match self.report.best() {
            Some(c) => format!(
                "<refrain.Verdict {}: {} audio {:.3} melody {:.3} (thresholds {:.3}/{:.3}), query {:.1}-{:.1} s = match {:.1}-{:.1} s, {:+.1} st, tempo x{:.3}>",
                self.verdict(),
                c.path,
                c.audio_score,
                c.melody_score,
                self.report.thresholds.audio,
                self.report.thresholds.melody,
                c.query_start_s,
                c.query_end_s,
                c.match_start_s,
                c.match_end_s,
                c.transpose_semitones,
                c.tempo_ratio
            ),
            None => format!("<refrain.Verdict {}: no candidate>", self.verdict()),
        }
    }
}

/// A message of a sharded audit from the library's types.
fn msg_bytes<'py, T: serde::Serialize>(py: Python<'py>, m: &T) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &shard::to_bytes(m))
}

fn read_msg<T: serde::de::DeserializeOwned>(b: &[u8], what: &str) -> PyResult<T> {
    shard::from_bytes(b, what).map_err(py_err)
}

fn thresholds_from_json(json: &str) -> PyResult<Thresholds> {
    serde_json::from_str(json).map_err(|e| value_err(format!("thresholds JSON: {e}")))
}

fn thresholds_to_json(t: &Thresholds) -> PyResult<String> {
    serde_json::to_string(t).map_err(|e| refrain_err("RefrainError", e.to_string()))
}

/// One shard of a sharded index (an ordinary index directory holding the
/// items from `item_offset` and the windows from `window_offset` of the
/// whole), answering the steps of a sharded audit (see `refrain.ray`).
#[pyclass(module = "refrain", frozen)]
struct Shard {
    index: Arc<index::Index>,
    item_offset: u32,
    window_offset: u32,
}

impl Shard {
    fn shard(&self) -> shard::Shard<'_> {
        shard::Shard::new(&self.index, self.item_offset, self.window_offset)
    }

    fn query(&self, b: &[u8]) -> refrain_lib::Result<shard::Query> {
        shard::Query::from_bytes(b, self.index.params())
    }
}

#[pymethods]
impl Shard {
    /// Opens the shard's index directory.
    #[staticmethod]
    #[pyo3(signature = (path, item_offset = 0, window_offset = 0))]
    fn open(
        py: Python<'_>,
        path: std::path::PathBuf,
        item_offset: u32,
        window_offset: u32,
    ) -> PyResult<Self> {
        let ix = py.detach(|| index::Index::open(&path)).map_err(py_err)?;
        Ok(Shard {
            index: Arc::new(ix),
            item_offset,
            window_offset,
        })
    }

    /// Number of items in the shard.
    fn __len__(&self) -> usize {
        self.index.len()
    }

    /// Number of stored windows in the shard.
    #[getter]
    fn windows(&self) -> usize {
        self.index.window_item.len()
    }

    /// The item paths, in id order.
    #[getter]
    fn paths(&self) -> Vec<String> {
        self.index
            .manifest
            .items
            .iter()
            .map(|i| i.path.clone())
            .collect()
    }

    /// The analysis parameters, as JSON (for a `ShardDriver`).
    #[getter]
    fn params_json(&self) -> PyResult<String> {
        serde_json::to_string(self.index.params())
            .map_err(|e| refrain_err("RefrainError", e.to_string()))
    }

    /// The shard's stored thresholds, as JSON.
    #[getter]
    fn thresholds_json(&self) -> PyResult<String> {
        thresholds_to_json(&self.index.manifest.thresholds)
    }

    /// Step 1: list lengths of the query's hashes and the nearest windows.
    fn probe<'py>(&self, py: Python<'py>, query: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let p = py
            .detach(|| self.query(query).and_then(|q| self.shard().probe(&q)))
            .map_err(py_err)?;
        Ok(msg_bytes(py, &p))
    }

    /// Step 2: the shard's best landmark and melodic items.
    fn search<'py>(
        &self,
        py: Python<'py>,
        query: &[u8],
        request: &[u8],
    ) -> PyResult<Bound<'py, PyBytes>> {
        let req: shard::SearchRequest = read_msg(request, "search request")?;
        let m = py
            .detach(|| {
                self.query(query)
                    .and_then(|q| self.shard().search(&q, &req))
            })
            .map_err(py_err)?;
        Ok(msg_bytes(py, &m))
    }

    /// Step 3: the shard's candidates, re-ranked and scored.
    fn score<'py>(
        &self,
        py: Python<'py>,
        query: &[u8],
        request: &[u8],
    ) -> PyResult<Bound<'py, PyBytes>> {
        let req: shard::ScoreRequest = read_msg(request, "score request")?;
        let s = py
            .detach(|| self.query(query).and_then(|q| self.shard().score(&q, &req)))
            .map_err(py_err)?;
        Ok(msg_bytes(py, &s))
    }

    fn __repr__(&self) -> String {
        format!(
            "<refrain.Shard: {} item(s) from item {}>",
            self.index.len(),
            self.item_offset
        )
    }
}

/// The driver's side of a sharded audit: analyses queries and merges the
/// shards' answers (see `refrain.ray`).
#[pyclass(module = "refrain", frozen)]
struct ShardDriver {
    params: AnalysisParams,
}

#[pymethods]
impl ShardDriver {
    /// A driver for shards of these analysis parameters (`Shard.params_json`).
    #[new]
    fn new(params_json: &str) -> PyResult<Self> {
        let params: AnalysisParams = serde_json::from_str(params_json)
            .map_err(|e| value_err(format!("analysis parameters JSON: {e}")))?;
        Ok(ShardDriver { params })
    }

    /// Analyses a clip (as `Auditor.check` takes it) into a query.
    fn query<'py>(
        &self,
        py: Python<'py>,
        samples: &Bound<'py, PyAny>,
        sample_rate: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let rate = check_rate(sample_rate)?;
        let s = clip_samples(samples, "samples")?;
        s.check_length(rate, "samples")?;
        let q = py
            .detach(|| {
                shard::Query::from_samples(
                    &self.params,
                    &decode::DecodeLimits::default(),
                    &s.data,
                    rate,
                    s.channels,
                )
            })
            .map_err(py_err)?;
        Ok(PyBytes::new(py, &q.to_bytes()))
    }

    /// Decodes and analyses an audio file into a query.
    fn query_file<'py>(
        &self,
        py: Python<'py>,
        path: std::path::PathBuf,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let q = py
            .detach(|| {
                shard::Query::from_file(&self.params, &decode::DecodeLimits::default(), &path)
            })
            .map_err(py_err)?;
        Ok(PyBytes::new(py, &q.to_bytes()))
    }

    /// After step 1: the plan (global look-ups and embedding votes) from
    /// every shard's probe; `plan_request` gives its step-2 request.
    #[pyo3(signature = (query, probes, exclude = None))]
    fn plan<'py>(
        &self,
        py: Python<'py>,
        query: &[u8],
        probes: Vec<Bound<'py, PyBytes>>,
        exclude: Option<u32>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let q = shard::Query::from_bytes(query, &self.params).map_err(py_err)?;
        let probes: Vec<shard::Probe> = probes
            .iter()
            .map(|b| read_msg(b.as_bytes(), "probe"))
            .collect::<PyResult<_>>()?;
        let plan = shard::plan(&self.params, &q, &probes, exclude).map_err(py_err)?;
        Ok(msg_bytes(py, &plan))
    }

    /// The step-2 request of a plan.
    fn plan_request<'py>(&self, py: Python<'py>, plan: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let plan: shard::Plan = read_msg(plan, "plan")?;
        Ok(msg_bytes(py, &plan.request))
    }

    /// After step 2: the step-3 request (the global landmark background
    /// and the candidates) from every shard's matches.
    fn gather<'py>(
        &self,
        py: Python<'py>,
        plan: &[u8],
        matches: Vec<Bound<'py, PyBytes>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let plan: shard::Plan = read_msg(plan, "plan")?;
        let matches: Vec<shard::Matches> = matches
            .iter()
            .map(|b| read_msg(b.as_bytes(), "matches"))
            .collect::<PyResult<_>>()?;
        Ok(msg_bytes(py, &shard::gather(&self.params, &plan, &matches)))
    }

    /// After step 3: the `Verdict` from every shard's scored candidates,
    /// under thresholds (JSON) with the best `top_k` candidates.
    #[pyo3(signature = (query, scored, thresholds_json, top_k = 5, elapsed_ms = 0.0))]
    fn finish(
        &self,
        query: &[u8],
        scored: Vec<Bound<'_, PyBytes>>,
        thresholds_json: &str,
        top_k: usize,
        elapsed_ms: f64,
    ) -> PyResult<Verdict> {
        let q = shard::Query::from_bytes(query, &self.params).map_err(py_err)?;
        let t = thresholds_from_json(thresholds_json)?;
        let scored: Vec<shard::Scored> = scored
            .iter()
            .map(|b| read_msg(b.as_bytes(), "scored candidates"))
            .collect::<PyResult<_>>()?;
        Ok(Verdict::new(
            shard::finish(&q, scored, t, top_k.max(1)),
            None,
            elapsed_ms,
        ))
    }
}

/// Thresholds calibrated on the verdicts of negatives (music known not to
/// be in the training set) at `target_fpr`, as JSON: the verdicts' best
/// scores decide, so verdicts of a sharded auditor calibrate exactly as
/// those of one index holding all items. Negatives whose best candidate
/// is a copy of a training item are left out of the fit (named in the
/// error if too few remain) unless `keep_suspects`.
#[pyfunction]
#[pyo3(signature = (verdicts, target_fpr = 0.01, *, names = None, keep_suspects = false, audio_threshold = None, melody_threshold = None))]
fn calibrate_thresholds(
    verdicts: Vec<PyRef<'_, Verdict>>,
    target_fpr: f64,
    names: Option<Vec<String>>,
    keep_suspects: bool,
    audio_threshold: Option<f32>,
    melody_threshold: Option<f32>,
) -> PyResult<String> {
    use refrain_lib::calibrate;
    if let Some(n) = &names {
        if n.len() != verdicts.len() {
            return Err(value_err(format!(
                "{} names for {} verdicts: give one name per verdict",
                n.len(),
                verdicts.len()
            )));
        }
    }
    let negatives: Vec<calibrate::Negative> = verdicts
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let name = names
                .as_ref()
                .map_or_else(|| format!("negative {i}"), |n| n[i].clone());
            calibrate::Negative::of(&name, &v.report)
        })
        .collect();
    let c = calibrate::calibrate_set(
        &negatives,
        target_fpr,
        calibrate::METHOD_NEGATIVES,
        calibrate::Suspects::Copies,
        keep_suspects,
        std::time::SystemTime::now(),
    )
    .map_err(py_err)?;
    let t = calibrate::set_by_caller(&c.thresholds, audio_threshold, melody_threshold)
        .map_err(py_err)?;
    thresholds_to_json(&t)
}

/// Thresholds (JSON) with the caller's overrides (either may be None):
/// any override makes them "caller" thresholds with no calibration claim.
#[pyfunction]
#[pyo3(signature = (thresholds_json, audio_threshold = None, melody_threshold = None))]
fn override_thresholds(
    thresholds_json: &str,
    audio_threshold: Option<f32>,
    melody_threshold: Option<f32>,
) -> PyResult<String> {
    let base = thresholds_from_json(thresholds_json)?;
    let t = refrain_lib::calibrate::set_by_caller(&base, audio_threshold, melody_threshold)
        .map_err(|e| value_err(e.to_string()))?;
    thresholds_to_json(&t)
}

/// Refrain: does a generated clip copy something in the training set?
#[pymodule]
fn _refrain(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Index>()?;
    m.add_class::<IndexBuilder>()?;
    m.add_class::<Auditor>()?;
    m.add_class::<Stream>()?;
    m.add_class::<Verdict>()?;
    m.add_class::<Candidate>()?;
    m.add_class::<Shard>()?;
    m.add_class::<ShardDriver>()?;
    m.add_function(wrap_pyfunction!(calibrate_thresholds, m)?)?;
    m.add_function(wrap_pyfunction!(override_thresholds, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MIN_CLIP_S", MIN_CLIP_S)?;
    m.add("MIN_JUDGED_S", audit::MIN_JUDGED_S)?;
    Ok(())
}
