//! Devices: registration, prekeys, push endpoints, the trust chain.

use super::*;

pub(super) async fn clients(s: &dyn Store) {
    let u = user("clients@example.com");
    s.create_user(&u).await.expect("create");
    let c1 = client(&u, 1, ClientType::Permanent);
    assert_eq!(
        s.add_client(&c1, &prekeys([0, 1, 65535]), 2, QUIET)
            .await
            .expect("add"),
        Default::default()
    );
    s.add_client(
        &client(&u, 2, ClientType::Permanent),
        &prekeys([65535]),
        2,
        QUIET,
    )
    .await
    .expect("add");
    let third = client(&u, 3, ClientType::Permanent);
    assert!(matches!(
        s.add_client(&third, &prekeys([65535]), 2, QUIET).await,
        Err(StoreError::TooManyClients)
    ));
    assert_eq!(
        s.client(u.id, ClientId(3)).await.expect("get"),
        None,
        "nothing written"
    );
    assert_eq!(
        s.claim_prekey(u.id, ClientId(3), true)
            .await
            .expect("claim"),
        None
    );

    let t1 = client(&u, 10, ClientType::Temporary);
    assert_eq!(
        s.add_client(&t1, &prekeys([65535]), 2, QUIET)
            .await
            .expect("temp")
            .replaced,
        None
    );
    let t2 = client(&u, 11, ClientType::Temporary);
    let added = s
        .add_client(&t2, &prekeys([5, 65535]), 2, QUIET)
        .await
        .expect("temp");
    assert_eq!(
        added.replaced,
        Some(ClientId(10)),
        "a new temporary device replaces the old"
    );
    let ids: Vec<ClientId> = s
        .clients(u.id)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, [ClientId(1), ClientId(2), ClientId(11)]);
    assert_eq!(s.client(u.id, ClientId(1)).await.expect("get"), Some(c1));

    // Deleting a device drops its prekeys and the cookies with its cookie label.
    let mut labelled = client(&u, 20, ClientType::Temporary);
    labelled.cookie_label = Some("tablet".into());
    s.add_client(&labelled, &prekeys([1, 65535]), 2, QUIET)
        .await
        .expect("add");
    s.add_cookie(&cookie(&u, "t", CookieKind::Session, 1, Some("tablet")), 32)
        .await
        .expect("c");
    s.add_cookie(&cookie(&u, "o", CookieKind::Session, 2, Some("other")), 32)
        .await
        .expect("c");
    s.delete_client(u.id, ClientId(20), QUIET)
        .await
        .expect("delete");
    assert_eq!(s.client(u.id, ClientId(20)).await.expect("get"), None);
    assert_eq!(
        s.claim_prekey(u.id, ClientId(20), true)
            .await
            .expect("claim"),
        None
    );
    let left: Vec<String> = s
        .cookies(u.id)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(left, ["o"]);
    assert!(matches!(
        s.delete_client(u.id, ClientId(20), QUIET).await,
        Err(StoreError::NotFound)
    ));
}

pub(super) async fn prekey_pool(s: &dyn Store) {
    let u = user("prekeys@example.com");
    s.create_user(&u).await.expect("create");
    s.add_client(
        &client(&u, 7, ClientType::Permanent),
        &prekeys([3, 1, 2, 65535]),
        7,
        QUIET,
    )
    .await
    .expect("add");
    assert_eq!(s.count_prekeys(u.id, ClientId(7)).await.expect("count"), 3);
    // The send generation only rises.
    for (raise, now) in [(5, 5), (3, 5), (0, 5), (9, 9)] {
        assert_eq!(
            s.raise_generation(u.id, ClientId(7), raise)
                .await
                .expect("raise"),
            Some(now)
        );
    }
    assert_eq!(
        s.raise_generation(u.id, ClientId(8), 1)
            .await
            .expect("unknown"),
        None
    );
    // A claimer past its limit gets the last-resort prekey, and the pool is
    // untouched.
    assert_eq!(
        s.claim_prekey(u.id, ClientId(7), false)
            .await
            .expect("claim")
            .map(|p| p.id),
        Some(65535)
    );
    assert_eq!(s.count_prekeys(u.id, ClientId(7)).await.expect("count"), 3);
    let mut claimed = Vec::new();
    for _ in 0..3 {
        claimed.push(
            s.claim_prekey(u.id, ClientId(7), true)
                .await
                .expect("claim")
                .expect("known")
                .id,
        );
    }
    claimed.sort_unstable();
    assert_eq!(claimed, [1, 2, 3], "each one-time prekey once");
    assert_eq!(s.count_prekeys(u.id, ClientId(7)).await.expect("count"), 0);
    for _ in 0..2 {
        let last = s
            .claim_prekey(u.id, ClientId(7), true)
            .await
            .expect("claim")
            .expect("known");
        assert_eq!(
            last,
            PrekeyRecord {
                id: 65535,
                key: "key-65535".into()
            }
        );
    }
    s.add_prekeys(u.id, ClientId(7), &prekeys([8, 9]))
        .await
        .expect("upload");
    s.add_prekeys(
        u.id,
        ClientId(7),
        &[PrekeyRecord {
            id: 9,
            key: "replaced".into(),
        }],
    )
    .await
    .expect("replace");
    assert_eq!(s.count_prekeys(u.id, ClientId(7)).await.expect("count"), 2);
    assert!(matches!(
        s.add_prekeys(u.id, ClientId(99), &prekeys([1])).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        s.claim_prekey(u.id, ClientId(99), true)
            .await
            .expect("claim"),
        None
    );
}

pub(super) async fn concurrent_prekey_claims(s: Arc<dyn Store>) {
    const PREKEYS: u16 = 60;
    const CLAIMS: usize = 96;
    let u = user("race@example.com");
    s.create_user(&u).await.expect("create");
    let keys = prekeys((0..PREKEYS).chain([65535]));
    s.add_client(&client(&u, 1, ClientType::Permanent), &keys, 7, QUIET)
        .await
        .expect("add");
    let tasks: Vec<_> = (0..CLAIMS)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.claim_prekey(u.id, ClientId(1), true).await })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut last_resort = 0;
    for t in tasks {
        let prekey = t
            .await
            .expect("task")
            .expect("claim")
            .expect("known device");
        if prekey.id == 65535 {
            last_resort += 1;
        } else {
            assert!(
                seen.insert(prekey.id),
                "prekey {} handed out twice",
                prekey.id
            );
        }
    }
    assert_eq!(
        seen.len(),
        PREKEYS as usize,
        "every one-time prekey claimed once"
    );
    assert_eq!(last_resort, CLAIMS - PREKEYS as usize);
}

pub(super) async fn concurrent_permanent_clients(s: Arc<dyn Store>) {
    let u = user("many-devices@example.com");
    s.create_user(&u).await.expect("create");
    let tasks: Vec<_> = (0..12u64)
        .map(|i| {
            let s = s.clone();
            let c = client(&u, 100 + i, ClientType::Permanent);
            tokio::spawn(async move { s.add_client(&c, &prekeys([65535]), 7, QUIET).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => ok += 1,
            Err(StoreError::TooManyClients) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(ok, 7, "exactly the limit, however the adds interleave");
    assert_eq!(s.clients(u.id).await.expect("list").len(), 7);
}

/// One device's push endpoint.
async fn endpoint(s: &dyn Store, u: &User, client: u64) -> Option<String> {
    let found = s
        .push_endpoints(&[(u.id, ClientId(client))])
        .await
        .expect("read");
    assert!(found.len() <= 1);
    found.into_iter().next().map(|(_, _, url)| url)
}

pub(super) async fn push_endpoints(s: &dyn Store) {
    let a = user_with_devices(s, "push@example.com", &[1, 2, 3]).await;
    assert_eq!(endpoint(s, &a, 1).await, None);
    s.set_push_endpoint(a.id, ClientId(1), Some("https://push.example/1"))
        .await
        .expect("set");
    s.set_push_endpoint(a.id, ClientId(1), Some("https://push.example/2"))
        .await
        .expect("replace");
    assert_eq!(
        endpoint(s, &a, 1).await.as_deref(),
        Some("https://push.example/2")
    );
    assert!(matches!(
        s.set_push_endpoint(a.id, ClientId(9), Some("https://x"))
            .await,
        Err(StoreError::NotFound)
    ));
    // Many at once, in the order asked, those without one left out; more
    // than one statement's worth of unknown devices too.
    s.set_push_endpoint(a.id, ClientId(3), Some("https://push.example/3"))
        .await
        .expect("set");
    let mut asked: Vec<(UserId, ClientId)> = (100..400)
        .map(|c| (UserId::random(), ClientId(c)))
        .collect();
    asked.extend([
        (a.id, ClientId(3)),
        (a.id, ClientId(2)),
        (a.id, ClientId(1)),
    ]);
    let found = s.push_endpoints(&asked).await.expect("read");
    assert_eq!(
        found,
        vec![
            (a.id, ClientId(3), "https://push.example/3".to_owned()),
            (a.id, ClientId(1), "https://push.example/2".to_owned()),
        ]
    );
    s.set_push_endpoint(a.id, ClientId(1), None)
        .await
        .expect("remove");
    assert_eq!(endpoint(s, &a, 1).await, None);
}

pub(super) async fn trust_chain(s: &dyn Store) {
    let u = user("trust@example.com");
    s.create_user(&u).await.expect("create");
    let signed = ClientRecord {
        trust: Some(r#"{"root_key":"r","signature":"s"}"#.into()),
        ..client(&u, 4, ClientType::Permanent)
    };
    s.add_client(&signed, &prekeys([65535]), 7, QUIET)
        .await
        .expect("device");
    let stored = s.client(u.id, ClientId(4)).await.expect("read");
    assert_eq!(
        stored.as_ref().and_then(|c| c.trust.as_deref()),
        signed.trust.as_deref()
    );
    assert_eq!(s.clients(u.id).await.expect("list"), vec![signed]);

    assert_eq!(s.recovery_bundle(u.id).await.expect("read"), None);
    s.set_recovery_bundle(u.id, Some(&[1, 2, 3]))
        .await
        .expect("set");
    s.set_recovery_bundle(u.id, Some(&[0, 255, 7, 9]))
        .await
        .expect("replace");
    assert_eq!(
        s.recovery_bundle(u.id).await.expect("read"),
        Some(vec![0, 255, 7, 9])
    );
    assert!(matches!(
        s.set_recovery_bundle(UserId::random(), Some(&[1])).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        s.recovery_bundle(UserId::random()).await.expect("read"),
        None
    );
    s.set_recovery_bundle(u.id, None).await.expect("remove");
    assert_eq!(s.recovery_bundle(u.id).await.expect("read"), None);
}
