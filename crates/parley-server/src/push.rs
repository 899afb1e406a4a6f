//! Push: a content-free wake-up POSTed to a device's endpoint when an event is
//! stored for it and it has no open socket (UnifiedPush-style: the endpoint is a URL
//! the device got from its distributor). The body says nothing but "look"; the device
//! then fetches its queue. FCM and APNs would be other [`PushSender`]s.

use std::time::Duration;

/// The wake-up body: content-free by design.
pub const WAKE_UP_BODY: &str = r#"{"type":"wake-up"}"#;

/// Delivers wake-ups.
#[derive(Clone, Debug)]
pub struct PushSender {
    http: reqwest::Client,
}

/// Why an endpoint is not accepted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadEndpoint(pub String);

impl PushSender {
    /// A sender whose requests give up after 5 seconds.
    pub fn new() -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("setting up the push client: {e}"))?;
        Ok(Self { http })
    }

    /// POSTs one wake-up; failures are logged, never retried (the device catches up
    /// when it next connects).
    pub async fn wake(&self, url: &str) {
        let sent = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("TTL", "86400")
            .header("Urgency", "high")
            .body(WAKE_UP_BODY)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::info!(status = %r.status(), "push endpoint refused a wake-up"),
            Err(e) => tracing::info!(error = %e.without_url(), "push endpoint unreachable"),
        }
    }
}

/// Checks an endpoint a device registers: an absolute `https://` URL of at most 2,048
/// bytes; `http://` only when the operator allows it (`allow_http`, for a push
/// server on the same trusted network).
pub fn check_endpoint(url: &str, allow_http: bool) -> Result<(), BadEndpoint> {
    if url.len() > 2048 {
        return Err(BadEndpoint(
            "the push endpoint is longer than 2048 bytes".into(),
        ));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| BadEndpoint(format!("the push endpoint is not a URL: {e}")))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(BadEndpoint(
                "the push endpoint must be https:// on this server".into(),
            ));
        }
        other => {
            return Err(BadEndpoint(format!(
                "the push endpoint's scheme {other:?} is not https"
            )));
        }
    }
    if parsed.host_str().is_none_or(str::is_empty) || !parsed.username().is_empty() {
        return Err(BadEndpoint(
            "the push endpoint needs a host and no user name".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_https_unless_allowed() {
        assert!(check_endpoint("https://push.example/up/abc", false).is_ok());
        assert!(check_endpoint("http://127.0.0.1:9/up", false).is_err());
        assert!(check_endpoint("http://127.0.0.1:9/up", true).is_ok());
        assert!(check_endpoint("ftp://push.example/", true).is_err());
        assert!(check_endpoint("not a url", true).is_err());
        assert!(check_endpoint("https://user@push.example/", false).is_err());
        let long = format!("https://push.example/{}", "a".repeat(2100));
        assert!(check_endpoint(&long, false).is_err());
    }
}
