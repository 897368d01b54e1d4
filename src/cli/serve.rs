//! `refrain serve --index INDEX_DIR --addr 127.0.0.1:PORT`: an HTTP JSON
//! service for many workers sharing one index (API in `docs/serve.md`).
//!
//! The index is opened once and shared. Each check runs on the blocking pool
//! (decoding and analysis are CPU work) under a semaphore of `--workers`
//! permits, so at most that many checks run at once and the others queue;
//! every request has one deadline (`--timeout-s`) covering queueing and
//! work. Bodies over `--max-bytes` are refused before they are read in
//! full, audio over `--max-duration` while it is decoded. With
//! `--token-file`, every route but `/healthz` needs `Authorization: Bearer
//! <token>`. Every error answers `{"error": ..., "hint": ...}`, 404 and 405
//! included. Ctrl-C or SIGTERM stops accepting, lets the requests in flight
//! finish, and exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use refrain::audit::{AuditConfig, Auditor, Report, Verdict};
use refrain::decode::{self, DecodeLimits};
use refrain::index::Index;
use refrain::{Error, ErrorKind};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// Flags of `refrain serve`, checked once by clap.
#[derive(Debug, clap::Args)]
pub struct Config {
    /// The index directory (from `refrain index`).
    #[arg(long)]
    pub index: PathBuf,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8750")]
    pub addr: SocketAddr,
    /// Checks run at once (default: the number of cores); more requests queue.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Refuse request bodies larger than this: bytes, or with a unit
    /// (`500K`, `64M`, powers of 1024), as for the batch commands.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = super::limits::parse_size)]
    pub max_bytes: u64,
    /// Refuse audio longer than this: seconds, or with a unit (`90s`,
    /// `10m`), as for the batch commands.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = super::limits::parse_duration)]
    pub max_duration: f64,
    /// A file holding a bearer token: every request but `GET /healthz`
    /// must then carry `Authorization: Bearer <token>`. For deployments
    /// beyond the loopback interface.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Deadline of a request (queueing and work), in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub timeout_s: f64,
    /// Candidates listed per answer.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
}

/// Upper bounds (ms) of the latency histogram buckets.
const BUCKETS_MS: [f64; 12] = [
    5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1e3, 2e3, 5e3, 1e4, 3e4,
];

/// Counters behind `GET /metrics`.
#[derive(Default)]
struct Metrics {
    passed: AtomicU64,
    flagged: AtomicU64,
    bad_request: AtomicU64,
    too_large: AtomicU64,
    busy: AtomicU64,
    timeout: AtomicU64,
    failed: AtomicU64,
    in_flight: AtomicU64,
    /// Completed checks (200) by latency bucket; the last is +Inf.
    buckets: [AtomicU64; BUCKETS_MS.len() + 1],
    latency_us_sum: AtomicU64,
}

impl Metrics {
    fn observe(&self, t0: Instant) {
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let b = BUCKETS_MS
            .iter()
            .position(|&up| ms <= up)
            .unwrap_or(BUCKETS_MS.len());
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
        self.latency_us_sum
            .fetch_add((ms * 1e3) as u64, Ordering::Relaxed);
    }

    fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = String::new();
        s.push_str("# HELP refrain_checks_total Requests to /v1/check by outcome.\n");
        s.push_str("# TYPE refrain_checks_total counter\n");
        for (outcome, v) in [
            ("pass", &self.passed),
            ("flag", &self.flagged),
            ("bad_request", &self.bad_request),
            ("too_large", &self.too_large),
            ("busy", &self.busy),
            ("timeout", &self.timeout),
            ("error", &self.failed),
        ] {
            s.push_str(&format!(
                "refrain_checks_total{{outcome=\"{outcome}\"}} {}\n",
                g(v)
            ));
        }
        s.push_str("# HELP refrain_checks_in_flight Checks queued or running.\n");
        s.push_str("# TYPE refrain_checks_in_flight gauge\n");
        s.push_str(&format!(
            "refrain_checks_in_flight {}\n",
            g(&self.in_flight)
        ));
        s.push_str(
            "# HELP refrain_check_seconds Latency of answered checks (request to verdict).\n",
        );
        s.push_str("# TYPE refrain_check_seconds histogram\n");
        let mut cum = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cum += g(b);
            let le = BUCKETS_MS
                .get(i)
                .map_or("+Inf".to_string(), |ms| format!("{}", ms / 1e3));
            s.push_str(&format!(
                "refrain_check_seconds_bucket{{le=\"{le}\"}} {cum}\n"
            ));
        }
        s.push_str(&format!(
            "refrain_check_seconds_sum {}\n",
            g(&self.latency_us_sum) as f64 / 1e6
        ));
        s.push_str(&format!("refrain_check_seconds_count {cum}\n"));
        s
    }
}

/// What the handlers share.
struct App {
    index: Index,
    index_dir: String,
    config: AuditConfig,
    limits: DecodeLimits,
    permits: Arc<Semaphore>,
    timeout: Duration,
    metrics: Metrics,
    /// The hash of the bearer token, when one is required (hashes compare
    /// in constant time).
    token: Option<blake3::Hash>,
}

/// `POST /v1/check` query parameters.
#[derive(Debug, Deserialize)]
struct CheckQuery {
    /// Present: the body is raw float32 little-endian PCM at this rate.
    sample_rate: Option<u32>,
    /// Channels of raw PCM (interleaved), default 1.
    channels: Option<u16>,
    /// The file's extension, as a hint for encoded bodies.
    ext: Option<String>,
}

/// A 200 answer: the report plus the time the service took.
#[derive(Serialize)]
struct CheckAnswer<'a> {
    #[serde(flatten)]
    report: &'a Report,
    elapsed_ms: f64,
}

/// In-flight gauge that decrements however the request ends.
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a client can do about an error of `status`.
fn hint_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => {
            "send a file's bytes (WAV, AIFF, FLAC, MP3, Ogg Vorbis, Opus, AAC, ALAC), or raw \
             float32 little-endian PCM with ?sample_rate=N&channels=C (docs/serve.md)"
        }
        StatusCode::UNAUTHORIZED => "send the header `Authorization: Bearer <token>`",
        StatusCode::NOT_FOUND => "the routes are POST /v1/check, GET /healthz and GET /metrics",
        StatusCode::METHOD_NOT_ALLOWED => "POST audio to /v1/check; GET /healthz and /metrics",
        StatusCode::PAYLOAD_TOO_LARGE => {
            "send shorter audio, or start the service with larger --max-bytes or --max-duration"
        }
        StatusCode::SERVICE_UNAVAILABLE => "retry later, or start the service with more --workers",
        StatusCode::GATEWAY_TIMEOUT => {
            "retry later, send shorter audio, or start the service with a longer --timeout-s"
        }
        _ => "this is a bug in refrain serve: please report it with the request",
    }
}

fn error_response(status: StatusCode, msg: String) -> Response {
    let body = Json(serde_json::json!({ "error": msg, "hint": hint_for(status) }));
    if status == StatusCode::UNAUTHORIZED {
        return (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response();
    }
    (status, body).into_response()
}

impl App {
    fn fail(&self, status: StatusCode, msg: String) -> Response {
        let counter = match status {
            StatusCode::BAD_REQUEST => &self.metrics.bad_request,
            StatusCode::PAYLOAD_TOO_LARGE => &self.metrics.too_large,
            StatusCode::SERVICE_UNAVAILABLE => &self.metrics.busy,
            StatusCode::GATEWAY_TIMEOUT => &self.metrics.timeout,
            _ => &self.metrics.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        error_response(status, msg)
    }

    /// Decodes (or reads raw PCM) and audits: the CPU work of a request.
    fn work(&self, q: &CheckQuery, body: &[u8]) -> refrain::Result<Report> {
        let auditor = Auditor::with_config(&self.index, self.config.clone());
        match q.sample_rate {
            Some(rate) => {
                let invalid =
                    |m: String| Error::new(refrain::Stage::Decode, ErrorKind::InvalidInput(m));
                if !(decode::MIN_SAMPLE_RATE..=decode::MAX_SAMPLE_RATE).contains(&rate) {
                    return Err(invalid(format!(
                        "sample_rate={rate} is outside {}..={} Hz",
                        decode::MIN_SAMPLE_RATE,
                        decode::MAX_SAMPLE_RATE
                    )));
                }
                // stereo read as mono is a different signal: no default
                let Some(channels) = q.channels else {
                    return Err(invalid(
                        "raw PCM needs ?channels=C (1 for mono, 2 for interleaved stereo, ...) \
                         beside ?sample_rate"
                            .into(),
                    ));
                };
                if channels == 0 || channels > 64 {
                    return Err(invalid(format!("channels={channels} is outside 1..=64")));
                }
                if !body.len().is_multiple_of(4) {
                    return Err(invalid(format!(
                        "raw PCM is float32 little-endian: {} bytes are not a whole number of samples",
                        body.len()
                    )));
                }
                let samples: Vec<f32> = body
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                let seconds = samples.len() as f64 / f64::from(channels) / f64::from(rate);
                if seconds > self.limits.max_duration_s {
                    return Err(Error::new(
                        refrain::Stage::Decode,
                        ErrorKind::Limit(format!(
                            "{seconds:.0} s of audio is over the limit of {:.0} s",
                            self.limits.max_duration_s
                        )),
                    ));
                }
                auditor.check_samples(&samples, rate, channels)
            }
            None => {
                let rate = self.index.manifest.params.sample_rate;
                let audio =
                    decode::decode_bytes_with_limits(body, q.ext.as_deref(), rate, &self.limits)?;
                // the decoded audio with its source facts (duration,
                // channels that cancel), for the report's notes
                auditor.check_audio(&audio)
            }
        }
    }
}

fn status_of(e: &Error) -> StatusCode {
    match e.kind {
        ErrorKind::InvalidInput(_)
        | ErrorKind::Empty(_)
        | ErrorKind::Unsupported(_)
        | ErrorKind::Corrupt(_) => StatusCode::BAD_REQUEST,
        ErrorKind::Limit(_) => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Refuses a request without the bearer token, when one is required.
async fn require_token(
    State(app): State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(want) = &app.token else {
        return next.run(req).await;
    };
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| blake3::hash(t.trim().as_bytes()));
    match given {
        Some(h) if h == *want => next.run(req).await,
        Some(_) => error_response(StatusCode::UNAUTHORIZED, "the bearer token is wrong".into()),
        None => error_response(
            StatusCode::UNAUTHORIZED,
            "this service needs a bearer token (Authorization: Bearer <token>)".into(),
        ),
    }
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error_response(StatusCode::NOT_FOUND, format!("no route {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

async fn check(
    State(app): State<Arc<App>>,
    query: Result<Query<CheckQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let t0 = Instant::now();
    let deadline = tokio::time::Instant::from_std(t0 + app.timeout);
    app.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let _gauge = InFlight(&app.metrics.in_flight);
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return app.fail(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return app.fail(e.status(), e.body_text()),
    };
    let permit = match tokio::time::timeout_at(deadline, app.permits.clone().acquire_owned()).await
    {
        Ok(Ok(p)) => p,
        _ => {
            return app.fail(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "busy: no worker was free within the {:.1} s deadline",
                    app.timeout.as_secs_f64()
                ),
            )
        }
    };
    let worker = app.clone();
    let job = tokio::task::spawn_blocking(move || {
        let _permit = permit; // held until the work ends, even after a timeout
        worker.work(&q, &body)
    });
    match tokio::time::timeout_at(deadline, job).await {
        Err(_) => app.fail(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the check did not finish within the {:.1} s deadline",
                app.timeout.as_secs_f64()
            ),
        ),
        Ok(Err(e)) => app.fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the check failed: {e}"),
        ),
        Ok(Ok(Err(e))) => app.fail(status_of(&e), e.to_string()),
        Ok(Ok(Ok(report))) => {
            let counter = match report.verdict {
                Verdict::Pass => &app.metrics.passed,
                Verdict::Flag => &app.metrics.flagged,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            app.metrics.observe(t0);
            Json(CheckAnswer {
                report: &report,
                elapsed_ms: t0.elapsed().as_secs_f64() * 1e3,
            })
            .into_response()
        }
    }
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    Json(serde_json::json!({
        "status": "ok",
        "index": app.index_dir,
        "items": app.index.len(),
        "hours": app.index.hours(),
        "workers": app.permits.available_permits(),
    }))
    .into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

pub fn run(cfg: &Config) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        cfg.timeout_s > 0.0 && cfg.timeout_s.is_finite(),
        "--timeout-s must be positive"
    );
    let workers = match cfg.workers {
        Some(0) => anyhow::bail!("--workers must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    let token = match &cfg.token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the token file {}", p.display()))?;
            let t = t.trim();
            anyhow::ensure!(
                t.len() >= 16,
                "the token in {} is {} characters long: use at least 16 (for example \
                 `openssl rand -hex 32`)",
                p.display(),
                t.len()
            );
            Some(blake3::hash(t.as_bytes()))
        }
        None => None,
    };
    let index = Index::open(&cfg.index)?;
    let max_body = usize::try_from(cfg.max_bytes).unwrap_or(usize::MAX);
    let app = Arc::new(App {
        index_dir: cfg.index.display().to_string(),
        config: AuditConfig {
            top_k: cfg.top.max(1),
            ..AuditConfig::default()
        },
        limits: DecodeLimits {
            max_duration_s: cfg.max_duration,
            max_bytes: cfg.max_bytes,
        },
        token,
        permits: Arc::new(Semaphore::new(workers)),
        timeout: Duration::from_secs_f64(cfg.timeout_s),
        metrics: Metrics::default(),
        index,
    });
    let router = Router::new()
        .route("/v1/check", post(check))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            require_token,
        ))
        .with_state(app.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // checks beyond `workers` wait for a permit, not for a thread
        .max_blocking_threads(workers + 2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(cfg.addr)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.addr))?;
        let addr = listener.local_addr()?;
        eprintln!(
            "refrain serve: listening on http://{addr} ({} items, {:.1} h; {workers} worker(s){}); Ctrl-C or SIGTERM stops",
            app.index.len(),
            app.index.hours(),
            if app.token.is_some() { "; bearer token required" } else { "" }
        );
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("the server failed")
    })?;
    let m = &app.metrics;
    eprintln!(
        "refrain serve: stopped; {} flagged, {} passed, {} refused",
        m.flagged.load(Ordering::Relaxed),
        m.passed.load(Ordering::Relaxed),
        m.bad_request.load(Ordering::Relaxed)
            + m.too_large.load(Ordering::Relaxed)
            + m.busy.load(Ordering::Relaxed)
            + m.timeout.load(Ordering::Relaxed)
            + m.failed.load(Ordering::Relaxed)
    );
    Ok(ExitCode::SUCCESS)
}
