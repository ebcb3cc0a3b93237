//! `rollcall doctor`: asks a gateway's doctor what is wrong with its
//! presence rows (`GET /v1/presence/doctor`, docs/protocol.md §9) over HTTP
//! (HTTPS for `wss://`/`https://`) on the host and port of `--url`, and
//! turns the report into text for a person at a terminal (`doctor_text.rs`
//! renders it). Like
//! `rollcall presence` it prints nothing itself: the binary prints what
//! [`render`] returns, or for `--json` the body exactly as the gateway sent
//! it.
//!
//! Invariant: every failure is a [`DoctorError`] whose exit code is 2 or
//! more, so 1 always means "the report has findings" ([`EXIT_CODES`]).

use super::cli::{ClientArgs, with_sources};
pub use super::doctor_text::render;
use super::stream::dial;
use super::visible::{visible, visible_strings};
use super::ws_dial::{Target, TargetError, UrlError, resolve, socket_for};
pub use crate::presence::Report;
use crate::tls::TlsArgs;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::header::{ACCEPT, AUTHORIZATION, HOST, HeaderValue, USER_AGENT, WWW_AUTHENTICATE};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::time::Duration;
use thiserror::Error;
use tokio::task::JoinHandle;

/// The route of the doctor's report (docs/protocol.md §9).
pub const DOCTOR_PATH: &str = "/v1/presence/doctor";

/// Exit status when the report has findings; errors use 2 and up.
pub const EXIT_FINDINGS: u8 = 1;

/// The `--help` text after the options: how the URL is used, and what each
/// exit code means.
pub const EXIT_CODES: &str = "\
The report is read over HTTP from the host and port of --url (ws:// becomes http://, \
wss:// becomes https://, trusting --ca-file, --tls-fingerprint or the system's roots; the URL's \
path is ignored).

Exit codes:
  0  no findings
  1  findings (listed on stdout)
  2  bad --url, or unusable --ca-file
  3  the gateway is unreachable, or did not answer within --timeout
  4  the token is missing or refused (HTTP 401)
  5  the token lacks a read scope (operator.read, .write or .admin)
  6  the gateway has no doctor (HTTP 404: older than this rollcall), or answered another \
status or something that is not a report";

/// A report bigger than this is not one: the gateway lists at most 500
/// findings of each of four kinds, naming at most 20 rows each (a few
/// megabytes in the worst case), far below it.
const MAX_REPORT_BYTES: usize = 64 << 20;

/// `rollcall doctor` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    /// Connection options.
    pub client: ClientArgs,
    /// Print the gateway's JSON report unchanged (compact, as served)
    /// instead of text.
    #[arg(long)]
    pub json: bool,
    /// How long the whole request may take.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Why `rollcall doctor` got no report. Each maps to its own exit code.
#[derive(Debug, Error)]
pub enum DoctorError {
    /// The URL is not `ws://HOST[:PORT]` (or `http://`, `wss://`,
    /// `https://`), or the TLS options cannot be used.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// Nothing answered at the address, or the name did not resolve.
    #[error("cannot reach the gateway at {addr} (GET {endpoint}): {why}")]
    Unreachable {
        /// The address dialled (or the name looked up).
        addr: String,
        /// The URL of the report.
        endpoint: String,
        /// The OS or HTTP error.
        why: String,
    },
    /// No whole answer within `--timeout`.
    #[error("the gateway at {addr} did not answer GET {DOCTOR_PATH} within {}", humantime::format_duration(*after))]
    Timeout {
        /// The address dialled.
        addr: String,
        /// `--timeout`.
        after: Duration,
    },
    /// 401 and no token was given.
    #[error(
        "the gateway at {addr} requires a token with a read scope (operator.read) for its \
         doctor, and none was given: pass one with --token or ROLLCALL_CLIENT_TOKEN"
    )]
    TokenMissing {
        /// The address dialled.
        addr: String,
    },
    /// 401 for the token given.
    #[error(
        "the gateway at {addr} refused the token ({reason}); pass one it knows with --token \
         or ROLLCALL_CLIENT_TOKEN"
    )]
    TokenRefused {
        /// The address dialled.
        addr: String,
        /// What the gateway said.
        reason: String,
    },
    /// The token cannot travel in an `Authorization` header.
    #[error("the token cannot be sent in an HTTP header (it holds control characters)")]
    TokenUnsendable,
    /// 401: the token is known but grants no read scope.
    #[error(
        "the token lacks a read scope, which the doctor needs (operator.read, operator.write or \
         operator.admin): the gateway at {addr} answered 401"
    )]
    MissingScope {
        /// The address dialled.
        addr: String,
    },
    /// 404: the gateway predates the doctor, or is not rollcall.
    #[error(
        "the gateway at {addr} has no doctor (GET {DOCTOR_PATH} answered 404): it is older \
         than this rollcall, or not a rollcall gateway"
    )]
    NoDoctor {
        /// The address dialled.
        addr: String,
    },
    /// Another status.
    #[error("the gateway at {addr} answered GET {DOCTOR_PATH} with HTTP {status}: {message}")]
    Status {
        /// The address dialled.
        addr: String,
        /// The status code.
        status: u16,
        /// The start of its body.
        message: String,
    },
    /// 200, but the body is not a doctor's report.
    #[error(
        "the gateway at {addr} answered GET {DOCTOR_PATH} with something that is not a doctor's report: {why}"
    )]
    BadReport {
        /// The address dialled.
        addr: String,
        /// The parse error.
        why: String,
    },
}

impl DoctorError {
    /// The process exit code for this failure (see [`EXIT_CODES`]); the
    /// same numbers `rollcall presence` uses for the same failures, and
    /// never [`EXIT_FINDINGS`].
    pub fn exit_code(&self) -> u8 {
        match self {
            DoctorError::Target(_) => 2,
            DoctorError::Unreachable { .. } | DoctorError::Timeout { .. } => 3,
            DoctorError::TokenMissing { .. }
            | DoctorError::TokenRefused { .. }
            | DoctorError::TokenUnsendable => 4,
            DoctorError::MissingScope { .. } => 5,
            DoctorError::NoDoctor { .. }
            | DoctorError::Status { .. }
            | DoctorError::BadReport { .. } => 6,
        }
    }
}

/// A report and the body it was read from.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The body exactly as the gateway sent it.
    pub body: Bytes,
    /// The same, read.
    pub report: Report,
}

impl Fetched {
    /// 0 without findings, [`EXIT_FINDINGS`] with.
    pub fn exit_code(&self) -> u8 {
        if self.report.total() == 0 {
            0
        } else {
            EXIT_FINDINGS
        }
    }
}

/// Runs `rollcall doctor`: fetches and reads the report.
pub async fn fetch(args: &DoctorArgs) -> Result<Fetched, DoctorError> {
    let target = target(&args.client.url, &args.client.tls).await?;
    let addr = target.addr.to_string();
    let token = match &args.client.token {
        Some(token) => Some(
            HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|_| DoctorError::TokenUnsendable)?,
        ),
        None => None,
    };
    let answer = tokio::time::timeout(args.timeout, get(&target, token))
        .await
        .map_err(|_| DoctorError::Timeout {
            addr: addr.clone(),
            after: args.timeout,
        })??;
    let (status, challenge, body) = answer;
    let given = args.client.token.is_some();
    check_status(status, challenge.as_deref(), &body, addr.clone(), given)?;
    let bad = |e: serde_json::Error| DoctorError::BadReport {
        addr: addr.clone(),
        why: e.to_string(),
    };
    // Every string of the report comes from rows: escaped before reading,
    // so no rendering of it can print a control character.
    let mut value = serde_json::from_slice(&body).map_err(bad)?;
    visible_strings(&mut value);
    let report = serde_json::from_value(value).map_err(bad)?;
    Ok(Fetched { body, report })
}

/// The address of `url`: `ws://` and `wss://` as given, `http://` and
/// `https://` as their WebSocket twins.
async fn target(url: &str, tls: &TlsArgs) -> Result<Target, DoctorError> {
    let bad = |why| -> DoctorError {
        TargetError::BadUrl {
            url: url.to_owned(),
            why,
        }
        .into()
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("not a URL"))?;
    let scheme = scheme.to_ascii_lowercase();
    let (ws, http) = match scheme.as_str() {
        "ws" | "http" => ("ws", "http"),
        "wss" | "https" => ("wss", "https"),
        _ => return Err(bad("the scheme must be ws://, wss://, http:// or https://")),
    };
    resolve(&format!("{ws}://{rest}"), tls)
        .await
        .map_err(|e| match e {
            UrlError::Invalid { reason, .. } => bad(reason),
            UrlError::Tls(e) => TargetError::Tls(e).into(),
            UrlError::Resolve { ref host, .. } => DoctorError::Unreachable {
                addr: host.clone(),
                endpoint: format!("{http}://{host}{DOCTOR_PATH}"),
                why: with_sources(&e),
            },
        })
}

/// Ends hyper's connection task when the request is done or abandoned
/// (a timeout drops the request future).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One `GET` of the report: its status and whole body.
async fn get(
    target: &Target,
    token: Option<HeaderValue>,
) -> Result<(StatusCode, Option<String>, Bytes), DoctorError> {
    let scheme = if target.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let unreachable = |why: String| DoctorError::Unreachable {
        addr: target.addr.to_string(),
        endpoint: format!("{scheme}://{}{DOCTOR_PATH}", target.host_header),
        why,
    };
    let socket = socket_for(target).map_err(|e| unreachable(e.to_string()))?;
    let stream = dial(socket, target.addr, target.tls.as_ref())
        .await
        .map_err(|e| unreachable(with_sources(&e)))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(with_sources(&e)))?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let mut request = Request::get(DOCTOR_PATH)
        .header(HOST, target.host_header.as_str())
        .header(ACCEPT, "application/json")
        .header(USER_AGENT, concat!("rollcall/", env!("CARGO_PKG_VERSION")));
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, token);
    }
    // The path is a constant and the host came from a parsed URL; the
    // token was checked as a header value.
    let request = request
        .body(Empty::<Bytes>::new())
        .expect("a request from checked parts");
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(with_sources(&e)))?;
    let status = response.status();
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = Limited::new(response.into_body(), MAX_REPORT_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<LengthLimitError>() {
                DoctorError::BadReport {
                    addr: target.addr.to_string(),
                    why: format!("it is larger than {} MiB", MAX_REPORT_BYTES >> 20),
                }
            } else {
                unreachable(format!("reading the answer: {e}"))
            }
        })?
        .to_bytes();
    Ok((status, challenge, body))
}

/// The error a non-200 answer means. A 401's `WWW-Authenticate` challenge
/// says `error="insufficient_scope"` when the token is known but reads
/// nothing (RFC 6750 §3.1); older gateways only said so in the body.
fn check_status(
    status: StatusCode,
    challenge: Option<&str>,
    body: &[u8],
    addr: String,
    token_given: bool,
) -> Result<(), DoctorError> {
    let message = error_message(body);
    match status {
        StatusCode::OK => Ok(()),
        // The gateway says which of its two refusals it is (rest.rs).
        StatusCode::UNAUTHORIZED
            if challenge.is_some_and(|c| c.contains("error=\"insufficient_scope\""))
                || message.contains("lacks a read scope") =>
        {
            Err(DoctorError::MissingScope { addr })
        }
        StatusCode::UNAUTHORIZED if !token_given => Err(DoctorError::TokenMissing { addr }),
        StatusCode::UNAUTHORIZED => Err(DoctorError::TokenRefused {
            addr,
            reason: message,
        }),
        StatusCode::NOT_FOUND => Err(DoctorError::NoDoctor { addr }),
        other => Err(DoctorError::Status {
            addr,
            status: other.as_u16(),
            message,
        }),
    }
}

/// The `error` of a JSON error body, else the start of the body as text.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        return visible(&parsed.error).into_owned();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", visible(&text[..cut])),
        None if text.is_empty() => "(empty body)".to_owned(),
        None => visible(text).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn http_and_https_are_the_websocket_urls_twins() {
        let pinned = TlsArgs {
            tls_fingerprint: Some(crate::tls::Fingerprint::of(b"c")),
            ..TlsArgs::default()
        };
        for url in ["wss://127.0.0.1", "https://127.0.0.1/x"] {
            let t = target(url, &pinned).await.unwrap();
            assert_eq!(t.addr.port(), 443, "{url}");
            assert!(t.tls.is_some(), "{url}");
        }
        let none = TlsArgs::default();
        assert!(matches!(
            target("ftp://x", &none).await,
            Err(DoctorError::Target(TargetError::BadUrl { .. }))
        ));
        let t = target("http://127.0.0.1:9/ignored", &none).await.unwrap();
        assert_eq!(t.addr.port(), 9);
        assert!(t.tls.is_none());
        let missing = TlsArgs {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsArgs::default()
        };
        let e = target("https://127.0.0.1", &missing).await.unwrap_err();
        assert!(matches!(e, DoctorError::Target(TargetError::Tls(_))), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn refusals_are_told_apart() {
        let addr = || "a:1".to_owned();
        let status = |code: u16, body: &str, token: bool| {
            check_status(
                StatusCode::from_u16(code).unwrap(),
                None,
                body.as_bytes(),
                addr(),
                token,
            )
            .unwrap_err()
        };
        let missing = r#"{"error":"missing or invalid bearer token"}"#;
        let scope = r#"{"error":"token lacks a read scope (operator.read)"}"#;
        assert_eq!(status(401, missing, false).exit_code(), 4);
        assert!(status(401, missing, false).to_string().contains("--token"));
        assert!(matches!(
            status(401, missing, true),
            DoctorError::TokenRefused { .. }
        ));
        assert_eq!(status(401, scope, true).exit_code(), 5);
        // The challenge alone is enough, whatever the body says.
        let challenge =
            r#"Bearer realm="rollcall", error="insufficient_scope", scope="operator.read""#;
        let by_header = check_status(
            StatusCode::UNAUTHORIZED,
            Some(challenge),
            b"{}",
            addr(),
            true,
        );
        assert_eq!(by_header.unwrap_err().exit_code(), 5);
        assert_eq!(status(404, "", false).exit_code(), 6);
        let other = status(500, "boom", false);
        assert_eq!(other.exit_code(), 6);
        assert!(other.to_string().contains("HTTP 500: boom"), "{other}");
    }

    #[test]
    fn findings_exit_one_and_a_clean_report_zero() {
        let report = |findings: serde_json::Value, gone: u64| -> Report {
            serde_json::from_value(json!({
                "generatedAt": 1, "version": 1, "entries": 1,
                "counts": {"gone": gone}, "findings": findings,
                "cap": {"entries": 0, "maxEntries": 200, "evictedRecent": 0,
                        "expiredRecent": 0, "ttlMs": 300_000},
            }))
            .unwrap()
        };
        let fetched = |report| Fetched {
            body: Bytes::new(),
            report,
        };
        assert_eq!(fetched(report(json!([]), 0)).exit_code(), 0);
        let gone = json!([{"kind": "gone", "key": "k", "summary": "left"}]);
        assert_eq!(fetched(report(gone, 1)).exit_code(), EXIT_FINDINGS);
        // Counted but not listed still counts.
        assert_eq!(fetched(report(json!([]), 3)).exit_code(), EXIT_FINDINGS);
    }

    #[test]
    fn no_error_exits_like_findings() {
        let errors = [
            DoctorError::TokenUnsendable,
            DoctorError::NoDoctor { addr: "a".into() },
            DoctorError::Timeout {
                addr: "a".into(),
                after: Duration::from_secs(1),
            },
        ];
        for e in errors {
            assert!(e.exit_code() >= 2, "{e}");
        }
    }
}
