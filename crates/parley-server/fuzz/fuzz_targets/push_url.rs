//! Push endpoints a device registers: any text is refused or accepted
//! without a panic; an accepted one is HTTPS (unless http is allowed), and one
//! naming an address literally passes the destination check only if that
//! address is not internal.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use parley_server::push::{check_destination, check_endpoint, is_internal};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for allow_http in [false, true] {
        if check_endpoint(text, allow_http).is_err() {
            continue;
        }
        let url = url::Url::parse(text).expect("an accepted endpoint is a URL");
        assert!(allow_http || url.scheme() == "https", "{text}");
        // Only literal addresses: a host name would need the network.
        let ip: std::net::IpAddr = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.into(),
            Some(url::Host::Ipv6(ip)) => ip.into(),
            _ => continue,
        };
        let passed = runtime().block_on(check_destination(text, false)).is_ok();
        assert!(!(passed && is_internal(ip)), "{text} reaches {ip}");
    }
});
