//! Push: a content-free wake-up POSTed to a device's endpoint when an event is
//! stored for it and it has no open socket (UnifiedPush-style: the endpoint is a URL
//! the device got from its distributor). The body says nothing but "look"; the device
//! then fetches its queue. FCM and APNs would be other [`PushSender`]s.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
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
    /// A sender whose requests give up after 5 seconds and, unless
    /// `allow_private`, never connect to an internal address, however a name
    /// resolves at the moment of sending (no DNS rebinding).
    pub fn new(allow_private: bool) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PublicOnly { allow_private }))
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

/// Whether an address is one a push must not reach: loopback, private,
/// link-local (cloud metadata lives there), unspecified, shared, multicast or
/// documentation ranges, and IPv4 inside IPv6.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Resolves push hosts and drops internal addresses (unless allowed): checked
/// when the wake-up is sent, not only when the endpoint was registered.
#[derive(Debug)]
struct PublicOnly {
    allow_private: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || !is_internal(a.ip()))
                .collect();
            if found.is_empty() {
                return Err("the push host resolves only to internal addresses".into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Checks where an endpoint leads, for a device registering it: an address
/// literal, or every address its name resolves to now, must not be internal
/// (unless `allow_private`). Sending checks again (see [`PushSender::new`]).
pub async fn check_destination(url: &str, allow_private: bool) -> Result<(), BadEndpoint> {
    if allow_private {
        return Ok(());
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| BadEndpoint(format!("the push endpoint is not a URL: {e}")))?;
    let refused = || BadEndpoint("the push endpoint is on an internal address".into());
    let addresses: Vec<IpAddr> = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
        Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
        Some(url::Host::Domain(name)) => tokio::net::lookup_host((name, 0))
            .await
            .map_err(|_| {
                BadEndpoint(format!(
                    "the push endpoint's host {name:?} does not resolve"
                ))
            })?
            .map(|a| a.ip())
            .collect(),
        None => return Err(refused()),
    };
    if addresses.is_empty() || addresses.into_iter().any(is_internal) {
        return Err(refused());
    }
    Ok(())
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

    #[tokio::test]
    async fn internal_destinations_are_refused() {
        for url in [
            "https://127.0.0.1/up",
            "https://[::1]/up",
            "https://169.254.169.254/latest/meta-data",
            "https://10.1.2.3/",
            "https://192.168.0.1/",
            "https://172.16.5.4/",
            "https://0.0.0.0/",
            "https://2130706433/",
            "https://0x7f000001/",
            "https://[::ffff:127.0.0.1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://100.64.0.1/",
            "https://localhost/up",
        ] {
            assert!(check_destination(url, false).await.is_err(), "{url}");
            assert!(
                check_destination(url, true).await.is_ok(),
                "{url} when allowed"
            );
        }
        assert!(
            check_destination("https://93.184.215.14/up", false)
                .await
                .is_ok()
        );
        assert!(
            check_destination("https://[2606:4700::1111]/up", false)
                .await
                .is_ok()
        );
    }

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
