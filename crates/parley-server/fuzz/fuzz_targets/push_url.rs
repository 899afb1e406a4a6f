//! Push endpoints a device registers: any text is refused or accepted
//! without a panic; an accepted one is HTTPS (unless http is allowed) and
//! never names an internal address literally.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_server::push::{check_endpoint, is_internal};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for allow_http in [false, true] {
        if check_endpoint(text, allow_http).is_ok() {
            let url = url::Url::parse(text).expect("an accepted endpoint is a URL");
            assert!(allow_http || url.scheme() == "https", "{text}");
            if let Some(url::Host::Ipv4(ip)) = url.host() {
                assert!(!is_internal(ip.into()), "{text}");
            }
            if let Some(url::Host::Ipv6(ip)) = url.host() {
                assert!(!is_internal(ip.into()), "{text}");
            }
        }
    }
});
