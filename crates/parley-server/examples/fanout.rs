//! Load generator for message fan-out against a running `parley-server`.
//!
//! Measures, in one run on one machine:
//! - the disk's fdatasync rate in the server's data directory (the durability limit),
//! - a bare WebSocket broadcast loop on loopback (the live fan-out limit),
//! - for each conversation shape (`members x conversations`), with every device
//!   connected by WebSocket: messages per second accepted, deliveries per second
//!   received live, and p50/p99 send-to-receive latency,
//! - the server's memory per idle WebSocket at each `--idle` count (its RSS, read
//!   from `/proc/<server-pid>/status`).
//!
//! ```sh
//! cargo run --release -p parley-server -- --data-dir /tmp/pd --config load.toml &
//! cargo run --release -p parley-server --example fanout -- --data-dir /tmp/pd \
//!     --server-pid $! --shapes 2x1,2x16,50x1 --idle 1000,10000
//! ```
//! The server's attempt limits must allow registering the users (`[limits]`).

#![allow(clippy::print_stdout, reason = "a tool that prints its report")]

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use parley_api::ClientId;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    server: common::Server,
    /// Conversation shapes: `members x conversations`, comma-separated.
    #[arg(long, default_value = "2x1,2x16,50x1", value_delimiter = ',')]
    shapes: Vec<String>,
    /// Sends in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Idle WebSocket counts to measure memory at.
    #[arg(long, default_value = "1000,10000", value_delimiter = ',')]
    idle: Vec<usize>,
}

mod common;
use common::{connect, register};

/// The clock every latency is measured on (senders and receivers share it).
fn since_start() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn small_socket() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
}

struct Device {
    user: parley_api::UserId,
    client: ClientId,
    token: String,
}

async fn device(http: &reqwest::Client, a: &Args, email: &str) -> anyhow::Result<Device> {
    let token = register(http, &a.server.url, &a.server.data_dir, email).await?;
    let client = common::add_device(http, &a.server.url, &token.access_token).await?;
    Ok(Device {
        user: token.user,
        client,
        token: token.access_token,
    })
}

async fn open_socket(
    a: &Args, d: &Device,
) -> anyhow::Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
> {
    let url = format!(
        "{}/v1/await?client={}&access_token={}",
        a.server.url.replace("http", "ws"),
        d.client,
        d.token
    );
    let (ws, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(small_socket()), false).await?;
    Ok(ws)
}

/// Latencies in microseconds and counts, shared by receivers.
#[derive(Default)]
struct Tally {
    latencies: Mutex<Vec<u64>>,
    received: AtomicU64,
}

/// Reads the send time out of a message frame without parsing the whole event.
fn sent_at(frame: &str) -> Option<u64> {
    let at = frame.find("\"text\":\"")? + 8;
    let end = at + frame[at..].find('"')?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&frame[at..end])
        .ok()?;
    std::str::from_utf8(&bytes)
        .ok()?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

fn pct(v: &[u64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i] as f64 / 1e3
}

struct ShapeResult {
    messages_per_s: f64,
    deliveries_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn run_shape(
    http: &reqwest::Client, a: &Args, run: &str, members: usize, conversations: usize,
) -> anyhow::Result<ShapeResult> {
    // Users and their conversations.
    let mut convs: Vec<(uuid::Uuid, Arc<Vec<Device>>)> = Vec::new();
    for c in 0..conversations {
        let mut devices = Vec::new();
        for m in 0..members {
            devices.push(
                device(
                    http,
                    a,
                    &format!("{run}-{members}x{conversations}-{c}-{m}@load.example"),
                )
                .await?,
            );
        }
        for d in &devices[1..] {
            connect(
                http,
                &a.server.url,
                (devices[0].user, &devices[0].token),
                (d.user, &d.token),
            )
            .await?;
        }
        let users: Vec<_> = devices[1..]
            .iter()
            .map(|d| json!({"id": d.user, "domain": "localhost"}))
            .collect();
        let conv: serde_json::Value = http
            .post(format!("{}/v1/conversations", a.server.url))
            .bearer_auth(&devices[0].token)
            .json(&json!({"name": "load", "users": users}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = conv["id"]["id"]
            .as_str()
            .context("conversation id")?
            .parse()?;
        convs.push((id, Arc::new(devices)));
    }
    // Every device connected; receivers record latency of message frames.
    let tally = Arc::new(Tally::default());
    let measuring = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for (_, devices) in &convs {
        for d in devices.iter() {
            let mut ws = open_socket(a, d).await?;
            let (tally, measuring) = (tally.clone(), measuring.clone());
            readers.push(tokio::spawn(async move {
                while let Some(Ok(frame)) = ws.next().await {
                    if let Message::Text(text) = frame
                        && let Some(sent) = sent_at(&text)
                        && measuring.load(Ordering::Relaxed)
                    {
                        let latency = since_start().saturating_sub(sent);
                        tally.latencies.lock().expect("not poisoned").push(latency);
                        tally.received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    // Senders: each picks conversations and members round robin.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    let convs = Arc::new(convs);
    for task in 0..a.concurrency {
        let (http, url, convs) = (http.clone(), a.server.url.clone(), convs.clone());
        let (stop, sent, failed, measuring) = (
            stop.clone(),
            sent.clone(),
            failed.clone(),
            measuring.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mut n = task;
            while !stop.load(Ordering::Relaxed) {
                let (conv, devices) = &convs[n % convs.len()];
                let from = &devices[(n / convs.len()) % devices.len()];
                n += a_prime(task);
                let text = base64::engine::general_purpose::STANDARD.encode(format!(
                    "{} {}",
                    since_start(),
                    "x".repeat(100)
                ));
                let mut recipients = serde_json::Map::new();
                for d in devices.iter().filter(|d| d.user != from.user) {
                    recipients.insert(d.user.to_string(), json!({ d.client.to_string(): text }));
                }
                let body = json!({"sender": from.client, "recipients": {"localhost": recipients}});
                let ok = http
                    .post(format!(
                        "{url}/v1/conversations/localhost/{conv}/proteus/messages"
                    ))
                    .bearer_auth(&from.token)
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 201);
                if measuring.load(Ordering::Relaxed) {
                    if ok { &sent } else { &failed }.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // warm-up
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for r in &readers {
        r.abort();
    }
    for r in readers {
        let _ = r.await;
    }
    if failed.load(Ordering::Relaxed) > 0 {
        println!("  ({} sends failed)", failed.load(Ordering::Relaxed));
    }
    let mut lat = std::mem::take(&mut *tally.latencies.lock().expect("not poisoned"));
    lat.sort_unstable();
    Ok(ShapeResult {
        messages_per_s: sent.load(Ordering::Relaxed) as f64 / elapsed,
        deliveries_per_s: tally.received.load(Ordering::Relaxed) as f64 / elapsed,
        p50_ms: pct(&lat, 0.50),
        p99_ms: pct(&lat, 0.99),
    })
}

/// Spreads each sender task over members and conversations.
fn a_prime(task: usize) -> usize {
    [7, 11, 13, 17, 19, 23, 29, 31][task % 8]
}

/// 8 KiB writes, each followed by fdatasync, for two seconds.
fn fdatasync_rate(dir: &Path) -> anyhow::Result<f64> {
    let path = dir.join("fdatasync.probe");
    let mut f = std::fs::File::create(&path)?;
    let block = vec![0u8; 8192];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        f.write_all(&block)?;
        f.sync_data()?;
        n += 1;
    }
    std::fs::remove_file(&path)?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Frames per second a bare broadcast loop gets to `receivers` loopback WebSockets.
async fn bare_broadcast(receivers: usize, frame_len: usize, seconds: u64) -> anyhow::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let received = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..receivers {
        let received = received.clone();
        let ws = tokio_tungstenite::connect_async_with_config(
            format!("ws://{addr}/"),
            Some(small_socket()),
            false,
        );
        let accept = async {
            let (tcp, _) = listener.accept().await?;
            Ok::<_, anyhow::Error>(tokio_tungstenite::accept_async(tcp).await?)
        };
        let (client, server) = tokio::join!(ws, accept);
        let (_, mut client) = client?.0.split();
        readers.push((
            server?,
            tokio::spawn(async move {
                while let Some(Ok(_)) = client.next().await {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }),
        ));
    }
    let (mut sinks, tasks): (Vec<_>, Vec<_>) = readers.into_iter().unzip();
    let frame = "f".repeat(frame_len);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) {
        for sink in &mut sinks {
            sink.send(Message::Text(frame.as_str().into())).await?;
        }
    }
    let rate = received.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    drop(sinks);
    for t in tasks {
        t.abort();
    }
    Ok(rate)
}

fn rss_kib(pid: u32) -> Option<u64> {
    common::memory_kib(pid, "VmRSS:")
}

async fn idle_memory(http: &reqwest::Client, a: &Args, run: &str, pid: u32) -> anyhow::Result<()> {
    // A device may have 8 sockets open at once: enough devices for the most.
    let most = a.idle.iter().copied().max().unwrap_or(0);
    let devices = {
        let mut v = Vec::new();
        for i in 0..most.div_ceil(8) {
            v.push(device(http, a, &format!("{run}-idle-{i}@load.example")).await?);
        }
        Arc::new(v)
    };
    let mut open = Vec::new();
    for &target in &a.idle {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = rss_kib(pid).context("reading the server's memory")?;
        let already = open.len();
        let mut joins = Vec::new();
        for batch in (already..target).collect::<Vec<_>>().chunks(64) {
            for i in batch {
                let (devices, a_url) = (devices.clone(), a.server.url.clone());
                let d = &devices[i % devices.len()];
                let url = format!(
                    "{}/v1/await?client={}&access_token={}",
                    a_url.replace("http", "ws"),
                    d.client,
                    d.token
                );
                joins.push(tokio::spawn(async move {
                    tokio_tungstenite::connect_async_with_config(url, Some(small_socket()), false)
                        .await
                        .map(|(ws, _)| ws)
                }));
            }
            for j in joins.drain(..) {
                open.push(j.await??);
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss_kib(pid).context("reading the server's memory")?;
        let added = (target - already) as f64;
        println!(
            "idle sockets {target:>6}: server RSS {:.1} MiB, {:.1} KiB per added connection",
            after as f64 / 1024.0,
            (after.saturating_sub(before)) as f64 / added
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    since_start();
    let a = Args::parse();
    let http = common::http(a.concurrency)?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();

    let fsync = fdatasync_rate(&a.server.data_dir)?;
    println!("fdatasync in {}: {fsync:.0}/s", a.server.data_dir.display());
    let broadcast = bare_broadcast(49, 520, 3).await?;
    println!("bare broadcast loop, 49 sockets, 520-byte frames: {broadcast:.0} frames/s");

    for shape in &a.shapes {
        let (m, c) = shape
            .split_once('x')
            .context("a shape is MEMBERSxCONVERSATIONS")?;
        let (members, conversations): (usize, usize) = (m.parse()?, c.parse()?);
        let r = run_shape(&http, &a, &run, members, conversations).await?;
        println!(
            "{members:>3} members x {conversations:>2} conversations: {:>7.0} messages/s, {:>7.0} live deliveries/s ({:.1}x fdatasync, {:.0}% of bare broadcast), latency p50 {:.1} ms, p99 {:.1} ms",
            r.messages_per_s,
            r.deliveries_per_s,
            r.deliveries_per_s / fsync,
            100.0 * r.deliveries_per_s / broadcast,
            r.p50_ms,
            r.p99_ms
        );
    }
    if let Some(pid) = a.server.pid {
        idle_memory(&http, &a, &run, pid).await?;
    }
    Ok(())
}
