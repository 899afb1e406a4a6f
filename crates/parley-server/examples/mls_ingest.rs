//! Load generator: how fast a running `parley-server` takes messages into one
//! large conversation in MLS (one ciphertext per message, stored once)
//! against the same conversation in Proteus (one ciphertext per device).
//!
//! ```sh
//! printf '[limits]\nper_account = 1000000\nper_address = 1000000\nprekey_claims = 1000000\n' > /tmp/ingest.toml
//! cargo run --release -p parley-server -- --data-dir /tmp/pi --config /tmp/ingest.toml &
//! cargo run --release -p parley-server --example mls_ingest -- --data-dir /tmp/pi --devices 500
//! ```
//! Registers `--devices` users of one device each, connects them to the
//! first, puts them all into an MLS group (one commit from the first, through
//! the key package directory) and into a Proteus group, then for `--seconds`
//! each posts messages from the first user with `--concurrency` requests in
//! flight: the messages per second each protocol takes, and the ratio.

#![allow(clippy::print_stdout, reason = "a tool that prints its report")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Parser;
use mls_rs::{ExtensionList, MlsMessage};
use parley_api::{ClientId, UserId};
use parley_mls::delivery::CommitBundle;
use parley_mls::{CipherSuite, DeviceIdentity, DeviceKeys};
use serde_json::json;

mod common;
use common::{connect, register};

#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    server: common::Server,
    /// Devices in the conversation (one per user).
    #[arg(long, default_value_t = 500)]
    devices: usize,
    /// Seconds per protocol.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Bytes of text per message.
    #[arg(long, default_value_t = 100)]
    size: usize,
}

struct Device {
    user: UserId,
    client: ClientId,
    token: String,
    keys: DeviceKeys,
}

const LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

async fn device(http: &reqwest::Client, a: &Args, email: &str) -> anyhow::Result<Device> {
    let url = &a.server.url;
    let token = register(http, url, &a.server.data_dir, email).await?;
    let client = common::add_device(http, url, &token.access_token).await?;
    let identity = DeviceIdentity {
        user: token.user,
        client,
        domain: "localhost".into(),
    };
    let keys = DeviceKeys::generate(identity, CipherSuite::DEFAULT)?;
    let scheme = CipherSuite::DEFAULT
        .signature_scheme()
        .context("a scheme")?;
    http.put(format!("{url}/v1/clients/{client}/mls-public-keys"))
        .bearer_auth(&token.access_token)
        .json(&json!({"mls_public_keys": {scheme.name: B64.encode(keys.public_key())}}))
        .send()
        .await?
        .error_for_status()?;
    Ok(Device {
        user: token.user,
        client,
        token: token.access_token,
        keys,
    })
}

/// Posts `bodies` (each in turn, again from the first when all went; from
/// `concurrency` tasks) for `seconds`: messages accepted per second.
async fn measure(
    http: &reqwest::Client, a: &Args, url: String, token: &str, content_type: &'static str,
    bodies: Arc<Vec<Vec<u8>>>,
) -> anyhow::Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed, next) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (http, url, token, bodies) =
            (http.clone(), url.clone(), token.to_owned(), bodies.clone());
        let (stop, sent, failed, next) = (stop.clone(), sent.clone(), failed.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = usize::try_from(next.fetch_add(1, Ordering::Relaxed)).unwrap_or(0);
                let body = &bodies[n % bodies.len()];
                let ok = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", content_type)
                    .body(body.clone())
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 201);
                if ok { &sent } else { &failed }.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for t in tasks {
        t.await?;
    }
    if failed.load(Ordering::Relaxed) > 0 {
        println!("  ({} posts failed)", failed.load(Ordering::Relaxed));
    }
    Ok(sent.load(Ordering::Relaxed) as f64 / elapsed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let http = common::http(a.concurrency)?;
    let url = a.server.url.clone();
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    println!("registering {} devices", a.devices);
    let mut devices = Vec::with_capacity(a.devices);
    for i in 0..a.devices {
        devices.push(device(&http, &a, &format!("ingest-{run}-{i}@example.com")).await?);
    }
    let first = &devices[0];
    for d in &devices[1..] {
        connect(&http, &url, (first.user, &first.token), (d.user, &d.token)).await?;
    }
    // The MLS group: the first device adds everyone with key packages the
    // others published (generated here for them: they never decrypt).
    let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp())?;
    for d in &devices[1..] {
        let packages: Vec<String> = d
            .keys
            .key_packages(1, now, LIFETIME)?
            .iter()
            .map(|p| B64.encode(p))
            .collect();
        http.post(format!("{url}/v1/mls/key-packages/self/{}", d.client))
            .bearer_auth(&d.token)
            .json(&json!({"key_packages": packages}))
            .send()
            .await?
            .error_for_status()?;
    }
    let conv: serde_json::Value = http
        .post(format!("{url}/v1/conversations"))
        .bearer_auth(&first.token)
        .json(&json!({"name": "ingest", "protocol": "mls"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let group_id = B64.decode(conv["group_id"].as_str().context("a group id")?)?;
    let creator = first.keys.member(LIFETIME);
    let mut group =
        creator.create_group_with_id(group_id, ExtensionList::new(), ExtensionList::new(), None)?;
    let mut builder = group.commit_builder();
    for d in &devices[1..] {
        let claimed: serde_json::Value = http
            .post(format!(
                "{url}/v1/mls/key-packages/claim/localhost/{}",
                d.user
            ))
            .bearer_auth(&first.token)
            .json(&json!({}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let kp = claimed["key_packages"][0]["key_package"]
            .as_str()
            .context("a key package")?;
        builder = builder.add_member(MlsMessage::from_bytes(&B64.decode(kp)?)?)?;
    }
    let out = builder.build()?;
    let bundle = CommitBundle {
        commit: out.commit_message.to_bytes()?,
        welcome: out
            .welcome_messages
            .first()
            .map(|w| w.to_bytes().map(parley_mls::delivery::WelcomeBytes))
            .transpose()?,
        group_info: out
            .external_commit_group_info
            .as_ref()
            .context("group info")?
            .to_bytes()?,
    }
    .encode();
    println!(
        "commit bundle adding {}: {} KiB",
        a.devices - 1,
        bundle.len() / 1024
    );
    http.post(format!(
        "{url}/v1/mls/commit-bundles?client={}",
        first.client
    ))
    .bearer_auth(&first.token)
    .header("content-type", "message/mls")
    .body(bundle)
    .send()
    .await?
    .error_for_status()?;
    group.apply_pending_commit()?;
    let text = "x".repeat(a.size);
    let limit = 50_000;
    let mls: Vec<Vec<u8>> = (0..limit)
        .map(|_| {
            group
                .encrypt_application_message(text.as_bytes(), Vec::new())
                .and_then(|m| m.to_bytes())
        })
        .collect::<Result<_, _>>()?;
    let mls_rate = measure(
        &http,
        &a,
        format!("{url}/v1/mls/messages?client={}", first.client),
        &first.token,
        "message/mls",
        Arc::new(mls),
    )
    .await?;
    println!(
        "MLS:     {mls_rate:.0} messages/s into {} devices",
        a.devices
    );

    // The same users in a Proteus group: one ciphertext per device.
    let users: Vec<_> = devices[1..]
        .iter()
        .map(|d| json!({"id": d.user, "domain": "localhost"}))
        .collect();
    let conv: serde_json::Value = http
        .post(format!("{url}/v1/conversations"))
        .bearer_auth(&first.token)
        .json(&json!({"name": "ingest", "users": users}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = conv["id"]["id"].as_str().context("an id")?.to_owned();
    // A Proteus ciphertext of the same text is about as long as an MLS one.
    let ciphertext = B64.encode(vec![7u8; a.size + 90]);
    let mut recipients = serde_json::Map::new();
    for d in &devices[1..] {
        recipients.insert(
            d.user.to_string(),
            json!({ d.client.to_string(): ciphertext }),
        );
    }
    let body = serde_json::to_vec(
        &json!({"sender": first.client, "recipients": {"localhost": recipients}}),
    )?;
    let proteus = Arc::new(vec![body]);
    let proteus_rate = measure(
        &http,
        &a,
        format!("{url}/v1/conversations/localhost/{id}/proteus/messages"),
        &first.token,
        "application/json",
        proteus,
    )
    .await?;
    println!(
        "Proteus: {proteus_rate:.0} messages/s into {} devices",
        a.devices
    );
    println!(
        "MLS / Proteus: {:.1}x",
        mls_rate / proteus_rate.max(f64::MIN_POSITIVE)
    );
    Ok(())
}
