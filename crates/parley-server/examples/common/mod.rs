//! What the load generators share: registering test users against a running
//! server whose e-mail goes to its outbox.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use parley_api::AccessToken;
use serde_json::json;

/// The running server a generator loads: every generator takes these options.
#[derive(clap::Args, Debug)]
pub(crate) struct Server {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
    /// The server's data directory (its e-mail outbox holds the registration codes).
    #[arg(long)]
    pub(crate) data_dir: PathBuf,
    /// The server's process id, to read its memory (for the generators that
    /// report it).
    #[arg(long = "server-pid")]
    pub(crate) pid: Option<u32>,
}

/// What every generator does first: rustls's process-wide provider, which
/// reqwest and tungstenite need.
pub(crate) fn install_tls() {
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
}

/// An HTTP client keeping `connections` idle connections to the server.
#[allow(
    dead_code,
    reason = "each generator includes this module; not all use it"
)]
pub(crate) fn http(connections: usize) -> anyhow::Result<reqwest::Client> {
    install_tls();
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?)
}

/// Adds a permanent device with only its last-resort prekey to the account
/// `token` is of.
#[allow(
    dead_code,
    reason = "each generator includes this module; not all use it"
)]
pub(crate) async fn add_device(
    http: &reqwest::Client, url: &str, token: &str,
) -> anyhow::Result<parley_api::ClientId> {
    let key = json!({"id": 65535, "key": "cHJla2V5"});
    let client: parley_api::Client = http
        .post(format!("{url}/v1/clients"))
        .bearer_auth(token)
        .json(
            &json!({"type": "permanent", "class": "desktop", "password": PASSWORD,
            "prekeys": [], "last_prekey": key}),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(client.id)
}

/// The password every load-test account gets.
pub(crate) const PASSWORD: &str = "Load-test-1!";

/// The newest registration code sent to `email`, from the server's outbox.
fn code_from_outbox(data_dir: &Path, email: &str) -> anyhow::Result<String> {
    for entry in std::fs::read_dir(data_dir.join("outbox")).context("reading the outbox")? {
        let text = std::fs::read_to_string(entry?.path())?;
        if text.contains(&format!("To: {email}"))
            && let Some(at) = text.find("code is ")
        {
            return Ok(text[at + 8..at + 14].to_owned());
        }
    }
    bail!("no code for {email} in the outbox")
}

/// Registers `email` (code by e-mail, then the account) and returns its token.
pub(crate) async fn register(
    http: &reqwest::Client, url: &str, data_dir: &Path, email: &str,
) -> anyhow::Result<AccessToken> {
    http.post(format!("{url}/v1/activate/send"))
        .json(&json!({"email": email}))
        .send()
        .await?
        .error_for_status()?;
    let code = code_from_outbox(data_dir, email)?;
    let body = json!({"name": "Load", "email": email, "email_code": code, "password": PASSWORD});
    Ok(http
        .post(format!("{url}/v1/register"))
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Connects two users, each given as (id, access token): `a` asks, `b`
/// accepts (only connections may share a group, and prekeys are claimed only
/// within a relationship).
pub(crate) async fn connect(
    http: &reqwest::Client, url: &str, a: (parley_api::UserId, &str), b: (parley_api::UserId, &str),
) -> anyhow::Result<()> {
    http.post(format!("{url}/v1/connections/localhost/{}", b.0))
        .bearer_auth(a.1)
        .json(&json!({}))
        .send()
        .await?
        .error_for_status()?;
    http.put(format!("{url}/v1/connections/localhost/{}", a.0))
        .bearer_auth(b.1)
        .json(&json!({"status": "accepted"}))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// A process's memory from `/proc/<pid>/status`: its resident size now
/// (`VmRSS`) or its peak (`VmHWM`), in KiB.
#[allow(
    dead_code,
    reason = "each generator includes this module; not all read memory"
)]
pub(crate) fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
