//! Accounts: activation codes, users and profiles, cookies, password resets.

use super::*;

pub(super) async fn activation_codes(s: &dyn Store) {
    let code = OneTimeCode {
        key: "a@example.com".into(),
        user: None,
        code_hash: vec![1; 32],
        expires_at: 100,
        tries: 0,
    };
    s.put_activation_code(&code).await.expect("put");
    assert_eq!(
        s.one_time_code(CodeKind::Activation, "a@example.com")
            .await
            .expect("get"),
        Some(code.clone())
    );
    assert_eq!(
        s.count_code_try(CodeKind::Activation, "a@example.com")
            .await
            .expect("fail"),
        1
    );
    assert_eq!(
        s.count_code_try(CodeKind::Activation, "a@example.com")
            .await
            .expect("fail"),
        2
    );
    let newer = OneTimeCode {
        code_hash: vec![2; 32],
        ..code.clone()
    };
    s.put_activation_code(&newer).await.expect("replace");
    let got = s
        .one_time_code(CodeKind::Activation, "a@example.com")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        (got.code_hash, got.tries),
        (vec![2; 32], 0),
        "a new code replaces the old"
    );
    s.delete_code(CodeKind::Activation, "a@example.com")
        .await
        .expect("delete");
    assert_eq!(
        s.one_time_code(CodeKind::Activation, "a@example.com")
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        s.one_time_code(CodeKind::Activation, "nobody@example.com")
            .await
            .expect("get"),
        None
    );
}

pub(super) async fn users(s: &dyn Store) {
    let code = OneTimeCode {
        key: "u@example.com".into(),
        user: None,
        code_hash: vec![1; 32],
        expires_at: 100,
        tries: 0,
    };
    s.put_activation_code(&code).await.expect("put code");
    let u = user("u@example.com");
    s.create_user(&u).await.expect("create");
    assert_eq!(
        s.one_time_code(CodeKind::Activation, "u@example.com")
            .await
            .expect("get"),
        None,
        "code consumed"
    );
    assert_eq!(s.user(u.id).await.expect("get"), Some(u.clone()));
    assert_eq!(
        s.user_by_email("u@example.com").await.expect("get"),
        Some(u.clone())
    );
    let dup = user("u@example.com");
    assert!(matches!(
        s.create_user(&dup).await,
        Err(StoreError::Conflict("email"))
    ));
    assert_eq!(
        s.user(dup.id).await.expect("get"),
        None,
        "the refused user was not stored"
    );

    s.update_profile(
        u.id,
        &ProfileUpdate {
            name: Some("New Name".into()),
            picture: Some(Some("asset-1".into())),
            ..ProfileUpdate::default()
        },
        QUIET,
    )
    .await
    .expect("update");
    let got = s.user(u.id).await.expect("get").expect("present");
    assert_eq!(
        (got.name.as_str(), got.picture.as_deref()),
        ("New Name", Some("asset-1"))
    );
    assert_eq!(got.locale, "en", "untouched fields stay");
    assert!(matches!(
        s.update_profile(UserId::random(), &ProfileUpdate::default(), QUIET)
            .await,
        Err(StoreError::NotFound)
    ));

    s.set_handle(u.id, "alice").await.expect("handle");
    assert_eq!(
        s.user_by_handle("alice").await.expect("get").map(|u| u.id),
        Some(u.id)
    );
    s.set_handle(u.id, "alice")
        .await
        .expect("setting your own handle again is fine");
    let other = user("other@example.com");
    s.create_user(&other).await.expect("create");
    assert!(matches!(
        s.set_handle(other.id, "alice").await,
        Err(StoreError::Conflict("handle"))
    ));
    s.set_password(other.id, "new-hash")
        .await
        .expect("password");
    assert_eq!(
        s.user(other.id)
            .await
            .expect("get")
            .expect("present")
            .password_hash,
        "new-hash"
    );

    // Deleting a user removes everything of theirs.
    s.add_client(
        &client(&other, 1, ClientType::Permanent),
        &prekeys([1, 65535]),
        7,
        QUIET,
    )
    .await
    .expect("client");
    s.add_cookie(&cookie(&other, "c1", CookieKind::Session, 1, None), 32)
        .await
        .expect("cookie");
    s.delete_user(other.id).await.expect("delete");
    assert_eq!(s.user(other.id).await.expect("get"), None);
    assert!(s.clients(other.id).await.expect("clients").is_empty());
    assert!(s.cookies(other.id).await.expect("cookies").is_empty());
    assert_eq!(
        s.claim_prekey(other.id, ClientId(1), true)
            .await
            .expect("claim"),
        None
    );
    assert_eq!(
        s.user_by_email("other@example.com").await.expect("get"),
        None
    );
}

pub(super) async fn cookies(s: &dyn Store) {
    let u = user("cookies@example.com");
    s.create_user(&u).await.expect("create");
    for i in 0..5 {
        let c = cookie(
            &u,
            &format!("p{i}"),
            CookieKind::Persistent,
            i,
            Some("laptop"),
        );
        s.add_cookie(&c, 3).await.expect("add");
    }
    s.add_cookie(&cookie(&u, "s0", CookieKind::Session, 10, Some("phone")), 3)
        .await
        .expect("add");
    let ids: Vec<String> = s
        .cookies(u.id)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        ids,
        ["s0", "p4", "p3", "p2"],
        "newest first; oldest persistent ones dropped"
    );
    assert!(s.cookie(u.id, "p0").await.expect("get").is_none());
    assert_eq!(
        s.cookie(u.id, "p4").await.expect("get").map(|c| c.kind),
        Some(CookieKind::Persistent)
    );
    s.remove_cookie(u.id, "p4").await.expect("remove");
    assert!(s.cookie(u.id, "p4").await.expect("get").is_none());
    let removed = s
        .remove_cookies_by_label(u.id, &["laptop".into()])
        .await
        .expect("by label");
    assert_eq!(removed, 2);
    let ids: Vec<String> = s
        .cookies(u.id)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["s0"]);
}

pub(super) async fn password_resets(s: &dyn Store) {
    let u = user("reset@example.com");
    s.create_user(&u).await.expect("create");
    s.add_cookie(&cookie(&u, "c", CookieKind::Persistent, 1, None), 32)
        .await
        .expect("cookie");
    let reset = OneTimeCode {
        key: "key-1".into(),
        user: Some(u.id),
        code_hash: vec![3; 32],
        expires_at: 500,
        tries: 0,
    };
    assert!(s.start_password_reset(&reset, 100, 3).await.expect("put"));
    assert_eq!(
        s.one_time_code(CodeKind::PasswordReset, "key-1")
            .await
            .expect("get"),
        Some(reset.clone())
    );
    assert_eq!(
        s.count_code_try(CodeKind::PasswordReset, "key-1")
            .await
            .expect("fail"),
        1
    );
    // A second request while the first is live changes nothing: not the
    // code, not the tries.
    let second = OneTimeCode {
        code_hash: vec![4; 32],
        ..reset.clone()
    };
    assert!(!s.start_password_reset(&second, 100, 3).await.expect("kept"));
    let kept = s
        .one_time_code(CodeKind::PasswordReset, "key-1")
        .await
        .expect("get")
        .expect("there");
    assert_eq!((kept.code_hash, kept.tries), (vec![3; 32], 1));
    // Once its tries are used up, or it expired, a new one replaces it.
    s.count_code_try(CodeKind::PasswordReset, "key-1")
        .await
        .expect("try");
    s.count_code_try(CodeKind::PasswordReset, "key-1")
        .await
        .expect("try");
    assert!(
        s.start_password_reset(&second, 100, 3)
            .await
            .expect("replace")
    );
    let replaced = s
        .one_time_code(CodeKind::PasswordReset, "key-1")
        .await
        .expect("get")
        .expect("there");
    assert_eq!((replaced.code_hash, replaced.tries), (vec![4; 32], 0));
    assert!(!s.start_password_reset(&reset, 499, 3).await.expect("live"));
    assert!(
        s.start_password_reset(&reset, 500, 3)
            .await
            .expect("expired")
    );
    s.complete_password_reset("key-1", u.id, "reset-hash")
        .await
        .expect("complete");
    assert_eq!(
        s.one_time_code(CodeKind::PasswordReset, "key-1")
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        s.user(u.id)
            .await
            .expect("get")
            .expect("present")
            .password_hash,
        "reset-hash"
    );
    assert!(
        s.cookies(u.id).await.expect("cookies").is_empty(),
        "every cookie dropped"
    );
    assert!(s.start_password_reset(&reset, 100, 3).await.expect("put"));
    s.delete_code(CodeKind::PasswordReset, "key-1")
        .await
        .expect("delete");
    assert_eq!(
        s.one_time_code(CodeKind::PasswordReset, "key-1")
            .await
            .expect("get"),
        None
    );
}

/// Guesses at a code sent at once each count a try of their own (the count is
/// one atomic step, taken before the comparison), and the two kinds of code
/// are apart even under the same key.
pub(super) async fn concurrent_code_tries(s: Arc<dyn Store>) {
    const GUESSES: u32 = 24;
    let u = user("tries@example.com");
    s.create_user(&u).await.expect("create");
    let key = "tries@example.com";
    let code = |user| OneTimeCode {
        key: key.into(),
        user,
        code_hash: vec![5; 32],
        expires_at: 100,
        tries: 0,
    };
    s.put_activation_code(&code(None)).await.expect("put");
    assert!(
        s.start_password_reset(&code(Some(u.id)), 0, 3)
            .await
            .expect("reset")
    );
    for kind in [CodeKind::Activation, CodeKind::PasswordReset] {
        let tasks: Vec<_> = (0..GUESSES)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.count_code_try(kind, key).await })
            })
            .collect();
        let mut counts = Vec::new();
        for t in tasks {
            counts.push(t.await.expect("task").expect("count"));
        }
        counts.sort_unstable();
        assert_eq!(
            counts,
            (1..=GUESSES).collect::<Vec<_>>(),
            "{kind:?}: every guess has a try of its own"
        );
    }
    s.delete_code(CodeKind::Activation, key)
        .await
        .expect("delete");
    let reset = s
        .one_time_code(CodeKind::PasswordReset, key)
        .await
        .expect("get")
        .expect("the reset stays when the activation code goes");
    assert_eq!((reset.user, reset.tries), (Some(u.id), GUESSES));
    assert_eq!(
        s.count_code_try(CodeKind::Activation, key)
            .await
            .err()
            .map(|e| e.to_string()),
        Some(StoreError::NotFound.to_string())
    );
}

/// The seed the nodes sign tokens with: the first node's stays.
pub(super) async fn token_signing_seed(s: &dyn Store) {
    let first = s.token_signing_seed(&[1; 32]).await.expect("seed");
    assert_eq!(first, vec![1; 32]);
    let again = s.token_signing_seed(&[2; 32]).await.expect("seed");
    assert_eq!(again, vec![1; 32], "the first node's seed stays");
}
