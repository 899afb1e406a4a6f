//! Hostile load against a running `parley-server`, with the server's memory:
//! the denial-of-service findings of the adversarial review, measured.
//!
//! ```sh
//! printf '[limits]\nper_account = 1000000\nper_address = 1000000\n' > /tmp/abuse.toml
//! cargo run --release -p parley-server -- --data-dir /tmp/pa --config /tmp/abuse.toml &
//! cargo run --release -p parley-server --example abuse -- --data-dir /tmp/pa \
//!     --server-pid "$(pgrep -f 'parley-server --data-dir /tmp/pa')"
//! ```
//! - **logins**: many logins at once for addresses nobody has (each still costs
//!   a password hash): the answers, and the server's peak memory.
//! - **idle**: many connections that send nothing, then one normal request:
//!   its latency, and how many idle ones the server has closed a little after
//!   its header deadline.
//! - **group**: a group created with many members: the bytes its event puts in
//!   each member's queue, and so in all.
//! - **pages**: a queue of large events read by many clients at once: the
//!   largest page and the server's peak memory.

#![allow(clippy::print_stdout, reason = "a tool that prints its report")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use clap::Parser;
use serde_json::json;

mod common;
use common::{PASSWORD, connect, memory_kib, register};

#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    server: common::Server,
    /// Logins at once.
    #[arg(long, default_value_t = 50)]
    logins: usize,
    /// Idle connections.
    #[arg(long, default_value_t = 1100)]
    idle: usize,
    /// Seconds the server gives a connection for its headers (its
    /// `header_timeout_seconds`).
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Members of the group.
    #[arg(long, default_value_t = 150)]
    members: usize,
    /// Readers of the large queue at once.
    #[arg(long, default_value_t = 12)]
    readers: usize,
}

/// Runs `work` while sampling the server's resident memory every 10 ms;
/// returns its result and the highest sample, in MiB.
async fn peak_during<T>(pid: u32, work: impl Future<Output = T>) -> (T, f64) {
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = memory_kib(pid, "VmRSS:") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let out = work.await;
    done.store(true, Ordering::Relaxed);
    sampler.await.ok();
    (out, peak.load(Ordering::Relaxed) as f64 / 1024.0)
}

fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    Ok(memory_kib(pid, "VmRSS:").context("reading the server's memory")? as f64 / 1024.0)
}

impl Args {
    /// The server's process id: every measurement here reads its memory.
    fn pid(&self) -> anyhow::Result<u32> {
        self.server
            .pid
            .context("the abuse run reads the server's memory: give --server-pid")
    }
}

async fn logins(http: &reqwest::Client, a: &Args) -> anyhow::Result<()> {
    let before = rss_mib(a.pid()?)?;
    let started = Instant::now();
    let (answers, peak) = peak_during(a.pid()?, async {
        let tasks: Vec<_> = (0..a.logins)
            .map(|i| {
                let (http, url) = (http.clone(), a.server.url.clone());
                tokio::spawn(async move {
                    let body =
                        json!({"email": format!("nobody-{i}@load.example"), "password": PASSWORD});
                    http.post(format!("{url}/v1/login"))
                        .json(&body)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                })
            })
            .collect();
        let mut answers = std::collections::BTreeMap::<u16, usize>::new();
        for t in tasks {
            *answers.entry(t.await.unwrap_or(0)).or_default() += 1;
        }
        answers
    })
    .await;
    println!(
        "logins: {} at once for unknown addresses in {:.1} s: answers {answers:?}; server RSS {before:.0} MiB before, peak {peak:.0} MiB",
        a.logins,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn idle(http: &reqwest::Client, a: &Args) -> anyhow::Result<()> {
    let addr = a
        .server
        .url
        .strip_prefix("http://")
        .context("the idle test speaks plain http")?
        .to_owned();
    let before = rss_mib(a.pid()?)?;
    let mut open = Vec::with_capacity(a.idle);
    for _ in 0..a.idle {
        match tokio::net::TcpStream::connect(&addr).await {
            Ok(c) => open.push(c),
            Err(e) => {
                println!("idle: the client could open only {} ({e})", open.len());
                break;
            }
        }
    }
    let held = rss_mib(a.pid()?)?;
    let t = Instant::now();
    let status = http
        .get(format!("{}/v1/openapi.json", a.server.url))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map(|r| r.status().as_u16());
    let latency = t.elapsed();
    tokio::time::sleep(Duration::from_secs(a.header_timeout + 2)).await;
    let mut closed = 0;
    for c in &open {
        let mut buf = [0u8; 1];
        // A closed connection reads end-of-file at once.
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(5), c.peek(&mut buf)).await {
            closed += 1;
        }
    }
    println!(
        "idle: {} connections sending nothing; a normal request meanwhile: {status:?} in {:.1} ms; server RSS {before:.0} -> {held:.0} MiB; after {} s, {closed} of them closed by the server",
        open.len(),
        latency.as_secs_f64() * 1e3,
        a.header_timeout + 2
    );
    Ok(())
}

async fn group(http: &reqwest::Client, a: &Args, run: &str) -> anyhow::Result<()> {
    let creator = register(
        http,
        &a.server.url,
        &a.server.data_dir,
        &format!("creator-{run}@load.example"),
    )
    .await?;
    let mut users = Vec::new();
    for i in 0..a.members.saturating_sub(1) {
        let u = register(
            http,
            &a.server.url,
            &a.server.data_dir,
            &format!("member-{run}-{i}@load.example"),
        )
        .await?;
        connect(
            http,
            &a.server.url,
            (creator.user, &creator.access_token),
            (u.user, &u.access_token),
        )
        .await?;
        users.push(u);
    }
    // One device for the first member, to read its queue.
    let reader = &users.first().context("at least two members")?;
    let key = json!({"id": 65535, "key": "cHJla2V5"});
    let device: serde_json::Value = http
        .post(format!("{}/v1/clients", a.server.url))
        .bearer_auth(&reader.access_token)
        .json(&json!({"type": "permanent", "class": "desktop", "password": PASSWORD, "prekeys": [], "last_prekey": key}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let device_id = device["id"].as_str().context("device id")?.to_owned();
    let body = json!({"name": "big", "users": users.iter().map(|u| json!({"id": u.user, "domain": "localhost"})).collect::<Vec<_>>()});
    let request_bytes = body.to_string().len();
    http.post(format!("{}/v1/conversations", a.server.url))
        .bearer_auth(&creator.access_token)
        .json(&body)
        .send()
        .await?
        .error_for_status()?;
    let page: serde_json::Value = http
        .get(format!(
            "{}/v1/notifications?client={device_id}&size=1000",
            a.server.url
        ))
        .bearer_auth(&reader.access_token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let event_bytes = page["notifications"]
        .as_array()
        .context("events")?
        .iter()
        .find(|e| e["payload"]["type"] == "conversation.create")
        .context("the create event")?["payload"]
        .to_string()
        .len();
    println!(
        "group: {} members from a {:.1} KiB request: the create event is {event_bytes} bytes per device, {:.1} KiB over one device each; at 500 members x 8 devices {:.1} MiB",
        a.members,
        request_bytes as f64 / 1024.0,
        (event_bytes * a.members) as f64 / 1024.0,
        (event_bytes * 4000) as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

async fn pages(http: &reqwest::Client, a: &Args, run: &str) -> anyhow::Result<()> {
    let u = register(
        http,
        &a.server.url,
        &a.server.data_dir,
        &format!("pages-{run}@load.example"),
    )
    .await?;
    let mut devices = Vec::new();
    for n in 0..2 {
        let key = json!({"id": 65535, "key": "cHJla2V5"});
        let d: serde_json::Value = http
            .post(format!("{}/v1/clients", a.server.url))
            .bearer_auth(&u.access_token)
            .json(&json!({"type": "permanent", "class": "desktop", "password": PASSWORD, "prekeys": [], "last_prekey": key, "label": format!("d{n}")}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        devices.push(d["id"].as_str().context("device id")?.to_owned());
    }
    let conv: serde_json::Value = http
        .post(format!("{}/v1/conversations", a.server.url))
        .bearer_auth(&u.access_token)
        .json(&json!({"name": "notes", "users": []}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let conv = conv["id"]["id"].as_str().context("conversation id")?;
    // 180 events of 240 KiB: 42 MiB in one device's queue.
    let big = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 180 * 1024]);
    for _ in 0..180 {
        http.post(format!(
            "{}/v1/conversations/localhost/{conv}/proteus/messages",
            a.server.url
        ))
        .bearer_auth(&u.access_token)
        .json(&json!({"sender": devices[1], "recipients": {"localhost": {u.user.to_string(): {devices[0].clone(): big}}}}))
        .send()
        .await?
        .error_for_status()?;
    }
    let before = rss_mib(a.pid()?)?;
    let (largest, peak) = peak_during(a.pid()?, async {
        let tasks: Vec<_> = (0..a.readers)
            .map(|_| {
                let (http, url, token, device) = (
                    http.clone(),
                    a.server.url.clone(),
                    u.access_token.clone(),
                    devices[0].clone(),
                );
                tokio::spawn(async move {
                    http.get(format!("{url}/v1/notifications?client={device}&size=1000"))
                        .bearer_auth(token)
                        .send()
                        .await
                        .ok()?
                        .bytes()
                        .await
                        .ok()
                        .map(|b| b.len())
                })
            })
            .collect();
        let mut largest = 0;
        for t in tasks {
            largest = largest.max(t.await.ok().flatten().unwrap_or(0));
        }
        largest
    })
    .await;
    println!(
        "pages: {} readers at once of a 42 MiB queue: largest page {:.2} MiB; server RSS {before:.0} MiB before, peak {peak:.0} MiB",
        a.readers,
        largest as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::install_tls();
    let a = Args::parse();
    let http = reqwest::Client::new();
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    logins(&http, &a).await?;
    idle(&http, &a).await?;
    group(&http, &a, &run).await?;
    pages(&http, &a, &run).await?;
    Ok(())
}
