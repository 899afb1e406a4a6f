//! MLS: devices' signature keys and the key package directory.

use super::*;

fn package(u: &User, client: u64, reference: u8, suite: u16, not_after: i64) -> KeyPackageRecord {
    KeyPackageRecord {
        reference: vec![reference; 32],
        user: u.id,
        client: ClientId(client),
        suite,
        data: vec![reference, 0xff],
        not_after,
    }
}

pub(super) async fn mls_directory(s: &dyn Store) {
    let u = user("mls@example.com");
    s.create_user(&u).await.expect("create");
    for id in [1, 2, 3] {
        s.add_client(
            &client(&u, id, ClientType::Permanent),
            &prekeys([65535]),
            8,
            QUIET,
        )
        .await
        .expect("add");
    }
    // Signature keys: set once per scheme.
    s.set_mls_public_key(u.id, ClientId(1), 0x0807, b"ed25519 key")
        .await
        .expect("set");
    s.set_mls_public_key(u.id, ClientId(1), 0x0807, b"ed25519 key")
        .await
        .expect("the same key again changes nothing");
    assert!(matches!(
        s.set_mls_public_key(u.id, ClientId(1), 0x0807, b"another")
            .await,
        Err(StoreError::Conflict("mls-public-key"))
    ));
    s.set_mls_public_key(u.id, ClientId(1), 0x0403, b"p256 key")
        .await
        .expect("another scheme");
    assert!(matches!(
        s.set_mls_public_key(u.id, ClientId(9), 0x0807, b"k").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        s.mls_public_keys(u.id, ClientId(1)).await.expect("keys"),
        [
            (0x0403, b"p256 key".to_vec()),
            (0x0807, b"ed25519 key".to_vec())
        ]
    );

    // Key packages: all or none.
    s.add_key_packages(&[
        package(&u, 1, 10, 2, 500),
        package(&u, 1, 11, 2, 300),
        package(&u, 1, 12, 1, 500),
        package(&u, 2, 20, 2, 500),
        package(&u, 2, 21, 2, 50),
    ])
    .await
    .expect("add");
    assert!(matches!(
        s.add_key_packages(&[package(&u, 3, 30, 2, 500), package(&u, 1, 10, 2, 500)])
            .await,
        Err(StoreError::Conflict("key-package"))
    ));
    assert!(matches!(
        s.add_key_packages(&[package(&u, 3, 31, 2, 500), package(&u, 9, 90, 2, 500)])
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        s.count_key_packages(u.id, ClientId(3), 2, 100)
            .await
            .expect("count"),
        0,
        "a refused batch leaves nothing"
    );
    assert_eq!(
        s.count_key_packages(u.id, ClientId(1), 2, 100)
            .await
            .expect("count"),
        2
    );
    assert_eq!(
        s.count_key_packages(u.id, ClientId(2), 2, 100)
            .await
            .expect("count"),
        1,
        "one expired"
    );
    assert_eq!(
        s.count_key_packages(u.id, ClientId(1), 1, 100)
            .await
            .expect("count"),
        1
    );

    // Claims: one per device, the one expiring first, each handed out once.
    let first = s
        .claim_key_packages(u.id, 2, None, 100)
        .await
        .expect("claim");
    assert_eq!(
        first,
        [package(&u, 1, 11, 2, 300), package(&u, 2, 20, 2, 500)]
    );
    let second = s
        .claim_key_packages(u.id, 2, Some(ClientId(2)), 100)
        .await
        .expect("claim");
    assert_eq!(
        second,
        [package(&u, 1, 10, 2, 500)],
        "the caller's own device skipped"
    );
    assert!(
        s.claim_key_packages(u.id, 2, None, 100)
            .await
            .expect("claim")
            .is_empty()
    );

    // Deleting: only the device's own.
    assert_eq!(
        s.delete_key_packages(u.id, ClientId(2), &[vec![12; 32]])
            .await
            .expect("delete"),
        0,
        "another device's package stays"
    );
    assert_eq!(
        s.delete_key_packages(u.id, ClientId(1), &[vec![12; 32], vec![99; 32]])
            .await
            .expect("delete"),
        1
    );
    assert_eq!(
        s.count_key_packages(u.id, ClientId(1), 1, 100)
            .await
            .expect("count"),
        0
    );

    // A device's keys and packages go with it.
    s.add_key_packages(&[package(&u, 3, 32, 2, 500)])
        .await
        .expect("add");
    s.set_mls_public_key(u.id, ClientId(3), 0x0807, b"k3")
        .await
        .expect("set");
    s.delete_client(u.id, ClientId(3), QUIET)
        .await
        .expect("delete device");
    assert!(
        s.mls_public_keys(u.id, ClientId(3))
            .await
            .expect("keys")
            .is_empty()
    );
    assert!(
        s.claim_key_packages(u.id, 2, None, 100)
            .await
            .expect("claim")
            .is_empty()
    );
    s.add_key_packages(&[package(&u, 1, 32, 2, 500)])
        .await
        .expect("its reference is free again");
}

/// Claims at once never hand one key package to two claimers, and every
/// package is handed out.
pub(super) async fn concurrent_key_package_claims(s: Arc<dyn Store>) {
    const PACKAGES: u8 = 40;
    const CLAIMS: usize = 64;
    let u = user("kp-race@example.com");
    s.create_user(&u).await.expect("create");
    s.add_client(
        &client(&u, 1, ClientType::Permanent),
        &prekeys([65535]),
        8,
        QUIET,
    )
    .await
    .expect("add");
    let packages: Vec<_> = (0..PACKAGES).map(|r| package(&u, 1, r, 2, 500)).collect();
    s.add_key_packages(&packages).await.expect("add");
    let tasks: Vec<_> = (0..CLAIMS)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.claim_key_packages(u.id, 2, None, 100).await })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in tasks {
        for p in t.await.expect("task").expect("claim") {
            assert!(seen.insert(p.reference.clone()), "handed out twice: {p:?}");
        }
    }
    assert_eq!(
        seen.len(),
        usize::from(PACKAGES),
        "every package handed out once"
    );
}
