//! TLS on the one port (docs/protocol.md §1), over real sockets: the gateway
//! serves certificates made here with rcgen; rollcall's own client trusts
//! them by pinned fingerprint or CA file; the HTTP routes answer over
//! https; a new certificate is served without dropping connections; a
//! self-signed certificate is kept across restarts; and a socket that never
//! says ClientHello does not keep its slot.

mod common;

use common::raw::{closed_by_server, read_head};
use common::{TestServer, connect_frame, connect_params, eventually, within};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rollcall::client::handshake::next_text;
use rollcall::client::stream::dial;
use rollcall::client::{DialError, Envelope, WsConn, connect, hello, resolve, ws_dial::socket_for};
use rollcall::gateway::WaitingPool;
use rollcall::tls::{Fingerprint, TlsArgs};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A certificate and its key, in PEM, and the certificate's fingerprint.
struct Pem {
    cert: String,
    key: String,
    fingerprint: Fingerprint,
}

/// A self-signed certificate for the loopback names.
fn self_signed() -> Pem {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    Pem {
        fingerprint: Fingerprint::of(cert.der()),
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// A CA, and a certificate for the loopback names it signed: (CA PEM, leaf).
fn ca_and_leaf() -> (String, Pem) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "rollcall test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let pem = Pem {
        fingerprint: Fingerprint::of(leaf.der()),
        cert: leaf.pem(),
        key: key.serialize_pem(),
    };
    (ca.pem(), pem)
}

/// A fresh directory of its own.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rollcall-tls-it-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Puts `pem` at `dir/cert.pem` and `dir/key.pem`, each replaced at once
/// (written aside, then renamed), as a certificate renewal does.
fn install(dir: &Path, pem: &Pem) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    for (path, text) in [(&key, &pem.key), (&cert, &pem.cert)] {
        let aside = path.with_extension("new");
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, path).unwrap();
    }
    (cert, key)
}

/// A gateway serving `pem` over TLS on 127.0.0.1, its files in `dir`.
async fn tls_server(
    dir: &Path,
    pem: &Pem,
    edit: impl FnOnce(&mut rollcall::config::ServeConfig),
) -> TestServer {
    let (cert, key) = install(dir, pem);
    TestServer::start_with(|c| {
        c.tls.cert = Some(cert);
        c.tls.key = Some(key);
        edit(c);
    })
    .await
}

fn pinned(fingerprint: Fingerprint) -> TlsArgs {
    TlsArgs {
        tls_fingerprint: Some(fingerprint),
        ..TlsArgs::default()
    }
}

fn wss(server: &TestServer) -> String {
    format!("wss://{}/", server.addr)
}

/// rollcall's own client: dial, upgrade, handshake as a reader.
async fn open(url: &str, tls: &TlsArgs) -> Result<WsConn, DialError> {
    let target = resolve(url, tls).await.expect("a usable URL");
    let mut conn = within("a TLS connect", connect(&target)).await?;
    let request = connect_frame("connect", connect_params("cli", &["operator.read"]));
    let reply = within("hello-ok", hello(&mut conn, request.into_bytes()))
        .await
        .expect("the handshake completes");
    assert!(reply.ok, "{:?}", reply.error_code);
    Ok(conn)
}

/// Calls `health` on an open connection.
async fn health(conn: &mut WsConn) -> Value {
    let request = json!({"type": "req", "id": "h", "method": "health"}).to_string();
    conn.write
        .write_frame(fastwebsockets::Frame::text(fastwebsockets::Payload::Owned(
            request.into_bytes(),
        )))
        .await
        .unwrap();
    within("the health reply", async {
        loop {
            let text = next_text(conn).await.unwrap();
            let envelope: Envelope = serde_json::from_slice(text).unwrap();
            if envelope.kind == "res" && envelope.id.as_deref() == Some("h") {
                let reply: Value = serde_json::from_slice(text).unwrap();
                return reply["payload"].clone();
            }
        }
    })
    .await
}

/// The whole error chain, as the CLI prints it.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// One HTTPS GET through rollcall's client stream: status and body.
async fn https_get(server: &TestServer, tls: &TlsArgs, path: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    let target = resolve(&wss(server), tls).await.unwrap();
    let socket = socket_for(&target).unwrap();
    let stream = dial(socket, target.addr, target.tls.as_ref())
        .await
        .unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header("host", server.addr.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = within("an https answer", sender.send_request(request))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_pinned_client_connects_and_health_shows_the_fingerprint() {
    let dir = scratch();
    let pem = self_signed();
    let server = tls_server(&dir, &pem, |_| {}).await;
    let mut conn = open(&wss(&server), &pinned(pem.fingerprint)).await.unwrap();
    let payload = health(&mut conn).await;
    assert_eq!(payload["ok"], true);
    assert_eq!(
        payload["tls"]["fingerprintSha256"],
        pem.fingerprint.to_string()
    );
}

#[tokio::test]
async fn a_client_trusting_the_ca_file_connects() {
    let dir = scratch();
    let (ca, leaf) = ca_and_leaf();
    let server = tls_server(&dir, &leaf, |_| {}).await;
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let trust = TlsArgs {
        ca_file: Some(ca_file),
        ..TlsArgs::default()
    };
    let mut conn = open(&wss(&server), &trust).await.unwrap();
    assert_eq!(health(&mut conn).await["ok"], true);
    // The name is checked against the certificate: it was made for
    // 127.0.0.1 and localhost, and `localhost` resolves here.
    let by_name = format!("wss://localhost:{}/", server.addr.port());
    open(&by_name, &trust).await.unwrap();
}

#[tokio::test]
async fn a_wrong_fingerprint_is_refused_with_a_clear_error() {
    let dir = scratch();
    let pem = self_signed();
    let server = tls_server(&dir, &pem, |_| {}).await;
    let other = self_signed().fingerprint;
    let err = open(&wss(&server), &pinned(other)).await.err().unwrap();
    assert!(matches!(err, DialError::Tls(_)), "{err}");
    let text = chain(&err);
    assert!(text.contains("fingerprint mismatch"), "{text}");
    assert!(text.contains(&other.to_string()), "names the pin: {text}");
    assert!(
        text.contains(&pem.fingerprint.to_string()),
        "names the server's: {text}"
    );
    // A CA that did not sign it is refused too.
    let (ca, _) = ca_and_leaf();
    let ca_file = dir.join("other-ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let trust = TlsArgs {
        ca_file: Some(ca_file),
        ..TlsArgs::default()
    };
    let err = open(&wss(&server), &trust).await.err().unwrap();
    assert!(matches!(err, DialError::Tls(_)), "{err}");
    assert!(
        chain(&err).contains("invalid peer certificate"),
        "{}",
        chain(&err)
    );
}

#[tokio::test]
async fn a_plain_client_on_the_tls_port_is_told_to_use_tls() {
    let dir = scratch();
    let pem = self_signed();
    let server = tls_server(&dir, &pem, |_| {}).await;
    // rollcall's own ws:// client: a 400 instead of the upgrade.
    let url = format!("ws://{}/", server.addr);
    let target = resolve(&url, &TlsArgs::default()).await.unwrap();
    let err = within("a plain connect", connect(&target))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, DialError::UpgradeRejected(400)), "{err}");
    // Raw HTTP: the answer says why, then the socket closes.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    tcp.write_all(request.as_bytes()).await.unwrap();
    let (head, body) = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(body.contains("https:// or wss://"), "{body}");
    assert!(closed_by_server(&mut tcp).await);
    // A TLS client (wss:// to a plain port) fails cleanly the other way.
    let plain = TestServer::start().await;
    let err = open(&wss(&plain), &pinned(pem.fingerprint))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, DialError::Tls(_)), "{err}");
    // The TLS gateway still serves TLS clients.
    open(&wss(&server), &pinned(pem.fingerprint)).await.unwrap();
}

#[tokio::test]
async fn http_routes_answer_over_https() {
    let dir = scratch();
    let pem = self_signed();
    let server = tls_server(&dir, &pem, |_| {}).await;
    let trust = pinned(pem.fingerprint);
    let (status, body) = https_get(&server, &trust, "/healthz").await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = https_get(&server, &trust, "/v1/presence").await;
    assert_eq!(status, 200, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap().is_array());
    let (status, body) = https_get(&server, &trust, "/v1/presence/stats").await;
    assert_eq!(status, 200, "{body}");
    let stats: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        stats["tls"]["fingerprintSha256"],
        pem.fingerprint.to_string()
    );
}

#[tokio::test]
async fn a_changed_certificate_is_served_to_new_connections_and_old_ones_stay() {
    let dir = scratch();
    let first = self_signed();
    let server = tls_server(&dir, &first, |c| {
        c.tls.watch_interval = Duration::from_millis(50);
    })
    .await;
    let mut old = open(&wss(&server), &pinned(first.fingerprint))
        .await
        .unwrap();
    let second = self_signed();
    install(&dir, &second);
    let url = wss(&server);
    let mut new = eventually("the new certificate served", async || {
        open(&url, &pinned(second.fingerprint)).await.ok()
    })
    .await;
    // The connection made before the reload still answers, and reports
    // the certificate served now.
    let payload = health(&mut old).await;
    assert_eq!(
        payload["tls"]["fingerprintSha256"],
        second.fingerprint.to_string()
    );
    assert_eq!(health(&mut new).await["ok"], true);
    let stale = open(&url, &pinned(first.fingerprint)).await.err().unwrap();
    assert!(chain(&stale).contains("fingerprint mismatch"), "{stale}");
}

#[tokio::test]
async fn a_broken_new_certificate_is_not_served_and_the_old_one_stays() {
    let dir = scratch();
    let first = self_signed();
    let server = tls_server(&dir, &first, |c| {
        c.tls.watch_interval = Duration::from_millis(50);
    })
    .await;
    // A certificate with another certificate's key: refused at reload.
    let (a, b) = (self_signed(), self_signed());
    let mismatched = Pem {
        cert: a.cert,
        key: b.key,
        fingerprint: a.fingerprint,
    };
    let mut progress = server.state.http.tls.as_ref().unwrap().progress();
    install(&dir, &mismatched);
    // A check that began before the files were written may have seen
    // either; the second one after that saw them both.
    let until = progress.borrow().checks + 2;
    let seen = *within(
        "two checks of the broken pair",
        progress.wait_for(|p| p.checks >= until),
    )
    .await
    .unwrap();
    // Whatever half of the pair a check saw, it was refused.
    assert!(seen.refused >= 1 && seen.reloaded == 0, "{seen:?}");
    open(&wss(&server), &pinned(first.fingerprint))
        .await
        .expect("the previous certificate is still served");
    let good = self_signed();
    install(&dir, &good);
    let url = wss(&server);
    eventually("the good certificate served", async || {
        open(&url, &pinned(good.fingerprint)).await.ok()
    })
    .await;
}

#[tokio::test]
async fn a_socket_that_never_says_client_hello_is_closed_by_the_timeout() {
    let dir = scratch();
    let pem = self_signed();
    let server = tls_server(&dir, &pem, |c| {
        c.http_timeout = Duration::from_millis(300);
    })
    .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // Half a ClientHello: the record header and nothing more.
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();
    assert!(
        closed_by_server(&mut silent).await,
        "a silent socket is closed"
    );
    assert!(
        closed_by_server(&mut partial).await,
        "a stalled handshake is closed"
    );
    open(&wss(&server), &pinned(pem.fingerprint)).await.unwrap();
}

#[tokio::test]
async fn silent_sockets_cannot_lock_tls_clients_out() {
    // Half of 40 slots may wait for a first request; the timeout is long,
    // so only the waiting pool can make room.
    let dir = scratch();
    let pem = self_signed();
    let server = tls_server(&dir, &pem, |c| {
        c.max_connections = 40;
        c.http_timeout = Duration::from_secs(30);
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..60 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // The server takes 40, all its slots; the rest wait in the backlog
    // (on a machine slow enough for real time to pass the minimum wait
    // meanwhile, it has begun evicting already).
    eventually("the 40 silent sockets the server took", async || {
        let evicted = server.state.metrics().waiting_evicted.get();
        (server.state.waiting.len() == 40 || evicted > 0).then_some(())
    })
    .await;
    // Make every one of them older than the pool's minimum wait: tokio's
    // clock jumps ahead, then runs on (paused for good, it would jump to
    // the 30 s timeout whenever every task waits for a socket).
    tokio::time::pause();
    tokio::time::advance(WaitingPool::MIN_WAIT).await;
    tokio::time::resume();
    let mut conn = open(&wss(&server), &pinned(pem.fingerprint)).await.unwrap();
    assert_eq!(health(&mut conn).await["ok"], true);
}

#[tokio::test]
async fn a_self_signed_certificate_is_kept_and_reused_across_restarts() {
    let dir = scratch();
    let (cert, key) = (dir.join("tls/cert.pem"), dir.join("tls/key.pem"));
    let config = |c: &mut rollcall::config::ServeConfig| {
        c.tls.self_signed = true;
        c.tls.cert = Some(cert.clone());
        c.tls.key = Some(key.clone());
    };
    let mut first = TestServer::start_with(config).await;
    let made = first.state.http.tls.as_ref().unwrap().fingerprint();
    assert_eq!(Fingerprint::of(&pem_der(&cert)), made);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "key file mode {mode:o}");
    }
    open(&wss(&first), &pinned(made)).await.unwrap();
    within("the first gateway stops", first.begin_shutdown())
        .await
        .unwrap();
    let second = TestServer::start_with(config).await;
    let reused = second.state.http.tls.as_ref().unwrap().fingerprint();
    assert_eq!(reused, made, "the same certificate after a restart");
    open(&wss(&second), &pinned(made)).await.unwrap();
}

/// The DER of the first certificate in a PEM file.
fn pem_der(path: &Path) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_file(path).unwrap().to_vec()
}

/// `rollcall serve` as its own process, killed when dropped.
struct ServeProcess {
    child: tokio::process::Child,
    addr: std::net::SocketAddr,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl ServeProcess {
    /// Starts `rollcall serve` with `args` and reads its log until the
    /// fingerprint line: the process and the fingerprint it printed.
    async fn start(args: &[&str]) -> (ServeProcess, String) {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let port = common::fleet::free_port();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollcall"))
            .args(["serve", "--bind", &addr.to_string()])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the rollcall binary starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let printed = within("the fingerprint in the start log", async {
            loop {
                let line = lines.next_line().await.unwrap().expect("the log goes on");
                if let Some(at) = line.find("--tls-fingerprint ") {
                    let rest = &line[at + "--tls-fingerprint ".len()..];
                    return rest.split_whitespace().next().unwrap().to_owned();
                }
            }
        })
        .await;
        // Keep draining the log so the process never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        eventually("the gateway binary to listen", async || {
            TcpStream::connect(addr).await.ok()
        })
        .await;
        (ServeProcess { child, addr }, printed)
    }

    fn url(&self) -> String {
        format!("wss://{}/", self.addr)
    }
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_keeps_connections() {
    let dir = scratch();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    // Made by `--tls-self-signed`; files are not watched, only SIGHUP.
    let (gateway, printed) = ServeProcess::start(&[
        "--tls-self-signed",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-watch-interval",
        "0s",
    ])
    .await;
    let made = Fingerprint::of(&pem_der(&cert));
    assert_eq!(printed, made.to_string(), "the log prints the pin");
    let mut old = open(&gateway.url(), &pinned(made)).await.unwrap();
    let next = self_signed();
    install(&dir, &next);
    assert!(
        open(&gateway.url(), &pinned(next.fingerprint))
            .await
            .is_err(),
        "not reloaded before SIGHUP (the files are not watched)"
    );
    let pid = gateway.child.id().expect("running") as libc::pid_t;
    // SAFETY: kill(2) with a pid this test started and a valid signal.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let url = gateway.url();
    eventually("the new certificate after SIGHUP", async || {
        open(&url, &pinned(next.fingerprint)).await.ok()
    })
    .await;
    let payload = health(&mut old).await;
    assert_eq!(
        payload["tls"]["fingerprintSha256"],
        next.fingerprint.to_string(),
        "the connection from before SIGHUP still answers"
    );
}

async fn rollcall(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(args)
        .env_remove("ROLLCALL_CLIENT_TOKEN")
        .env_remove("ROLLCALL_URL")
        .env_remove("ROLLCALL_CA_FILE")
        .env_remove("ROLLCALL_TLS_FINGERPRINT")
        .output()
        .await
        .expect("the rollcall binary runs")
}

#[tokio::test]
async fn presence_beacon_and_doctor_speak_tls() {
    let dir = scratch();
    let (ca, leaf) = ca_and_leaf();
    let server = tls_server(&dir, &leaf, |_| {}).await;
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let (url, pin) = (wss(&server), leaf.fingerprint.to_string());
    let ca_arg = ca_file.to_str().unwrap();
    let out = rollcall(&[
        "beacon",
        "--url",
        &url,
        "--ca-file",
        ca_arg,
        "--instance-id",
        "tls-1",
        "--host",
        "tls-host",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = rollcall(&[
        "presence",
        "--url",
        &url,
        "--tls-fingerprint",
        &pin,
        "--json",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|row| row["host"] == "tls-host"),
        "{list}"
    );
    let https = format!("https://{}", server.addr);
    let out = rollcall(&[
        "doctor",
        "--url",
        &https,
        "--tls-fingerprint",
        &pin,
        "--json",
    ])
    .await;
    let code = out.status.code().unwrap();
    assert!(
        code <= 1,
        "exit {code}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["findings"].is_array(), "{report}");
    // A wrong pin: unreachable (3), saying why.
    let wrong = self_signed().fingerprint.to_string();
    for command in ["presence", "doctor"] {
        let out = rollcall(&[command, "--url", &url, "--tls-fingerprint", &wrong]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{command}: {stderr}");
        assert!(
            stderr.contains("fingerprint mismatch"),
            "{command}: {stderr}"
        );
        assert!(
            stderr.contains(&pin),
            "{command} names the server's: {stderr}"
        );
    }
    // A pin on ws:// is a mistake, said before dialling.
    let plain = format!("ws://{}/", server.addr);
    let out = rollcall(&["presence", "--url", &plain, "--tls-fingerprint", &pin]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a wss:// URL"));
}
