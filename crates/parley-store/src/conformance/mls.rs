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
        last_resort: false,
    }
}

/// The key packages `u`'s device `client` holds on `suite` at `now`.
async fn held(s: &dyn Store, u: &User, client: u64, suite: u16, now: i64) -> u64 {
    s.count_key_packages(u.id, ClientId(client), suite, now)
        .await
        .expect("count")
}

/// One claim of `u`'s key packages on suite 2 at `now`.
async fn claim(
    s: &dyn Store, u: &User, except: Option<ClientId>, now: i64,
) -> Vec<KeyPackageRecord> {
    s.claim_key_packages(u.id, 2, except, now)
        .await
        .expect("claim")
}

fn last_resort(u: &User, client: u64, reference: u8, not_after: i64) -> KeyPackageRecord {
    KeyPackageRecord {
        last_resort: true,
        ..package(u, client, reference, 2, not_after)
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
    // Signature keys: set once per scheme, all or none.
    let key = |k: &[u8]| k.to_vec();
    s.set_mls_public_keys(u.id, ClientId(1), &[(0x0807, key(b"ed25519 key"))])
        .await
        .expect("set");
    s.set_mls_public_keys(u.id, ClientId(1), &[(0x0807, key(b"ed25519 key"))])
        .await
        .expect("the same key again changes nothing");
    assert!(matches!(
        s.set_mls_public_keys(
            u.id,
            ClientId(1),
            &[(0x0403, key(b"p256 key")), (0x0807, key(b"another"))]
        )
        .await,
        Err(StoreError::Conflict("mls-public-key"))
    ));
    assert_eq!(
        s.mls_public_keys(u.id, ClientId(1)).await.expect("keys"),
        [(0x0807, key(b"ed25519 key"))],
        "a refused change stores none of its keys"
    );
    s.set_mls_public_keys(u.id, ClientId(1), &[(0x0403, key(b"p256 key"))])
        .await
        .expect("another scheme");
    assert!(matches!(
        s.set_mls_public_keys(u.id, ClientId(9), &[(0x0807, key(b"k"))])
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        s.mls_public_keys(u.id, ClientId(1)).await.expect("keys"),
        [(0x0403, key(b"p256 key")), (0x0807, key(b"ed25519 key"))]
    );

    // Key packages: all or none.
    s.add_key_packages(
        &[
            package(&u, 1, 10, 2, 500),
            package(&u, 1, 11, 2, 300),
            package(&u, 1, 12, 1, 500),
            package(&u, 2, 20, 2, 500),
            package(&u, 2, 21, 2, 50),
        ],
        40,
        MAX,
    )
    .await
    .expect("add");
    assert!(matches!(
        s.add_key_packages(
            &[package(&u, 3, 30, 2, 500), package(&u, 1, 10, 2, 500)],
            40,
            MAX
        )
        .await,
        Err(StoreError::Conflict("key-package"))
    ));
    assert!(matches!(
        s.add_key_packages(
            &[package(&u, 3, 31, 2, 500), package(&u, 9, 90, 2, 500)],
            40,
            MAX
        )
        .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        held(s, &u, 3, 2, 100).await,
        0,
        "a refused batch leaves nothing"
    );
    assert_eq!(held(s, &u, 1, 2, 100).await, 2);
    assert_eq!(held(s, &u, 2, 2, 100).await, 1, "one expired");
    assert_eq!(held(s, &u, 1, 1, 100).await, 1);

    // Claims: one per device, the one expiring first, each handed out once.
    let first = claim(s, &u, None, 100).await;
    assert_eq!(
        first,
        [package(&u, 1, 11, 2, 300), package(&u, 2, 20, 2, 500)]
    );
    let second = claim(s, &u, Some(ClientId(2)), 100).await;
    assert_eq!(
        second,
        [package(&u, 1, 10, 2, 500)],
        "the caller's own device skipped"
    );
    assert!(claim(s, &u, None, 100).await.is_empty());

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
    assert_eq!(held(s, &u, 1, 1, 100).await, 0);

    // A device's keys and packages go with it.
    s.add_key_packages(&[package(&u, 3, 32, 2, 500)], 100, MAX)
        .await
        .expect("add");
    s.set_mls_public_keys(u.id, ClientId(3), &[(0x0807, key(b"k3"))])
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
    assert!(claim(s, &u, None, 100).await.is_empty());
    s.add_key_packages(&[package(&u, 1, 32, 2, 500)], 100, MAX)
        .await
        .expect("its reference is free again");

    // A device holds at most so many valid ones per suite; an upload deletes
    // its device's expired ones first, and a purge deletes all expired ones.
    s.add_key_packages(
        &[package(&u, 2, 40, 2, 200), package(&u, 2, 41, 2, 600)],
        100,
        MAX,
    )
    .await
    .expect("add");
    assert!(matches!(
        s.add_key_packages(
            &[package(&u, 2, 42, 2, 600), package(&u, 2, 43, 2, 600)],
            100,
            3
        )
        .await,
        Err(StoreError::Limit("key-packages"))
    ));
    assert_eq!(held(s, &u, 2, 2, 100).await, 2);
    s.add_key_packages(
        &[package(&u, 2, 42, 2, 600), package(&u, 2, 43, 2, 600)],
        300,
        3,
    )
    .await
    .expect("room once the expired one is gone");
    assert_eq!(held(s, &u, 2, 2, 300).await, 3);
    assert_eq!(
        s.purge_key_packages(550).await.expect("purged"),
        1,
        "the one at 500"
    );
    assert_eq!(s.purge_key_packages(700).await.expect("purged"), 3);
    assert_eq!(held(s, &u, 2, 2, 0).await, 0);
}

/// A device's last-resort key package: not counted, handed out when no other
/// is left and never used up, replaced by a newer one, gone when it expires.
pub(super) async fn last_resort_key_packages(s: &dyn Store) {
    let u = user("mls-last@example.com");
    s.create_user(&u).await.expect("create");
    s.add_client(
        &client(&u, 1, ClientType::Permanent),
        &prekeys([65535]),
        8,
        QUIET,
    )
    .await
    .expect("add");
    s.add_key_packages(
        &[package(&u, 1, 1, 2, 500), last_resort(&u, 1, 2, 500)],
        100,
        1,
    )
    .await
    .expect("one regular and the last resort fit a limit of one");
    assert_eq!(held(s, &u, 1, 2, 100).await, 1);
    let first = claim(s, &u, None, 100).await;
    assert_eq!(first, [package(&u, 1, 1, 2, 500)]);
    for _ in 0..2 {
        let again = claim(s, &u, None, 100).await;
        assert_eq!(
            again,
            [last_resort(&u, 1, 2, 500)],
            "handed out again, never used up"
        );
    }
    // A newer one replaces it.
    s.add_key_packages(&[last_resort(&u, 1, 3, 600)], 100, 1)
        .await
        .expect("replaced");
    assert_eq!(claim(s, &u, None, 100).await, [last_resort(&u, 1, 3, 600)]);
    assert_eq!(held(s, &u, 1, 2, 100).await, 0);
    // Expired, it goes like any other.
    assert!(claim(s, &u, None, 600).await.is_empty());
    assert_eq!(s.purge_key_packages(600).await.expect("purged"), 1);
}

/// Most key packages a device may hold in these scenarios, unless one says.
const MAX: u64 = 100;

/// Claims at once never hand one key package to two claimers, and none comes
/// back empty while one is left: as many claims as packages, each gets one.
pub(super) async fn concurrent_key_package_claims(s: Arc<dyn Store>) {
    const PACKAGES: u8 = 48;
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
    s.add_key_packages(&packages, 100, MAX).await.expect("add");
    let tasks: Vec<_> = (0..PACKAGES)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.claim_key_packages(u.id, 2, None, 100).await })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in tasks {
        let got = t.await.expect("task").expect("claim");
        assert_eq!(
            got.len(),
            1,
            "a claim came back with {} while some were left",
            got.len()
        );
        assert!(
            seen.insert(got[0].reference.clone()),
            "handed out twice: {:?}",
            got[0]
        );
    }
    assert_eq!(seen.len(), usize::from(PACKAGES));
}

/// Uploads at once for one device cannot pass its limit together: each is
/// counted after the one before it committed.
pub(super) async fn concurrent_key_package_uploads(s: Arc<dyn Store>) {
    const LIMIT: u64 = 10;
    const UPLOADS: u8 = 8;
    let u = user("kp-upload-race@example.com");
    s.create_user(&u).await.expect("create");
    s.add_client(
        &client(&u, 1, ClientType::Permanent),
        &prekeys([65535]),
        8,
        QUIET,
    )
    .await
    .expect("add");
    let tasks: Vec<_> = (0..UPLOADS)
        .map(|i| {
            let s = s.clone();
            let batch: Vec<_> = (0..4).map(|j| package(&u, 1, i * 4 + j, 2, 500)).collect();
            tokio::spawn(async move { s.add_key_packages(&batch, 100, LIMIT).await })
        })
        .collect();
    let mut stored = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => stored += 4,
            Err(StoreError::Limit("key-packages")) => {}
            Err(e) => panic!("an upload failed: {e}"),
        }
    }
    assert_eq!(
        stored, 8,
        "two uploads of four fit under {LIMIT}, a third never"
    );
    assert_eq!(held(&*s, &u, 1, 2, 100).await, 8);
}
