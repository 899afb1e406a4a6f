//! Load generator for a running `parley-server`: login and prekey-claim throughput.
//!
//! ```sh
//! cargo run --release -p parley-server -- --data-dir /tmp/pd --config load.toml &
//! cargo run --release -p parley-server --example load -- \
//!     --url http://127.0.0.1:8080 --data-dir /tmp/pd --concurrency 32 --seconds 10
//! ```
//! The server's attempt limits must allow the load (`[limits]` in its config,
//! `prekey_claims` included). The
//! data directory is read only for the e-mail outbox, to register the test users.

#![allow(clippy::print_stdout, reason = "a tool that prints its report")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use parley_api::{Client, Prekey};
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    server: common::Server,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

mod common;
use common::{PASSWORD, connect, register};

/// Runs `work` on `concurrency` workers for `seconds`; returns (successes, latencies).
async fn measure<F, Fut>(a: &Args, work: F) -> (u64, Vec<Duration>, Duration)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let work = Arc::new(work);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..a.concurrency)
        .map(|_| {
            let (work, stop) = (work.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut lat) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if work().await {
                        ok += 1;
                        lat.push(t.elapsed());
                    }
                }
                (ok, lat)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut lat) = (0, Vec::new());
    for w in workers {
        let (o, l) = w.await.expect("worker");
        ok += o;
        lat.extend(l);
    }
    lat.sort();
    (ok, lat, started.elapsed())
}

fn report(what: &str, (ok, lat, elapsed): (u64, Vec<Duration>, Duration)) {
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{what}: {ok} in {:.1} s = {:.0}/s; latency p50 {:.1} ms, p99 {:.1} ms",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let http = common::http(a.concurrency)?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let owner_email = format!("owner-{run}@load.example");
    let owner = register(&http, &a.server.url, &a.server.data_dir, &owner_email).await?;
    let claimer = register(
        &http,
        &a.server.url,
        &a.server.data_dir,
        &format!("claimer-{run}@load.example"),
    )
    .await?;
    connect(
        &http,
        &a.server.url,
        (claimer.user, &claimer.access_token),
        (owner.user, &owner.access_token),
    )
    .await?;

    // Logins: scrypt-bound by design.
    let (h, url, email) = (http.clone(), a.server.url.clone(), owner_email.clone());
    let logins = measure(&a, move || {
        let (h, url, email) = (h.clone(), url.clone(), email.clone());
        async move {
            let body = json!({"email": email, "password": PASSWORD});
            h.post(format!("{url}/v1/login"))
                .json(&body)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    report("login", logins);

    // Prekey claims: a device with 65,000 one-time prekeys, claimed concurrently.
    let key = |id: u16| Prekey {
        id,
        key: "cHJla2V5".into(),
    };
    let body = json!({"type": "permanent", "class": "desktop", "password": PASSWORD,
        "prekeys": (0..200).map(key).collect::<Vec<_>>(), "last_prekey": key(65535)});
    let device: Client = http
        .post(format!("{}/v1/clients", a.server.url))
        .bearer_auth(&owner.access_token)
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    for start in (200..65_000u16).step_by(200) {
        let batch: Vec<_> = (start..start.saturating_add(200).min(65_000))
            .map(key)
            .collect();
        http.post(format!("{}/v1/clients/{}/prekeys", a.server.url, device.id))
            .bearer_auth(&owner.access_token)
            .json(&json!({"prekeys": batch}))
            .send()
            .await?
            .error_for_status()?;
    }
    let path = format!(
        "{}/v1/users/localhost/{}/prekeys/{}",
        a.server.url, owner.user, device.id
    );
    let (h, token) = (http.clone(), claimer.access_token.clone());
    let claims = measure(&a, move || {
        let (h, path, token) = (h.clone(), path.clone(), token.clone());
        async move {
            match h.get(path).bearer_auth(token).send().await {
                Ok(r) if r.status().is_success() => r
                    .json::<serde_json::Value>()
                    .await
                    .is_ok_and(|v| v["prekey"]["id"].as_u64() != Some(65535)),
                _ => false,
            }
        }
    })
    .await;
    report("prekey claim (one-time prekeys only)", claims);
    Ok(())
}
