//! The MLS directory over HTTP on loopback, on SQLite and PostgreSQL: a
//! device's signature keys, key packages made by mls-rs as a device makes
//! them, the directory's checks (each refusal with its label, nothing stored),
//! counts, claims within a relationship, each key package handed out once.

mod support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use parley_api::{ClientId, UserId};
use parley_mls::{CipherSuite, DeviceIdentity, DeviceKeys, KeyPackageCheck, KeyPackageIn};
use reqwest::Method;
use serde_json::{Value, json};
use support::{TestServer, User, client_id};

on_both_stores!(crate::support::GENEROUS =>
    signature_keys_are_set_once,
    key_packages_are_checked_counted_and_claimed_once,
    a_key_package_of_another_device_or_key_is_refused,
    the_directory_has_limits,
    a_drained_device_is_still_addable_by_its_last_resort,
);

const DAY: u64 = 24 * 3600;

fn label(v: &Value) -> &str {
    v["label"].as_str().unwrap_or_default()
}

/// A user with one device, and that device's MLS keys on `suite`.
async fn device(s: &TestServer, email: &str, suite: CipherSuite) -> (User, ClientId, DeviceKeys) {
    let u = s.register(email).await;
    let (st, v) = s.add_client(&u, "permanent", [1]).await;
    assert_eq!(st, 201, "{v}");
    let client = client_id(&v);
    let keys = DeviceKeys::generate(
        DeviceIdentity {
            user: u.id,
            client,
            domain: "localhost".into(),
        },
        suite,
    )
    .expect("keys");
    (u, client, keys)
}

async fn register_key(
    s: &TestServer, u: &User, client: ClientId, keys: &DeviceKeys,
) -> (u16, Value) {
    let scheme = keys.suite().signature_scheme().expect("a scheme");
    let (st, v, _) = s
        .call(
            Method::PUT,
            &format!("/v1/clients/{client}/mls-public-keys"),
            Some(&u.token),
            Some(json!({"mls_public_keys": {scheme.name: B64.encode(keys.public_key())}})),
        )
        .await;
    (st.as_u16(), v)
}

fn packages(s: &TestServer, keys: &DeviceKeys, n: usize, lifetime: u64) -> Vec<String> {
    let now = u64::try_from(s.running.clock.now()).expect("after 1970");
    keys.key_packages(n, now, Duration::from_secs(lifetime))
        .expect("made")
        .iter()
        .map(|p| B64.encode(p))
        .collect()
}

async fn upload(s: &TestServer, u: &User, client: ClientId, packages: &[String]) -> (u16, Value) {
    let (st, v) = s
        .post(
            &format!("/v1/mls/key-packages/self/{client}"),
            Some(&u.token),
            json!({"key_packages": packages}),
        )
        .await;
    (st.as_u16(), v)
}

async fn count(s: &TestServer, u: &User, client: ClientId, suite: &str) -> u64 {
    let (st, v) = s
        .get(
            &format!("/v1/mls/key-packages/self/{client}/count?ciphersuite={suite}"),
            &u.token,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v["count"].as_u64().expect("a count")
}

async fn claim(s: &TestServer, me: &User, user: UserId, query: &str) -> (u16, Value) {
    let (st, v) = s
        .post(
            &format!("/v1/mls/key-packages/claim/localhost/{user}{query}"),
            Some(&me.token),
            json!({}),
        )
        .await;
    (st.as_u16(), v)
}

async fn signature_keys_are_set_once(s: &TestServer) {
    let (u, client, keys) = device(s, "mls-keys@example.com", CipherSuite::DEFAULT).await;
    assert_eq!(register_key(s, &u, client, &keys).await.0, 200);
    assert_eq!(
        register_key(s, &u, client, &keys).await.0,
        200,
        "the same key again"
    );
    let other = DeviceKeys::generate(
        DeviceIdentity {
            user: u.id,
            client,
            domain: "localhost".into(),
        },
        CipherSuite::DEFAULT,
    )
    .expect("keys");
    let (st, v) = register_key(s, &u, client, &other).await;
    assert_eq!((st, label(&v)), (400, "mls-duplicate-public-key"), "{v}");
    for (body, why) in [
        (
            json!({"mls_public_keys": {"rsa": B64.encode([1; 32])}}),
            "an unknown scheme",
        ),
        (
            json!({"mls_public_keys": {"ed25519": "not base64!"}}),
            "not base64",
        ),
        (
            json!({"mls_public_keys": {"ed25519": B64.encode([1; 31])}}),
            "a short key",
        ),
    ] {
        let (st, v, _) = s
            .call(
                Method::PUT,
                &format!("/v1/clients/{client}/mls-public-keys"),
                Some(&u.token),
                Some(body),
            )
            .await;
        assert_eq!((st.as_u16(), label(&v)), (400, "bad-request"), "{why}: {v}");
    }
    let (st, v, _) = s
        .call(
            Method::PUT,
            "/v1/clients/abcdef/mls-public-keys",
            Some(&u.token),
            Some(json!({"mls_public_keys": {"ed25519": B64.encode([1; 32])}})),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (404, "client-not-found"), "{v}");
}

async fn key_packages_are_checked_counted_and_claimed_once(s: &TestServer) {
    let (alice, a1, alice_keys) = device(s, "mls-alice@example.com", CipherSuite::DEFAULT).await;
    let (bob, b1, bob_keys) = device(s, "mls-bob@example.com", CipherSuite::DEFAULT).await;
    let (st, v) = upload(s, &bob, b1, &packages(s, &bob_keys, 2, 30 * DAY)).await;
    assert_eq!((st, label(&v)), (403, "mls-signature-key-missing"), "{v}");
    assert_eq!(register_key(s, &bob, b1, &bob_keys).await.0, 200);
    assert_eq!(register_key(s, &alice, a1, &alice_keys).await.0, 200);

    let published = packages(s, &bob_keys, 3, 30 * DAY);
    let (st, v) = upload(s, &bob, b1, &published).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(count(s, &bob, b1, "0x0002").await, 3);
    assert_eq!(count(s, &bob, b1, "1").await, 0);
    let (st, v) = upload(s, &bob, b1, &published[..1]).await;
    assert_eq!((st, label(&v)), (400, "mls-duplicate-key-package"), "{v}");

    // Claims need a relationship.
    let (st, v) = claim(s, &alice, bob.id, "").await;
    assert_eq!((st, label(&v)), (403, "not-related"), "{v}");
    s.connect_users(&alice, &bob).await;
    let mut handed = Vec::new();
    for _ in 0..3 {
        let (st, v) = claim(s, &alice, bob.id, "?ciphersuite=0x0002").await;
        assert_eq!(st, 200, "{v}");
        let got = v["key_packages"].as_array().expect("a list");
        assert_eq!(got.len(), 1, "one per device: {v}");
        assert_eq!(got[0]["client"], b1.to_string());
        assert_eq!(got[0]["user"], bob.id.to_string());
        handed.push(got[0]["key_package"].as_str().expect("bytes").to_owned());
    }
    handed.sort();
    let mut expected = published.clone();
    expected.sort();
    assert_eq!(
        handed, expected,
        "each published key package handed out once"
    );
    let (st, v) = claim(s, &alice, bob.id, "").await;
    assert_eq!(
        (st, v["key_packages"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
    assert_eq!(count(s, &bob, b1, "0x0002").await, 0);

    // One's own user: the claiming device is skipped.
    let (st, v) = upload(s, &bob, b1, &packages(s, &bob_keys, 1, DAY)).await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = claim(s, &bob, bob.id, &format!("?skip_own={b1}")).await;
    assert_eq!(
        (st, v["key_packages"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );

    // Withdrawn by reference (as the device computes it).
    let two = packages(s, &bob_keys, 2, DAY);
    assert_eq!(upload(s, &bob, b1, &two).await.0, 201);
    assert_eq!(count(s, &bob, b1, "0x0002").await, 3);
    let bob_device = DeviceIdentity {
        user: bob.id,
        client: b1,
        domain: "localhost".into(),
    };
    let reference = KeyPackageIn(B64.decode(&two[0]).expect("base64"))
        .validate(&KeyPackageCheck {
            device: &bob_device,
            signature_key: Some(bob_keys.public_key()),
            allowed: &CipherSuite::SELECTABLE,
            now: u64::try_from(s.running.clock.now()).expect("after 1970"),
            max_lifetime: 90 * DAY,
        })
        .expect("valid")
        .reference;
    let (st, v, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/mls/key-packages/self/{b1}"),
            Some(&bob.token),
            Some(json!({"key_packages": [B64.encode(&reference)]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(count(s, &bob, b1, "0x0002").await, 2);
    // Another user's device is not counted against, nor withdrawn by, Alice.
    let (st, v, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/mls/key-packages/self/{b1}"),
            Some(&alice.token),
            Some(json!({"key_packages": [B64.encode(&reference)]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(count(s, &bob, b1, "0x0002").await, 2);
    // Expired ones are neither counted nor handed out.
    s.running
        .clock
        .advance(i64::try_from(2 * DAY).expect("small"));
    let token = s.with_cookie("/v1/access", &bob.cookie).await.1["access_token"]
        .as_str()
        .expect("a fresh token")
        .to_owned();
    let (st, v) = s
        .get(
            &format!("/v1/mls/key-packages/self/{b1}/count?ciphersuite=0x0002"),
            &token,
        )
        .await;
    assert_eq!((st.as_u16(), &v["count"]), (200, &json!(0)), "{v}");
    let bob = User { token, ..bob };

    // Bad input: labelled, nothing stored.
    for (body, want) in [
        (json!({"key_packages": []}), "bad-request"),
        (json!({"key_packages": ["not base64!"]}), "bad-request"),
        (
            json!({"key_packages": [B64.encode(b"garbage")]}),
            "mls-protocol-error",
        ),
    ] {
        let (st, v) = s
            .post(
                &format!("/v1/mls/key-packages/self/{b1}"),
                Some(&bob.token),
                body,
            )
            .await;
        assert_eq!((st.as_u16(), label(&v)), (400, want), "{v}");
    }
    let too_long = packages(s, &bob_keys, 1, 365 * DAY);
    let mut batch = packages(s, &bob_keys, 2, DAY);
    batch.extend(too_long);
    let (st, v) = upload(s, &bob, b1, &batch).await;
    assert_eq!((st, label(&v)), (400, "mls-key-package-lifetime"), "{v}");
    assert_eq!(count(s, &bob, b1, "0x0002").await, 0, "all or none");
    let (st, v) = s
        .get(
            &format!("/v1/mls/key-packages/self/{b1}/count?ciphersuite=0x0004"),
            &bob.token,
        )
        .await;
    assert_eq!(
        (st.as_u16(), label(&v)),
        (400, "mls-unsupported-cipher-suite"),
        "{v}"
    );
}

async fn a_key_package_of_another_device_or_key_is_refused(s: &TestServer) {
    let (u, c1, keys) = device(s, "mls-mallory@example.com", CipherSuite::X25519_AES128).await;
    assert_eq!(register_key(s, &u, c1, &keys).await.0, 200);
    // Key packages in the name of another device of the same user.
    let (st, v) = s.add_client(&u, "permanent", [2]).await;
    assert_eq!(st, 201, "{v}");
    let c2 = client_id(&v);
    let as_c2 = DeviceKeys::generate(
        DeviceIdentity {
            user: u.id,
            client: c2,
            domain: "localhost".into(),
        },
        CipherSuite::X25519_AES128,
    )
    .expect("keys");
    let (st, v) = upload(s, &u, c1, &packages(s, &as_c2, 1, DAY)).await;
    assert_eq!((st, label(&v)), (403, "mls-identity-mismatch"), "{v}");
    // The right name, but signed with a key this device did not register.
    let unregistered = DeviceKeys::generate(
        DeviceIdentity {
            user: u.id,
            client: c1,
            domain: "localhost".into(),
        },
        CipherSuite::X25519_AES128,
    )
    .expect("keys");
    let (st, v) = upload(s, &u, c1, &packages(s, &unregistered, 1, DAY)).await;
    assert_eq!((st, label(&v)), (403, "mls-identity-mismatch"), "{v}");
    assert_eq!(count(s, &u, c1, "0x0001").await, 0, "nothing stored");
}

async fn the_directory_has_limits(s: &TestServer) {
    let (u, c1, keys) = device(s, "mls-limits@example.com", CipherSuite::DEFAULT).await;
    assert_eq!(register_key(s, &u, c1, &keys).await.0, 200);
    // At most 512 valid per suite: four full uploads fit, a fifth does not.
    for _ in 0..4 {
        let (st, v) = upload(s, &u, c1, &packages(s, &keys, 128, DAY)).await;
        assert_eq!(st, 201, "{v}");
    }
    let (st, v) = upload(s, &u, c1, &packages(s, &keys, 1, DAY)).await;
    assert_eq!((st, label(&v)), (400, "too-many-key-packages"), "{v}");
    assert_eq!(count(s, &u, c1, "0x0002").await, 512);
    let (st, v) = upload(s, &u, c1, &packages(s, &keys, 129, DAY)).await;
    assert_eq!((st, label(&v)), (400, "bad-request"), "{v}");
    // A key package is small: a large one is refused unread.
    let (st, v) = upload(s, &u, c1, &[B64.encode(vec![0u8; 17 * 1024])]).await;
    assert_eq!((st, label(&v)), (400, "mls-protocol-error"), "{v}");
    // An unknown device, and a token bound to another device.
    let (st, v) = upload(s, &u, ClientId(0xabcdef), &packages(s, &keys, 1, DAY)).await;
    assert_eq!((st, label(&v)), (404, "client-not-found"), "{v}");
    let (st, v) = s.add_client(&u, "permanent", [2]).await;
    assert_eq!(st, 201, "{v}");
    let c2 = client_id(&v);
    let bound = s
        .with_cookie(&format!("/v1/access?client={c2}"), &u.cookie)
        .await
        .1["access_token"]
        .as_str()
        .expect("a token for c2")
        .to_owned();
    let as_c2 = User {
        token: bound,
        ..u.clone()
    };
    let (st, v) = upload(s, &as_c2, c1, &packages(s, &keys, 1, DAY)).await;
    assert_eq!((st, label(&v)), (403, "token-bound"), "{v}");
    // A device-bound token's own device is skipped without asking.
    let c2_keys = DeviceKeys::generate(
        DeviceIdentity {
            user: u.id,
            client: c2,
            domain: "localhost".into(),
        },
        CipherSuite::DEFAULT,
    )
    .expect("keys");
    assert_eq!(register_key(s, &as_c2, c2, &c2_keys).await.0, 200);
    assert_eq!(
        upload(s, &as_c2, c2, &packages(s, &c2_keys, 1, DAY))
            .await
            .0,
        201
    );
    let (st, v) = claim(s, &as_c2, u.id, "").await;
    assert_eq!(st, 200, "{v}");
    let got = v["key_packages"].as_array().expect("a list");
    assert_eq!(
        (got.len(), &got[0]["client"]),
        (1, &json!(c1.to_string())),
        "{v}"
    );
}

/// Claims of one user's key packages by another are limited (here to 2 in
/// five minutes): nobody related can empty a device's directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_limited_per_claimer_and_user() {
    let limits = parley_server::config::Limits {
        prekey_claims: 2,
        ..crate::support::GENEROUS
    };
    let s = TestServer::start(support::Backend::Sqlite, limits)
        .await
        .expect("sqlite always runs");
    let (alice, _, _) = device(&s, "mls-claimer@example.com", CipherSuite::DEFAULT).await;
    let (bob, b1, keys) = device(&s, "mls-claimed@example.com", CipherSuite::DEFAULT).await;
    assert_eq!(register_key(&s, &bob, b1, &keys).await.0, 200);
    assert_eq!(
        upload(&s, &bob, b1, &packages(&s, &keys, 5, DAY)).await.0,
        201
    );
    s.connect_users(&alice, &bob).await;
    for _ in 0..2 {
        assert_eq!(claim(&s, &alice, bob.id, "").await.0, 200);
    }
    let (st, v) = claim(&s, &alice, bob.id, "").await;
    assert_eq!((st, label(&v)), (429, "too-many-requests"), "{v}");
    assert_eq!(count(&s, &bob, b1, "0x0002").await, 3, "the rest stay");
    // One's own devices are not counted.
    for _ in 0..3 {
        assert_eq!(claim(&s, &bob, bob.id, "").await.0, 200);
    }
}

/// A backend that allows fewer suites refuses key packages on the others, and
/// counts on its own default when no suite is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_configured_suites_are_taken() {
    let s = TestServer::start_with(
        support::Backend::Sqlite,
        crate::support::GENEROUS,
        |settings| {
            settings.mls_allowed_suites = vec![CipherSuite::P384_AES256];
            settings.mls_default_suite = CipherSuite::P384_AES256;
        },
    )
    .await
    .expect("sqlite always runs");
    let (u, c1, keys) = device(&s, "mls-config@example.com", CipherSuite::X25519_AES128).await;
    // Devices learn the configuration.
    let (st, v) = s.get("/v1/mls/config", &u.token).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v,
        serde_json::json!({"default_cipher_suite": 7, "allowed_cipher_suites": [7]})
    );
    assert_eq!(register_key(&s, &u, c1, &keys).await.0, 200);
    let (st, v) = upload(&s, &u, c1, &packages(&s, &keys, 1, DAY)).await;
    assert_eq!(
        (st, label(&v)),
        (400, "mls-unsupported-cipher-suite"),
        "{v}"
    );
    let (st, v) = s.add_client(&u, "permanent", [2]).await;
    assert_eq!(st, 201, "{v}");
    let c2 = client_id(&v);
    let p384 = DeviceKeys::generate(
        DeviceIdentity {
            user: u.id,
            client: c2,
            domain: "localhost".into(),
        },
        CipherSuite::P384_AES256,
    )
    .expect("keys");
    assert_eq!(register_key(&s, &u, c2, &p384).await.0, 200);
    assert_eq!(
        upload(&s, &u, c2, &packages(&s, &p384, 2, DAY)).await.0,
        201
    );
    let (st, v) = s
        .get(&format!("/v1/mls/key-packages/self/{c2}/count"), &u.token)
        .await;
    assert_eq!(
        (st.as_u16(), &v["count"]),
        (200, &json!(2)),
        "the default suite: {v}"
    );
}

async fn a_drained_device_is_still_addable_by_its_last_resort(s: &TestServer) {
    let (alice, _, _) = device(s, "mls-adder@example.com", CipherSuite::DEFAULT).await;
    let (bob, b1, keys) = device(s, "mls-drained@example.com", CipherSuite::DEFAULT).await;
    assert_eq!(register_key(s, &bob, b1, &keys).await.0, 200);
    let now = u64::try_from(s.running.clock.now()).expect("after 1970");
    let last = B64.encode(
        keys.last_resort_key_package(now, Duration::from_secs(DAY))
            .expect("made"),
    );
    let mut batch = packages(s, &keys, 1, DAY);
    batch.push(last.clone());
    assert_eq!(upload(s, &bob, b1, &batch).await.0, 201);
    assert_eq!(
        count(s, &bob, b1, "0x0002").await,
        1,
        "the last resort is not counted"
    );
    let (st, v) = upload(s, &bob, b1, &[last.clone(), last.clone()]).await;
    assert_eq!((st, label(&v)), (400, "bad-request"), "two at once: {v}");
    s.connect_users(&alice, &bob).await;
    let (st, v) = claim(s, &alice, bob.id, "").await;
    assert_eq!(
        (st, &v["key_packages"][0]["last_resort"]),
        (200, &json!(false)),
        "{v}"
    );
    for _ in 0..2 {
        let (st, v) = claim(s, &alice, bob.id, "").await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["key_packages"][0]["last_resort"], json!(true), "{v}");
        assert_eq!(v["key_packages"][0]["key_package"], json!(last), "{v}");
    }
}
