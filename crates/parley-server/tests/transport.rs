//! What surrounds the API: attempt limits, e-mail over a real SMTP connection, real
//! TLS with the whitepaper's versions and suites, and configuration errors a person
//! can act on.

mod support;

use std::sync::Arc;

use parley_server::config::Limits;
use parley_server::config::{Settings, SmtpConfig, SmtpSecurity, TlsConfig};
use parley_server::server::start_with_store;
use parley_store_sqlite::SqliteStore;
use rustls::crypto::ring::{cipher_suite, default_provider};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use support::{Backend, PASSWORD, TestServer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_limited_per_account() {
    let s = TestServer::start(Backend::Sqlite, Limits::default())
        .await
        .expect("sqlite");
    s.register("rita@example.com").await;
    for _ in 0..10 {
        let (st, _, _) = s
            .login("rita@example.com", "Wrong-pass-1", false, None)
            .await;
        assert_eq!(st, 403);
    }
    let (st, v, h) = s
        .call(
            reqwest::Method::POST,
            "/v1/login",
            None,
            Some(json!({"email": "rita@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(
        (st.as_u16(), v["label"].as_str()),
        (429, Some("too-many-requests"))
    );
    assert!(h.get("retry-after").is_some());
    // Another account is not affected; the window passes.
    let (st, _, _) = s.login("someone@example.com", PASSWORD, false, None).await;
    assert_eq!(st, 403);
    s.running.clock.advance(301);
    assert_eq!(
        s.login("rita@example.com", PASSWORD, false, None).await.0,
        200
    );
}

/// Guesses by handle and by e-mail count against one limit per account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_and_email_guesses_share_one_limit() {
    let s = TestServer::start(Backend::Sqlite, Limits::default())
        .await
        .expect("sqlite");
    let u = s.register("sam@example.com").await;
    let (st, v, _) = s
        .call(
            reqwest::Method::PUT,
            "/v1/self/handle",
            Some(&u.token),
            Some(json!({"handle": "sam"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    for i in 0..10 {
        let name = if i % 2 == 0 {
            json!({"email": "sam@example.com", "password": "Wrong-pass-1"})
        } else {
            json!({"handle": "sam", "password": "Wrong-pass-1"})
        };
        let (st, _, _) = s
            .call(reqwest::Method::POST, "/v1/login", None, Some(name))
            .await;
        assert_eq!(st, 403);
    }
    for name in [
        json!({"email": "sam@example.com", "password": PASSWORD}),
        json!({"handle": "sam", "password": PASSWORD}),
    ] {
        let (st, v, _) = s
            .call(reqwest::Method::POST, "/v1/login", None, Some(name))
            .await;
        assert_eq!(
            (st.as_u16(), v["label"].as_str()),
            (429, Some("too-many-requests")),
            "five and five are ten"
        );
    }
}

/// A minimal SMTP server: accepts every message and hands it to the test.
async fn smtp_sink() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ESMTP\r\n").await.ok();
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.split_whitespace().next().unwrap_or("").to_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                        "DATA" => {
                            write.write_all(b"354 go ahead\r\n").await.ok();
                            let mut message = String::new();
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                message.push_str(&l);
                                message.push('\n');
                            }
                            tx.send(message).ok();
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await.ok();
                            break;
                        }
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(reply).await.ok();
                }
            });
        }
    });
    (port, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_go_out_by_smtp_when_configured() {
    let (port, mut inbox) = smtp_sink().await;
    let server = parley_testkit::TestServer::start_on(Backend::Sqlite, |settings| {
        settings.smtp = Some(SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            security: SmtpSecurity::None,
            username: None,
            password: None,
        });
    })
    .await
    .expect("SQLite always runs");
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/activate/send", server.url()))
        .json(&json!({"email": "sam@example.com"}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let message = tokio::time::timeout(std::time::Duration::from_secs(10), inbox.recv())
        .await
        .expect("mail arrives")
        .expect("message");
    assert!(message.contains("To: sam@example.com"), "{message}");
    assert!(message.contains("verification code is"), "{message}");
    assert!(!server.outbox().exists(), "nothing written to the outbox");
    server.stop().await;
}

struct TlsServer {
    server: parley_testkit::TestServer,
    cert: CertificateDer<'static>,
    cert_pem: String,
}

async fn tls_server() -> TlsServer {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let cert_pem = key.cert.pem();
    let server = parley_testkit::TestServer::start_on(Backend::Sqlite, |settings| {
        let dir = &settings.data_dir;
        std::fs::write(dir.join("cert.pem"), &cert_pem).expect("write");
        std::fs::write(dir.join("key.pem"), key.signing_key.serialize_pem()).expect("write");
        settings.tls = Some(TlsConfig {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        });
    })
    .await
    .expect("SQLite always runs");
    TlsServer {
        server,
        cert: key.cert.der().clone(),
        cert_pem,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_hsts_and_secure_cookies() {
    let t = tls_server().await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(t.cert_pem.as_bytes()).expect("pem"))
        .build()
        .expect("client");
    let base = format!("https://localhost:{}", t.server.running.addr.port());
    let resp = client
        .post(format!("{base}/v1/activate/send"))
        .json(&json!({"email": "tia@example.com"}))
        .send()
        .await
        .expect("https request");
    assert_eq!(resp.status(), 200);
    let hsts = resp
        .headers()
        .get("strict-transport-security")
        .expect("HSTS")
        .to_str()
        .expect("ascii");
    assert!(hsts.contains("max-age=31536000"));
    let mail = std::fs::read_dir(t.server.outbox())
        .expect("outbox")
        .next()
        .expect("mail");
    let text = std::fs::read_to_string(mail.expect("entry").path()).expect("read");
    let at = text.find("code is ").expect("code") + 8;
    let body = json!({"name": "Tia", "email": "tia@example.com", "email_code": &text[at..at + 6], "password": PASSWORD});
    let resp = client
        .post(format!("{base}/v1/register"))
        .json(&body)
        .send()
        .await
        .expect("register");
    assert_eq!(resp.status(), 201);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .expect("cookie")
        .to_str()
        .expect("ascii");
    assert!(cookie.contains("; Secure"), "{cookie}");
}

/// A TLS handshake with only the given versions and suites offered.
async fn handshake(
    t: &TlsServer, versions: &[&'static rustls::SupportedProtocolVersion],
    suites: Vec<rustls::SupportedCipherSuite>,
) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(t.cert.clone()).expect("root");
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites,
        ..default_provider()
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(t.server.running.addr)
        .await
        .expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_whitepapers_tls_versions_and_suites_are_accepted() {
    use rustls::version::{TLS12, TLS13};
    let t = tls_server().await;
    let cases = [
        (&TLS13, cipher_suite::TLS13_AES_128_GCM_SHA256, true),
        (&TLS13, cipher_suite::TLS13_AES_256_GCM_SHA384, true),
        (
            &TLS12,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            true,
        ),
        (&TLS13, cipher_suite::TLS13_CHACHA20_POLY1305_SHA256, false),
        (
            &TLS12,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            false,
        ),
        (
            &TLS12,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            false,
        ),
    ];
    for (version, suite, accepted) in cases {
        let name = suite.suite();
        assert_eq!(
            handshake(&t, &[version], vec![suite]).await,
            accepted,
            "{name:?}"
        );
    }
}

fn run_server(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_parley-server"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_is_a_clear_message_and_exit_code_2() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, err) = run_server(&["--config", "/nonexistent/parley.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read the config file"), "{err}");

    let cases = [
        ("unknown = 1\n", "not valid"),
        (
            "database_url = \"mysql://x\"\n",
            "must start with postgres:// or sqlite:",
        ),
        ("domain = \"bad domain\"\n", "is not a domain name"),
        (
            "[tls]\ncert = \"/no/cert.pem\"\nkey = \"/no/key.pem\"\n",
            "does not exist",
        ),
    ];
    for (toml, expected) in cases {
        let path = dir.path().join("parley.toml");
        std::fs::write(&path, toml).expect("write");
        let (code, err) = run_server(&["--config", path.to_str().expect("utf-8")]);
        assert_eq!(code, 2, "{toml}");
        assert!(err.contains(expected), "{toml}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// A load balancer's two questions, without a login: is the process alive,
/// and can it serve (its database answers; one node needs no NATS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_need_no_login() {
    let s = TestServer::start(Backend::Sqlite, Limits::default())
        .await
        .expect("sqlite");
    for (path, status) in [("/v1/health", "ok"), ("/v1/ready", "ready")] {
        let resp = reqwest::get(format!("{}{path}", s.base))
            .await
            .expect("get");
        assert_eq!(resp.status(), 200, "{path}");
        let body: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(body["status"], status, "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route() {
    let s = TestServer::start(Backend::Sqlite, Limits::default())
        .await
        .expect("sqlite");
    let resp = reqwest::get(format!("{}/v1/openapi.json", s.base))
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    let doc: serde_json::Value = resp.json().await.expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert!(doc["components"]["schemas"]["NewClient"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            operations += 1;
            assert!(
                op["responses"].is_object(),
                "{method} {path} documents its responses"
            );
            // Every documented operation exists on the server: filling the parameters in
            // gets an answer from the route (auth or validation), never "no such endpoint".
            let concrete = fill_parameters(path);
            let method =
                reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let resp = s
                .http
                .request(method.clone(), format!("{}{concrete}", s.base))
                .send()
                .await
                .expect("request");
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            assert!(
                status != 405 && body["label"] != "no-endpoint",
                "{method} {path} is documented but not served ({status} {body})"
            );
        }
    }
    assert_eq!(operations, 64, "every route is documented (and only those)");
}

/// A documented path with its parameters filled in: device ids are hex, user ids UUIDs.
fn fill_parameters(path: &str) -> String {
    let id = if path.starts_with("/v1/clients/") {
        "1"
    } else {
        "00000000-0000-4000-8000-000000000000"
    };
    path.replace("{domain}", "localhost")
        .replace("{user_domain}", "localhost")
        .replace("{user}", "00000000-0000-4000-8000-000000000000")
        .replace("{id}", id)
        .replace("{client}", "1")
        .replace("{handle}", "nobody")
}

/// A flood of logins (unknown addresses cost a hash too) never makes the
/// server hash without bound: past one running and four waiting, the answer is
/// 503 with `Retry-After`, and nothing fails otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_hashing_is_bounded() {
    let s = TestServer::start_with(Backend::Sqlite, support::GENEROUS, |settings| {
        settings.password_hash_concurrency = 1;
    })
    .await
    .expect("sqlite");
    let logins: Vec<_> = (0..40)
        .map(|i| {
            let http = s.http.clone();
            let url = format!("{}/v1/login", s.base);
            tokio::spawn(async move {
                let resp = http
                    .post(url)
                    .json(&serde_json::json!({"email": format!("flood{i}@example.com"), "password": "Whatever-1!"}))
                    .send()
                    .await
                    .expect("request");
                let retry = resp.headers().get("retry-after").is_some();
                let status = resp.status().as_u16();
                let body: serde_json::Value = resp.json().await.expect("json");
                (status, body["label"].as_str().unwrap_or_default().to_owned(), retry)
            })
        })
        .collect();
    let mut busy = 0;
    for login in logins {
        match login.await.expect("task") {
            (503, label, true) if label == "server-busy" => busy += 1,
            (403, label, _) if label == "invalid-credentials" => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(
        busy > 0,
        "40 at once with room for 5: some are told to come back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_are_limited_per_address_too() {
    let limits = Limits {
        per_address: 5,
        ..support::GENEROUS
    };
    let s = TestServer::start(Backend::Sqlite, limits)
        .await
        .expect("sqlite");
    for i in 0..5 {
        let (st, _, _) = s
            .login(&format!("user{i}@example.com"), PASSWORD, false, None)
            .await;
        assert_eq!(st, 403, "different accounts, same address");
    }
    let (st, v, _) = s.login("user9@example.com", PASSWORD, false, None).await;
    assert_eq!(
        (st.as_u16(), v["label"].as_str()),
        (429, Some("too-many-requests"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_hash_setting_rehashes_passwords_at_login() {
    use parley_server::passwords::PasswordHashing;
    support::init();
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("p.db");
    let start = |hashing: PasswordHashing| {
        let mut settings = Settings::development(dir.path());
        settings.listen = "127.0.0.1:0".parse().expect("addr");
        settings.password_hashing = hashing;
        let db = db.clone();
        async move {
            let store = SqliteStore::open(&db).await.expect("store");
            start_with_store(settings, Arc::new(store), Default::default())
                .await
                .expect("starts")
        }
    };
    let stored_hash = || async {
        let store = SqliteStore::open(&db).await.expect("store");
        let user = parley_store::AccountStore::user_by_email(&store, "uma@example.com")
            .await
            .expect("get");
        user.expect("user").password_hash
    };
    let http = reqwest::Client::new();
    // Registered while argon2id is configured.
    let server = start(PasswordHashing::Argon2id).await;
    let base = format!("http://{}", server.addr);
    http.post(format!("{base}/v1/activate/send"))
        .json(&json!({"email": "uma@example.com"}))
        .send()
        .await
        .expect("send");
    let mail = std::fs::read_dir(dir.path().join("outbox"))
        .expect("outbox")
        .next()
        .expect("mail");
    let text = std::fs::read_to_string(mail.expect("entry").path()).expect("read");
    let at = text.find("code is ").expect("code") + 8;
    let body = json!({"name": "Uma", "email": "uma@example.com", "email_code": &text[at..at + 6], "password": PASSWORD});
    assert_eq!(
        http.post(format!("{base}/v1/register"))
            .json(&body)
            .send()
            .await
            .expect("r")
            .status(),
        201
    );
    server.shutdown().await.expect("stops");
    assert!(stored_hash().await.starts_with("$argon2id$"));
    // Restarted with scrypt: the old hash still verifies, and is replaced.
    let server = start(PasswordHashing::Scrypt).await;
    let login = json!({"email": "uma@example.com", "password": PASSWORD});
    let resp = http
        .post(format!("http://{}/v1/login", server.addr))
        .json(&login)
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), 200);
    server.shutdown().await.expect("stops");
    assert!(
        stored_hash().await.starts_with("14|8|1|"),
        "re-hashed with scrypt at login"
    );
}

/// Reads from a raw connection until the server closes it; what it sent.
/// Panics if it is still open after `within`.
async fn read_until_closed(conn: &mut TcpStream, within: std::time::Duration) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&got).into_owned()
}

/// A server whose deadlines are short enough to watch.
async fn impatient_server(max_connections: Option<usize>) -> TestServer {
    TestServer::start_with(Backend::Sqlite, support::GENEROUS, |settings| {
        settings.header_timeout = std::time::Duration::from_secs(1);
        settings.body_timeout = std::time::Duration::from_secs(1);
        settings.max_connections = max_connections;
    })
    .await
    .expect("sqlite")
}

/// Slow-loris: half-sent headers, a connection that sends nothing, an idle
/// kept-alive connection and a body that trickles are all cut after their
/// deadline, and a body that is too slow is answered 408 with
/// `Connection: close`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let s = impatient_server(None).await;
    let addr = s.running.addr;
    let patience = std::time::Duration::from_secs(5);

    let mut half = TcpStream::connect(addr).await.expect("connect");
    half.write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    read_until_closed(&mut half, patience).await;
    read_until_closed(&mut silent, patience).await;

    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let answer = read_until_closed(&mut idle, patience).await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");

    let mut trickle = TcpStream::connect(addr).await.expect("connect");
    trickle
        .write_all(
            b"POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"em",
        )
        .await
        .expect("write");
    let answer = read_until_closed(&mut trickle, patience).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(answer.contains("request-timeout"), "{answer}");

    // HTTP/2 in plain text gets no request in, and its connection is cut
    // after the first-request deadline like any other.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let resp = h2.get(format!("{}/v1/openapi.json", s.base)).send().await;
    assert!(
        resp.as_ref().map_or(true, |r| !r.status().is_success()),
        "{resp:?}"
    );
    let mut h2 = TcpStream::connect(addr).await.expect("connect");
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("write");
    read_until_closed(&mut h2, patience).await;

    // The server still answers everyone else.
    let resp = s
        .http
        .get(format!("{}/v1/openapi.json", s.base))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
}

/// Beyond `max_connections` a new connection is closed at once; when one
/// closes, there is room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped() {
    let s = impatient_server(Some(3)).await;
    let addr = s.running.addr;
    // Idle connections hold their slots until the header deadline.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(addr).await.expect("the kernel accepts");
    let _ = extra
        .write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let answer = read_until_closed(&mut extra, std::time::Duration::from_millis(900)).await;
    assert!(answer.is_empty(), "refused without an answer: {answer}");
    drop(held);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let resp = s
        .http
        .get(format!("{}/v1/openapi.json", s.base))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
}

/// A body over the limit is answered 413 with `Connection: close`, and a
/// JSON array where an object is expected is a 400 that changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_and_arrays_are_refused() {
    let s = TestServer::start(Backend::Sqlite, support::GENEROUS)
        .await
        .expect("sqlite");
    let resp = s
        .http
        .post(format!("{}/v1/login", s.base))
        .header("content-type", "application/json")
        .body(vec![b' '; parley_server::server::MAX_BODY_BYTES + 1])
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["label"], "too-large");

    let u = s.register("arr@example.com").await;
    for body in [
        json!(["arr@example.com", PASSWORD, true]),
        json!("arr@example.com"),
        json!(null),
    ] {
        let (st, v) = s.post("/v1/login", None, body).await;
        assert_eq!(
            (st.as_u16(), v["label"].as_str()),
            (400, Some("bad-request")),
            "{v}"
        );
    }
    let (st, v, _) = s
        .call(
            reqwest::Method::PUT,
            "/v1/self",
            Some(&u.token),
            Some(json!(["Mallory"])),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    let (_, me) = s.get("/v1/self", &u.token).await;
    assert_eq!(me["name"], "Test", "nothing changed");
}

/// Behind a trusted proxy the client's address comes from
/// `X-Forwarded-For` (so attempt limits count per client, not per proxy) and
/// cookies are `Secure` when it says it received HTTPS; anyone else's
/// forwarding headers are ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_believed_only_from_trusted_proxies() {
    let limits = Limits {
        per_address: 3,
        ..support::GENEROUS
    };
    for trusted in [true, false] {
        let s = TestServer::start_with(Backend::Sqlite, limits, |settings| {
            if trusted {
                settings.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")];
            }
        })
        .await
        .expect("sqlite");
        s.register("prox@example.com").await;
        let login = |client: &'static str| {
            s.http
                .post(format!("{}/v1/login", s.base))
                .header("x-forwarded-for", format!("{client}, 127.0.0.1"))
                .header("x-forwarded-proto", "https")
                .json(&json!({"email": "prox@example.com", "password": PASSWORD}))
                .send()
        };
        // Until the address's limit (registering counted against 127.0.0.1
        // too, which is the address when the proxy is not believed).
        let mut ok = 0;
        loop {
            let resp = login("203.0.113.7").await.expect("request");
            if resp.status() == 429 {
                break;
            }
            assert_eq!(resp.status(), 200);
            let cookie = resp.headers()["set-cookie"]
                .to_str()
                .expect("ascii")
                .to_owned();
            assert_eq!(cookie.contains("; Secure"), trusted, "{cookie}");
            ok += 1;
            assert!(ok <= 3, "the limit holds");
        }
        if trusted {
            assert_eq!(ok, 3, "three tries from the forwarded address");
        }
        let other = login("198.51.100.9").await.expect("request").status();
        assert_eq!(
            other,
            if trusted { 200 } else { 429 },
            "another client behind the proxy counts apart only when the proxy is trusted"
        );
    }
}

/// Prekey claims are limited per claimer and device: past the limit a
/// claimer gets the last-resort prekey (a session still starts) and the pool
/// keeps its one-time prekeys; another claimer is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prekey_claims_are_limited_per_claimer_and_device() {
    let limits = Limits {
        prekey_claims: 2,
        ..support::GENEROUS
    };
    let s = TestServer::start(Backend::Sqlite, limits)
        .await
        .expect("sqlite");
    let owner = s.register("own@example.com").await;
    let (_, c) = s.add_client(&owner, "permanent", 1..=20).await;
    let device = support::client_id(&c);
    let path = format!("/v1/users/localhost/{}/prekeys/{device}", owner.id);
    let mut claimers = Vec::new();
    for email in ["cl1@example.com", "cl2@example.com"] {
        let claimer = s.register(email).await;
        s.connect_users(&claimer, &owner).await;
        claimers.push(claimer);
    }
    let id_of = |v: &serde_json::Value| v["prekey"]["id"].as_u64();
    for _ in 0..2 {
        let (st, v) = s.get(&path, &claimers[0].token).await;
        assert_eq!(st, 200);
        assert_ne!(id_of(&v), Some(65535), "a one-time prekey");
    }
    let (st, v) = s.get(&path, &claimers[0].token).await;
    assert_eq!((st.as_u16(), id_of(&v)), (200, Some(65535)), "{v}");
    let many = json!({"localhost": {owner.id.to_string(): [device.to_string()]}});
    let (st, v) = s
        .post(
            "/v1/users/list-prekeys",
            Some(&claimers[0].token),
            many.clone(),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["localhost"][owner.id.to_string()][device.to_string()]["id"],
        65535
    );
    let (_, count) = s
        .get(&format!("/v1/clients/{device}/prekeys"), &owner.token)
        .await;
    assert_eq!(count["count"], 18, "two taken, no more");
    let (st, v) = s
        .post("/v1/users/list-prekeys", Some(&claimers[1].token), many)
        .await;
    assert_eq!(st, 200, "another claimer: {v}");
    assert_ne!(
        v["localhost"][owner.id.to_string()][device.to_string()]["id"],
        65535
    );
}
