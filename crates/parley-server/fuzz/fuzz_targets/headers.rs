//! Request headers the server parses itself: the `parley` cookie among
//! others in `Cookie`, and `X-Forwarded-For` / `X-Forwarded-Proto` from a
//! trusted proxy. Any bytes: no panic, and a client address is always an
//! address.
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use parley_server::routes::{peer_of, user_token};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert("cookie", value.clone());
    headers.insert("x-forwarded-for", value.clone());
    headers.insert("x-forwarded-proto", value);
    let _ = user_token(&headers);
    let trusted: Vec<ipnet::IpNet> = vec!["127.0.0.0/8".parse().expect("a CIDR range")];
    let direct = Some("127.0.0.1".parse().expect("an address"));
    let peer = peer_of(direct, &headers, false, &trusted);
    assert!(peer.address.parse::<std::net::IpAddr>().is_ok(), "{}", peer.address);
});
