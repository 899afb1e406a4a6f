//! Black-box tests over HTTP on loopback: every account, token, device and prekey
//! operation, with the bad inputs, on SQLite and (when `PARLEY_TEST_POSTGRES` is set)
//! PostgreSQL.

mod support;

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};
use support::{
    PASSWORD, TestServer, client_id, close_reason, cookie_of, key_for, new_client, next_event,
    refused_with,
};

on_both_stores!(crate::support::GENEROUS =>
    registration_by_email_code,
    wrong_code_four_times_invalidates_it,
    login_tokens_refresh_and_logout,
    expired_and_tampered_tokens_are_refused,
    cookies_are_listed_limited_and_removed_by_label,
    password_reset_as_the_whitepaper_says,
    profiles_handles_and_lookups,
    password_change_and_account_deletion,
    devices_within_the_limits,
    prekeys_upload_count_and_claim,
    concurrent_prekey_claims_never_share_a_prekey,
    bad_input_gets_a_labelled_4xx_and_changes_nothing,
    device_queues_tell_the_other_devices,
    purged_events_answer_notifications_lost,
    the_websocket_pushes_events_live_and_catches_up,
    cursors_beyond_any_queue_are_lost_not_overflowed,
    device_bound_tokens_act_only_as_their_device,
    a_socket_ends_with_its_token,
    a_device_has_at_most_eight_sockets,
    device_signatures_and_the_recovery_bundle,
    a_pending_reset_is_neither_replaced_nor_given_fresh_tries,
    prekeys_are_claimed_only_within_a_relationship,
    logging_out_closes_that_logins_sockets_only,
    notification_pages_are_bounded_in_bytes,
);

fn label(v: &Value) -> &str {
    v["label"].as_str().unwrap_or_default()
}

async fn registration_by_email_code(s: &TestServer) {
    let (st, v) = s
        .post(
            "/v1/activate/send",
            None,
            json!({"email": "not-an-address"}),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (400, "invalid-email"));

    let (st, _) = s
        .post(
            "/v1/activate/send",
            None,
            json!({"email": "Ann@Example.com"}),
        )
        .await;
    assert_eq!(st, 200);
    let code = s.activation_code("ann@example.com");
    assert!(code.chars().all(|c| c.is_ascii_digit()) && code.len() == 6);
    // A weak password is refused and uses up nothing.
    let weak = json!({"name": "Ann", "email": "ann@example.com", "email_code": code, "password": "password"});
    let (st, v) = s.post("/v1/register", None, weak).await;
    assert_eq!((st.as_u16(), label(&v)), (400, "weak-password"));
    // A new request replaces the code.
    s.post(
        "/v1/activate/send",
        None,
        json!({"email": "ann@example.com"}),
    )
    .await;
    let newer = s.activation_code("ann@example.com");
    if newer != code {
        let old = json!({"name": "Ann", "email": "ann@example.com", "email_code": code, "password": PASSWORD});
        assert_eq!(
            s.post("/v1/register", None, old).await.0,
            403,
            "the replaced code is dead"
        );
    }
    let ok = json!({"name": "Ann", "email": "ANN@example.com", "email_code": newer, "password": PASSWORD});
    let (st, v) = s.post("/v1/register", None, ok.clone()).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 900);
    let token = v["access_token"].as_str().expect("token");
    let (st, me) = s.get("/v1/self", token).await;
    assert_eq!(st, 200);
    assert_eq!(me["email"], "ann@example.com");
    assert_eq!(me["qualified_id"]["domain"], "localhost");
    // The code is used up, and the address is taken.
    assert_eq!(s.post("/v1/register", None, ok).await.0, 403);
    // Asking for a code for a registered address answers as for any other
    // (addresses cannot be probed); the owner is told instead.
    let (st, v) = s
        .post(
            "/v1/activate/send",
            None,
            json!({"email": "ann@example.com"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (fresh, _) = s
        .post(
            "/v1/activate/send",
            None,
            json!({"email": "nobody-yet@example.com"}),
        )
        .await;
    assert_eq!(
        fresh, st,
        "the same answer for an address without an account"
    );
    let told = std::fs::read_dir(s.outbox())
        .expect("outbox")
        .map(|e| std::fs::read_to_string(e.expect("mail").path()).expect("text"))
        .filter(|m| m.contains("To: ann@example.com"))
        .map(|m| {
            m.replace("=\r\n", "")
                .replace("=\n", "")
                .replace("\r\n", " ")
        })
        .collect::<Vec<_>>();
    assert!(
        told.iter().any(|m| m.contains("already has one")),
        "the owner is told: {told:?}"
    );
}

async fn wrong_code_four_times_invalidates_it(s: &TestServer) {
    s.post(
        "/v1/activate/send",
        None,
        json!({"email": "bob@example.com"}),
    )
    .await;
    let code = s.activation_code("bob@example.com");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..3 {
        let body = json!({"name": "Bob", "email": "bob@example.com", "email_code": wrong, "password": PASSWORD});
        let (st, v) = s.post("/v1/register", None, body).await;
        assert_eq!((st.as_u16(), label(&v)), (403, "invalid-code"));
    }
    let body = json!({"name": "Bob", "email": "bob@example.com", "email_code": code, "password": PASSWORD});
    let (st, v) = s.post("/v1/register", None, body).await;
    assert_eq!(
        (st.as_u16(), label(&v)),
        (403, "invalid-code"),
        "the fourth try fails even when right"
    );
    // An expired code fails too.
    s.post(
        "/v1/activate/send",
        None,
        json!({"email": "bob@example.com"}),
    )
    .await;
    let code = s.activation_code("bob@example.com");
    s.running.clock.advance(14 * 24 * 3600 + 1);
    let body = json!({"name": "Bob", "email": "bob@example.com", "email_code": code, "password": PASSWORD});
    assert_eq!(s.post("/v1/register", None, body).await.0, 403);
}

async fn login_tokens_refresh_and_logout(s: &TestServer) {
    let u = s.register("carol@example.com").await;
    s.call(
        Method::PUT,
        "/v1/self/handle",
        Some(&u.token),
        Some(json!({"handle": "carol"})),
    )
    .await;
    let (st, v, cookie) = s
        .login("carol@example.com", "wrong-Password-1", false, None)
        .await;
    assert_eq!((st.as_u16(), label(&v)), (403, "invalid-credentials"));
    assert!(cookie.is_none());
    let (st, v, _) = s.login("nobody@example.com", PASSWORD, false, None).await;
    assert_eq!(
        (st.as_u16(), label(&v)),
        (403, "invalid-credentials"),
        "no hint the account is missing"
    );

    let (st, v, _) = s
        .call(
            Method::POST,
            "/v1/login",
            None,
            Some(json!({"handle": "carol", "password": PASSWORD})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v, cookie) = s
        .login("carol@example.com", PASSWORD, true, Some("laptop"))
        .await;
    assert_eq!(st, 200);
    let cookie = cookie.expect("cookie");
    assert_eq!(
        s.get("/v1/self", v["access_token"].as_str().expect("t"))
            .await
            .0,
        200
    );

    // A new access token from the cookie.
    let (st, fresh) = s.with_cookie("/v1/access", &cookie).await;
    assert_eq!(st, 200, "{fresh}");
    assert_eq!(
        s.get("/v1/self", fresh["access_token"].as_str().expect("t"))
            .await
            .0,
        200
    );
    let (st, v) = s.post("/v1/access", None, json!({})).await;
    assert_eq!((st.as_u16(), label(&v)), (403, "missing-cookie"));
    // Logout revokes the cookie.
    assert_eq!(s.with_cookie("/v1/access/logout", &cookie).await.0, 200);
    let (st, v) = s.with_cookie("/v1/access", &cookie).await;
    assert_eq!((st.as_u16(), label(&v)), (403, "invalid-credentials"));
}

async fn expired_and_tampered_tokens_are_refused(s: &TestServer) {
    let u = s.register("dave@example.com").await;
    let mut tampered = u.token.clone().into_bytes();
    let i = tampered.len() - 10;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let (st, v) = s
        .get("/v1/self", std::str::from_utf8(&tampered).expect("ascii"))
        .await;
    assert_eq!((st.as_u16(), label(&v)), (401, "invalid-token"));
    let (st, v, _) = s.call(Method::GET, "/v1/self", None, None).await;
    assert_eq!((st.as_u16(), label(&v)), (401, "missing-token"));
    // The cookie token is not an access token.
    assert_eq!(s.get("/v1/self", &u.cookie).await.0, 401);
    s.running.clock.advance(15 * 60 + 1);
    let (st, v) = s.get("/v1/self", &u.token).await;
    assert_eq!(
        (st.as_u16(), label(&v)),
        (401, "invalid-token"),
        "expired after 15 minutes"
    );
    let (st, fresh) = s.with_cookie("/v1/access", &u.cookie).await;
    assert_eq!(st, 200, "the cookie still works: {fresh}");
    // Past a persistent cookie's year, the cookie is dead too.
    s.running.clock.advance(366 * 24 * 3600);
    assert_eq!(s.with_cookie("/v1/access", &u.cookie).await.0, 403);
}

async fn cookies_are_listed_limited_and_removed_by_label(s: &TestServer) {
    let u = s.register("erin@example.com").await;
    for i in 0..33 {
        let label = if i % 2 == 0 { "even" } else { "odd" };
        let (st, _, _) = s
            .login("erin@example.com", PASSWORD, false, Some(label))
            .await;
        assert_eq!(st, 200);
        s.running.clock.advance(1);
    }
    let (st, v) = s.get("/v1/cookies", &u.token).await;
    assert_eq!(st, 200);
    let cookies = v["cookies"].as_array().expect("list");
    let sessions = cookies.iter().filter(|c| c["kind"] == "session").count();
    let persistent = cookies.iter().filter(|c| c["kind"] == "persistent").count();
    assert_eq!(
        (sessions, persistent),
        (32, 1),
        "at most 32 session cookies; the oldest replaced"
    );
    let body = json!({"labels": ["odd"], "password": "Wrong-pass-1"});
    assert_eq!(
        s.post("/v1/cookies/remove", Some(&u.token), body).await.0,
        403
    );
    let body = json!({"labels": ["odd"], "password": PASSWORD});
    assert_eq!(
        s.post("/v1/cookies/remove", Some(&u.token), body).await.0,
        200
    );
    let (_, v) = s.get("/v1/cookies", &u.token).await;
    let left = v["cookies"].as_array().expect("list");
    assert!(left.iter().all(|c| c["label"] != "odd"));
    assert_eq!(
        left.len(),
        16 + 1,
        "16 \"even\" session cookies and the registration's persistent one"
    );
}

fn reset_key_and_code(mail: &str) -> (String, String) {
    let field = |name: &str| {
        mail.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("{name} in mail"))
    };
    (field("key:"), field("code:"))
}

async fn password_reset_as_the_whitepaper_says(s: &TestServer) {
    let u = s.register("frank@example.com").await;
    let (st, _) = s
        .post(
            "/v1/password-reset",
            None,
            json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(st, 201, "the same answer for unknown addresses");
    assert_eq!(
        s.post(
            "/v1/password-reset",
            None,
            json!({"email": "frank@example.com"})
        )
        .await
        .0,
        201
    );
    let (key, code) = reset_key_and_code(&s.last_mail_to("frank@example.com"));
    // Three wrong codes delete the reset; the right one then fails.
    for _ in 0..3 {
        let body = json!({"key": key, "code": "wrong", "password": "New-secret-1"});
        let (st, v) = s.post("/v1/password-reset/complete", None, body).await;
        assert_eq!((st.as_u16(), label(&v)), (403, "invalid-code"));
    }
    let body = json!({"key": key, "code": code, "password": "New-secret-1"});
    assert_eq!(
        s.post("/v1/password-reset/complete", None, body).await.0,
        403
    );
    // One pending per account: once its tries are used up a new request
    // replaces it, and it works once.
    s.post(
        "/v1/password-reset",
        None,
        json!({"email": "frank@example.com"}),
    )
    .await;
    let (key2, code2) = reset_key_and_code(&s.last_mail_to("frank@example.com"));
    assert_eq!(key2, key, "the key is derived from the account");
    let weak = json!({"key": key2, "code": code2, "password": "weak"});
    assert_eq!(
        s.post("/v1/password-reset/complete", None, weak).await.0,
        400
    );
    let body = json!({"key": key2, "code": code2, "password": "New-secret-1"});
    assert_eq!(
        s.post("/v1/password-reset/complete", None, body.clone())
            .await
            .0,
        200
    );
    assert_eq!(
        s.post("/v1/password-reset/complete", None, body).await.0,
        403,
        "used up"
    );
    assert_eq!(
        s.with_cookie("/v1/access", &u.cookie).await.0,
        403,
        "every cookie dropped"
    );
    assert_eq!(
        s.login("frank@example.com", PASSWORD, false, None).await.0,
        403
    );
    assert_eq!(
        s.login("frank@example.com", "New-secret-1", false, None)
            .await
            .0,
        200
    );
    // A reset expires after an hour.
    s.post(
        "/v1/password-reset",
        None,
        json!({"email": "frank@example.com"}),
    )
    .await;
    let (key, code) = reset_key_and_code(&s.last_mail_to("frank@example.com"));
    s.running.clock.advance(3601);
    let body = json!({"key": key, "code": code, "password": "Other-secret-2"});
    assert_eq!(
        s.post("/v1/password-reset/complete", None, body).await.0,
        403
    );
}

async fn profiles_handles_and_lookups(s: &TestServer) {
    let a = s.register("gina@example.com").await;
    let b = s.register("hank@example.com").await;
    let update = json!({"name": "Gina G", "accent_id": 3, "locale": "de", "picture": "asset-1"});
    let (st, _, _) = s
        .call(Method::PUT, "/v1/self", Some(&a.token), Some(update))
        .await;
    assert_eq!(st, 200);
    let (_, me) = s.get("/v1/self", &a.token).await;
    assert_eq!(
        (
            me["name"].as_str(),
            me["accent_id"].as_i64(),
            me["locale"].as_str()
        ),
        (Some("Gina G"), Some(3), Some("de"))
    );
    let (st, v, _) = s
        .call(
            Method::PUT,
            "/v1/self",
            Some(&a.token),
            Some(json!({"name": ""})),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (400, "invalid-name"));

    for bad in ["G", "Gina", "gina!", &"x".repeat(257)] {
        let (st, v, _) = s
            .call(
                Method::PUT,
                "/v1/self/handle",
                Some(&a.token),
                Some(json!({"handle": bad})),
            )
            .await;
        assert_eq!((st.as_u16(), label(&v)), (400, "invalid-handle"), "{bad}");
    }
    let (st, _, _) = s
        .call(
            Method::PUT,
            "/v1/self/handle",
            Some(&a.token),
            Some(json!({"handle": "gina.g"})),
        )
        .await;
    assert_eq!(st, 200);
    let (st, v, _) = s
        .call(
            Method::PUT,
            "/v1/self/handle",
            Some(&b.token),
            Some(json!({"handle": "gina.g"})),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (409, "handle-exists"));

    let (st, v) = s
        .get(&format!("/v1/users/localhost/{}", a.id), &b.token)
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["handle"], "gina.g");
    assert!(
        v.get("email").is_none(),
        "others do not see the e-mail address"
    );
    let (st, v) = s.get("/v1/handles/gina.g", &b.token).await;
    assert_eq!(
        (st.as_u16(), v["qualified_id"]["id"].as_str()),
        (200, Some(a.id.to_string().as_str()))
    );
    assert_eq!(s.get("/v1/handles/nobody", &b.token).await.0, 404);
    assert_eq!(
        s.get(&format!("/v1/users/elsewhere.example/{}", a.id), &b.token)
            .await
            .0,
        404
    );
    assert_eq!(
        s.get(
            &format!("/v1/users/localhost/{}", uuid::Uuid::new_v4()),
            &b.token
        )
        .await
        .0,
        404
    );
}

async fn password_change_and_account_deletion(s: &TestServer) {
    let u = s.register("ivy@example.com").await;
    let change = |old: &str, new: &str| json!({"old_password": old, "new_password": new});
    let (st, v, _) = s
        .call(
            Method::PUT,
            "/v1/self/password",
            Some(&u.token),
            Some(change("Wrong-1!", "Newer-pass-1")),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (403, "invalid-credentials"));
    let (st, v, _) = s
        .call(
            Method::PUT,
            "/v1/self/password",
            Some(&u.token),
            Some(change(PASSWORD, "short")),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (400, "weak-password"));
    // Someone else who knew the password is logged in, and a socket is open.
    let (st, _, other_login) = s.login("ivy@example.com", PASSWORD, true, None).await;
    assert_eq!(st, 200);
    let other_login = other_login.expect("a login cookie");
    let (_, device) = s.add_client(&u, "permanent", [9]).await;
    let device = device["id"].as_str().expect("id").to_owned();
    let mut live = s.upgrade(&u.token, &device, None).await.expect("upgraded");
    let (st, v, headers) = s
        .call(
            Method::PUT,
            "/v1/self/password",
            Some(&u.token),
            Some(change(PASSWORD, "Newer-pass-1")),
        )
        .await;
    assert_eq!(st, 200);
    assert!(
        v["access_token"].is_string(),
        "the caller stays logged in: {v}"
    );
    let fresh = cookie_of(&headers);
    // Every earlier login is over; the caller's new one works.
    assert_eq!(s.with_cookie("/v1/access", &u.cookie).await.0, 403);
    assert_eq!(s.with_cookie("/v1/access", &other_login).await.0, 403);
    assert_eq!(s.with_cookie("/v1/access", &fresh).await.0, 200);
    // And the open socket is closed.
    let reason = close_reason(&mut live, false).await;
    assert_eq!(reason.as_deref(), Some("logged-out"));
    assert_eq!(
        s.login("ivy@example.com", "Newer-pass-1", false, None)
            .await
            .0,
        200
    );

    let (st, c) = s
        .post(
            "/v1/clients",
            Some(&u.token),
            new_client("permanent", [1, 2], Some("Newer-pass-1")),
        )
        .await;
    assert_eq!(st, 201, "{c}");
    let (st, v, _) = s
        .call(
            Method::DELETE,
            "/v1/self",
            Some(&u.token),
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (403, "invalid-credentials"));
    let (st, _, _) = s
        .call(
            Method::DELETE,
            "/v1/self",
            Some(&u.token),
            Some(json!({"password": "Newer-pass-1"})),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        s.login("ivy@example.com", "Newer-pass-1", false, None)
            .await
            .0,
        403
    );
    let other = s.register("jack@example.com").await;
    let (st, v) = s
        .get(
            &format!("/v1/users/localhost/{}/prekeys/{}", u.id, client_id(&c)),
            &other.token,
        )
        .await;
    assert_eq!(
        (st.as_u16(), label(&v)),
        (403, "not-related"),
        "a deleted account is nobody's connection"
    );
    assert_eq!(
        s.with_cookie("/v1/access", &u.cookie).await.0,
        403,
        "cookies are gone"
    );
}

async fn devices_within_the_limits(s: &TestServer) {
    let u = s.register("kim@example.com").await;
    let (st, v) = s
        .post(
            "/v1/clients",
            Some(&u.token),
            new_client("permanent", [1], None),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (403, "missing-auth"));
    // What a person names a device goes into the new-device e-mail: no forged
    // lines, no novels.
    for (field, value) in [
        ("model", "Laptop\r\nBcc: someone@example.com".to_owned()),
        ("label", "work\u{7}".to_owned()),
        ("cookie_label", "x".repeat(129)),
    ] {
        let mut req = new_client("permanent", [1], Some(PASSWORD));
        req[field] = json!(value);
        let (st, v) = s.post("/v1/clients", Some(&u.token), req).await;
        assert_eq!(
            (st.as_u16(), label(&v)),
            (400, "bad-request"),
            "{field}: {v}"
        );
    }
    let (st, v, _) = s
        .call(
            Method::POST,
            "/v1/login",
            None,
            Some(json!({"email": "kim@example.com", "password": PASSWORD, "label": "a\nb"})),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (400, "bad-request"), "{v}");
    let (st, v) = s
        .post(
            "/v1/clients",
            Some(&u.token),
            new_client("permanent", [1], Some("Bad-pass-1")),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (403, "invalid-credentials"));

    let mut ids = Vec::new();
    for _ in 0..7 {
        let (st, v) = s.add_client(&u, "permanent", [1, 2, 3]).await;
        assert_eq!(st, 201, "{v}");
        assert!(
            v["time"].as_str().is_some_and(|t| t.contains('T')),
            "registration time shown"
        );
        ids.push(client_id(&v));
    }
    let (st, v) = s.add_client(&u, "permanent", [1]).await;
    assert_eq!((st.as_u16(), label(&v)), (403, "too-many-clients"));
    let (st, t1) = s.add_client(&u, "temporary", [1]).await;
    assert_eq!(st, 201);
    let (_, t2) = s.add_client(&u, "temporary", [1]).await;
    let (_, list) = s.get("/v1/clients", &u.token).await;
    let listed: HashSet<String> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(listed.len(), 8, "7 permanent + 1 temporary");
    assert!(
        !listed.contains(t1["id"].as_str().expect("id")),
        "the new temporary replaced the old"
    );
    assert!(listed.contains(t2["id"].as_str().expect("id")));
    assert!(
        s.last_mail_to("kim@example.com")
            .contains("A new device was added")
    );

    let (st, one) = s.get(&format!("/v1/clients/{}", ids[0]), &u.token).await;
    assert_eq!(
        (st.as_u16(), one["model"].as_str()),
        (200, Some("Test Laptop"))
    );
    let other = s.register("lee@example.com").await;
    assert_eq!(
        s.get(&format!("/v1/clients/{}", ids[0]), &other.token)
            .await
            .0,
        404,
        "only your own"
    );
    let (st, public) = s
        .get(
            &format!("/v1/users/localhost/{}/clients", u.id),
            &other.token,
        )
        .await;
    assert_eq!(st, 200);
    let first = &public.as_array().expect("list")[0];
    assert_eq!(first["class"], "desktop");
    assert!(
        first.get("model").is_none(),
        "public view: ids and class only"
    );

    let path = format!("/v1/clients/{}", ids[0]);
    let (st, _, _) = s
        .call(
            Method::DELETE,
            &path,
            Some(&u.token),
            Some(json!({"password": "Wrong-pw-1"})),
        )
        .await;
    assert_eq!(st, 403);
    let (st, _, _) = s
        .call(
            Method::DELETE,
            &path,
            Some(&u.token),
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(s.get(&path, &u.token).await.0, 404);
    let (st, v) = s.add_client(&u, "permanent", [1]).await;
    assert_eq!(st, 201, "room for one again: {v}");
}

async fn prekeys_upload_count_and_claim(s: &TestServer) {
    let u = s.register("mia@example.com").await;
    let peer = s.register("ned@example.com").await;
    s.connect_users(&peer, &u).await;
    let (_, c) = s.add_client(&u, "permanent", [1, 2]).await;
    let id = client_id(&c);
    let count = |v: Value| v["count"].as_u64().expect("count");
    assert_eq!(
        count(
            s.get(&format!("/v1/clients/{id}/prekeys"), &u.token)
                .await
                .1
        ),
        2
    );
    // The send generation only rises, and only the owner reports it.
    let generation = format!("/v1/clients/{id}/generation");
    for (report, now) in [(5, 5), (2, 5), (0, 5), (7, 7)] {
        let (st, v) = s
            .post(&generation, Some(&u.token), json!({"generation": report}))
            .await;
        assert_eq!(
            (st.as_u16(), v["generation"].as_u64()),
            (200, Some(now)),
            "{v}"
        );
    }
    let (st, v) = s
        .post(&generation, Some(&peer.token), json!({"generation": 9}))
        .await;
    assert_eq!(
        (st.as_u16(), v["label"].as_str()),
        (404, Some("client-not-found")),
        "{v}"
    );
    let claim_path = format!("/v1/users/localhost/{}/prekeys/{id}", u.id);
    let mut got = HashSet::new();
    for _ in 0..2 {
        let (st, v) = s.get(&claim_path, &peer.token).await;
        assert_eq!(st, 200);
        assert_eq!(v["client"], id.to_string());
        let pid = v["prekey"]["id"].as_u64().expect("id");
        assert_eq!(
            v["prekey"]["key"],
            key_for(u16::try_from(pid).expect("u16")),
            "stored as given"
        );
        got.insert(pid);
    }
    assert_eq!(got, HashSet::from([1, 2]));
    for _ in 0..2 {
        let (_, v) = s.get(&claim_path, &peer.token).await;
        assert_eq!(
            v["prekey"]["id"], 65535,
            "the last resort when the pool is empty"
        );
    }
    let upload =
        json!({"prekeys": [{"id": 10, "key": key_for(10)}, {"id": 11, "key": key_for(11)}]});
    assert_eq!(
        s.post(
            &format!("/v1/clients/{id}/prekeys"),
            Some(&u.token),
            upload.clone()
        )
        .await
        .0,
        200
    );
    assert_eq!(
        count(
            s.get(&format!("/v1/clients/{id}/prekeys"), &u.token)
                .await
                .1
        ),
        2
    );
    assert_eq!(
        s.post(
            &format!("/v1/clients/{id}/prekeys"),
            Some(&peer.token),
            upload
        )
        .await
        .0,
        404,
        "not your device"
    );

    // Many users and devices at once; unknown devices get null.
    let (_, c2) = s.add_client(&peer, "permanent", [7]).await;
    let unknown = parley_api::ClientId(12345);
    let body = json!({"localhost": {
        u.id.to_string(): [id.to_string(), unknown.to_string()],
        peer.id.to_string(): [client_id(&c2).to_string()],
    }});
    let (st, v) = s
        .post("/v1/users/list-prekeys", Some(&peer.token), body)
        .await;
    assert_eq!(st, 200, "{v}");
    let mine = &v["localhost"][u.id.to_string()];
    assert!(
        mine[id.to_string()]["id"]
            .as_u64()
            .is_some_and(|p| p == 10 || p == 11)
    );
    assert_eq!(mine[unknown.to_string()], Value::Null);
    assert_eq!(
        v["localhost"][peer.id.to_string()][client_id(&c2).to_string()]["id"],
        7
    );
}

async fn concurrent_prekey_claims_never_share_a_prekey(s: &TestServer) {
    let u = s.register("olga@example.com").await;
    let peer = s.register("pete@example.com").await;
    s.connect_users(&peer, &u).await;
    let (_, c) = s.add_client(&u, "permanent", 0..40).await;
    let path = format!("/v1/users/localhost/{}/prekeys/{}", u.id, client_id(&c));
    // 64 claims in flight at once, each on its own task and connection.
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (http, url, token) = (
                s.http.clone(),
                format!("{}{path}", s.base),
                peer.token.clone(),
            );
            tokio::spawn(async move {
                let r = http.get(url).bearer_auth(token).send().await.expect("send");
                (r.status(), r.json::<Value>().await.expect("json"))
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("task"));
    }
    let mut seen = HashSet::new();
    let mut last_resort = 0;
    for (st, v) in results {
        assert_eq!(st, 200);
        let id = v["prekey"]["id"].as_u64().expect("id");
        if id == 65535 {
            last_resort += 1;
        } else {
            assert!(seen.insert(id), "prekey {id} handed out twice");
        }
    }
    assert_eq!((seen.len(), last_resort), (40, 24));
}

async fn bad_input_gets_a_labelled_4xx_and_changes_nothing(s: &TestServer) {
    let u = s.register("quinn@example.com").await;
    // Malformed and wrongly-typed JSON.
    let resp = s
        .http
        .post(format!("{}/v1/login", s.base))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("json error");
    assert_eq!((v["code"].as_u64(), label(&v)), (Some(400), "bad-request"));
    let (st, v) = s
        .post("/v1/login", None, json!({"email": 5, "password": "x"}))
        .await;
    assert_eq!((st.as_u16(), label(&v)), (400, "bad-request"));
    let (st, v) = s
        .post(
            "/v1/login",
            None,
            json!({"email": "a@b.c", "handle": "x", "password": "x"}),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (400, "bad-request"));
    // Too large a body.
    let big = json!({"prekeys": [{"id": 1, "key": "A".repeat(300 * 1024)}]});
    let (st, v) = s.post("/v1/clients/abc/prekeys", Some(&u.token), big).await;
    assert_eq!((st.as_u16(), label(&v)), (413, "too-large"));
    // Bad path parameters, unknown endpoints and methods.
    let (st, v) = s.get("/v1/users/localhost/not-a-uuid", &u.token).await;
    assert_eq!((st.as_u16(), label(&v)), (400, "bad-request"));
    let (st, v) = s.get("/v1/clients/zz-not-hex", &u.token).await;
    assert_eq!((st.as_u16(), label(&v)), (400, "bad-request"));
    let (st, v) = s.get("/v1/no/such/thing", &u.token).await;
    assert_eq!((st.as_u16(), label(&v)), (404, "no-endpoint"));
    let (st, v, _) = s
        .call(Method::PATCH, "/v1/self", Some(&u.token), None)
        .await;
    assert_eq!((st.as_u16(), label(&v)), (405, "method-not-allowed"));
    // Bad prekeys change nothing.
    let (_, c) = s.add_client(&u, "permanent", [1]).await;
    let id = client_id(&c);
    for bad in [
        json!({"prekeys": [{"id": 65535, "key": key_for(1)}]}),
        json!({"prekeys": [{"id": 5, "key": "not base64!"}]}),
        json!({"prekeys": [{"id": 5, "key": key_for(5)}, {"id": 5, "key": key_for(5)}]}),
        json!({"prekeys": [{"id": 70000, "key": key_for(5)}]}),
    ] {
        let (st, v) = s
            .post(
                &format!("/v1/clients/{id}/prekeys"),
                Some(&u.token),
                bad.clone(),
            )
            .await;
        assert!(
            st.is_client_error() && !label(&v).is_empty(),
            "{bad}: {st} {v}"
        );
    }
    assert_eq!(
        s.get(&format!("/v1/clients/{id}/prekeys"), &u.token)
            .await
            .1["count"],
        1
    );
    let mut no_last = new_client("permanent", [1], Some(PASSWORD));
    no_last["last_prekey"]["id"] = json!(3);
    let (st, v) = s.post("/v1/clients", Some(&u.token), no_last).await;
    assert_eq!((st.as_u16(), label(&v)), (400, "bad-prekey"));
    assert_eq!(
        s.get("/v1/clients", &u.token)
            .await
            .1
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

async fn notifications(
    s: &TestServer, token: &str, client: &str, since: Option<u64>, size: Option<u64>,
) -> (u16, Value) {
    let mut path = format!("/v1/notifications?client={client}");
    if let Some(since) = since {
        path.push_str(&format!("&since={since}"));
    }
    if let Some(size) = size {
        path.push_str(&format!("&size={size}"));
    }
    let (st, v) = s.get(&path, token).await;
    (st.as_u16(), v)
}

fn types(page: &Value) -> Vec<&str> {
    page["notifications"]
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["payload"]["type"].as_str().unwrap_or("?"))
        .collect()
}

async fn device_queues_tell_the_other_devices(s: &TestServer) {
    let u = s.register("rosa@example.com").await;
    let (_, a) = s.add_client(&u, "permanent", [1]).await;
    let (_, b) = s.add_client(&u, "permanent", [1]).await;
    let (a, b) = (
        a["id"].as_str().expect("id").to_owned(),
        b["id"].as_str().expect("id").to_owned(),
    );
    let (st, page) = notifications(s, &u.token, &a, None, None).await;
    assert_eq!(st, 200, "{page}");
    assert_eq!(
        types(&page),
        ["user.client-add"],
        "device A is told of device B"
    );
    assert_eq!(
        page["notifications"][0]["payload"]["client"]["id"],
        b.as_str()
    );
    assert_eq!(page["notifications"][0]["id"], 1);
    assert!(
        types(&notifications(s, &u.token, &b, None, None).await.1).is_empty(),
        "B is not told of itself"
    );

    let (st, _, _) = s
        .call(
            Method::PUT,
            "/v1/self",
            Some(&u.token),
            Some(json!({"name": "Rosa R"})),
        )
        .await;
    assert_eq!(st, 200);
    let (_, page) = notifications(s, &u.token, &a, Some(1), None).await;
    assert_eq!(types(&page), ["user.update"]);
    assert_eq!(
        page["notifications"][0]["payload"]["update"]["name"],
        "Rosa R"
    );
    assert_eq!(
        types(&notifications(s, &u.token, &b, None, None).await.1),
        ["user.update"]
    );

    // Paging, and the newest event.
    let (_, page) = notifications(s, &u.token, &a, None, Some(1)).await;
    assert_eq!(
        (types(&page).len(), page["has_more"].as_bool()),
        (1, Some(true))
    );
    let (st, last) = s
        .get(&format!("/v1/notifications/last?client={a}"), &u.token)
        .await;
    assert_eq!((st.as_u16(), last["id"].as_u64()), (200, Some(2)));

    // Removing B tells A.
    let (st, _, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/clients/{b}"),
            Some(&u.token),
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(st, 200);
    let (_, page) = notifications(s, &u.token, &a, Some(2), None).await;
    assert_eq!(types(&page), ["user.client-remove"]);
    assert_eq!(page["notifications"][0]["payload"]["client"], b.as_str());

    // Only your own devices, and sane sizes.
    let other = s.register("saul@example.com").await;
    let (st, v) = notifications(s, &other.token, &a, None, None).await;
    assert_eq!((st, label(&v)), (404, "client-not-found"));
    assert_eq!(notifications(s, &u.token, &a, None, Some(0)).await.0, 400);
    assert_eq!(
        notifications(s, &u.token, &a, None, Some(5000)).await.0,
        400
    );
}

async fn purged_events_answer_notifications_lost(s: &TestServer) {
    let u = s.register("tess@example.com").await;
    let (_, a) = s.add_client(&u, "permanent", [1]).await;
    let a = a["id"].as_str().expect("id").to_owned();
    for name in ["One", "Two", "Three"] {
        s.call(
            Method::PUT,
            "/v1/self",
            Some(&u.token),
            Some(json!({"name": name})),
        )
        .await;
    }
    // Device A read up to event 1, then went quiet for longer than the retention.
    assert_eq!(
        types(&notifications(s, &u.token, &a, None, None).await.1).len(),
        3
    );
    s.running.clock.advance(29 * 24 * 3600);
    let token = s.with_cookie("/v1/access", &u.cookie).await.1["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    s.call(
        Method::PUT,
        "/v1/self",
        Some(&token),
        Some(json!({"name": "Four"})),
    )
    .await;
    // Reading does not purge: that is the server's own task's work.
    let (st, v) = notifications(s, &token, &a, Some(1), None).await;
    assert_eq!((st, types(&v).len()), (200, 3), "{v}");
    assert_eq!(s.running.purge_expired_events().await.expect("purged"), 3);
    let (st, v) = notifications(s, &token, &a, Some(1), None).await;
    assert_eq!((st, label(&v)), (404, "notifications-lost"), "{v}");
    assert_eq!(types(&v), ["user.update"], "with what is still there");
    assert_eq!(v["notifications"][0]["id"], 4);
    assert_eq!(v["notifications"][0]["payload"]["update"]["name"], "Four");
    // A device that had read everything lost nothing.
    let (st, v) = notifications(s, &token, &a, Some(3), None).await;
    assert_eq!((st, types(&v)), (200, vec!["user.update"]));
}

/// Sockets per device are bounded: the ninth is refused with 429 until one
/// closes.
async fn a_device_has_at_most_eight_sockets(s: &TestServer) {
    let u = s.register("sockets@example.com").await;
    let (_, a) = s.add_client(&u, "permanent", [1]).await;
    let a = a["id"].as_str().expect("id").to_owned();
    let mut sockets = Vec::new();
    for _ in 0..8 {
        sockets.push(s.upgrade(&u.token, &a, None).await.expect("upgraded"));
    }
    let ninth = s.upgrade(&u.token, &a, None).await;
    assert_eq!(refused_with(&ninth), Some(429), "the ninth is refused");
    drop(sockets.pop());
    // The server notices the closed socket once its task ends.
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok(socket) = s.upgrade(&u.token, &a, None).await {
            reopened = Some(socket);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(reopened.is_some(), "room again after one closed");
}

/// A socket lives as long as the token it was opened with: past its expiry the
/// next thing the socket does is close with `token-expired`.
async fn a_socket_ends_with_its_token(s: &TestServer) {
    let u = s.register("expiry@example.com").await;
    let (_, a) = s.add_client(&u, "permanent", [1]).await;
    let a = a["id"].as_str().expect("id").to_owned();
    let mut live = s.upgrade(&u.token, &a, None).await.expect("upgraded");
    s.running.clock.advance(16 * 60);
    // Something happens for the user (with a fresh token): the socket wakes,
    // finds its token expired, and closes instead of delivering.
    let token = s.with_cookie("/v1/access", &u.cookie).await.1["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    s.call(
        Method::PUT,
        "/v1/self",
        Some(&token),
        Some(json!({"name": "Later"})),
    )
    .await;
    assert_eq!(
        close_reason(&mut live, true).await.as_deref(),
        Some("token-expired")
    );
}

/// A token minted for one device (`/v1/access?client=`) reads only that
/// device's queue and acts only as it.
async fn device_bound_tokens_act_only_as_their_device(s: &TestServer) {
    let u = s.register("bound@example.com").await;
    let (_, a1) = s.add_client(&u, "permanent", [1]).await;
    let (_, a2) = s.add_client(&u, "permanent", [2]).await;
    let (a1, a2) = (
        a1["id"].as_str().expect("id").to_owned(),
        a2["id"].as_str().expect("id").to_owned(),
    );
    let (st, v) = s
        .with_cookie(&format!("/v1/access?client={a1}"), &u.cookie)
        .await;
    assert_eq!(st, 200, "{v}");
    let bound = v["access_token"].as_str().expect("token").to_owned();
    assert_eq!(notifications(s, &bound, &a1, None, None).await.0, 200);
    let (st, v) = notifications(s, &bound, &a2, None, None).await;
    assert_eq!((st, label(&v)), (403, "token-bound"), "{v}");
    let (st, _) = s.get(&format!("/v1/clients/{a1}/prekeys"), &bound).await;
    assert_eq!(st, 200);
    let (st, v) = s.get(&format!("/v1/clients/{a2}/prekeys"), &bound).await;
    assert_eq!((st.as_u16(), label(&v)), (403, "token-bound"), "{v}");
    let (st, v) = s
        .post(
            &format!("/v1/clients/{a2}/generation"),
            Some(&bound),
            json!({"generation": 1}),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (403, "token-bound"), "{v}");
    // The socket too.
    let refused = s.upgrade(&bound, &a2, None).await;
    assert_eq!(refused_with(&refused), Some(403));
    // An unbound token still acts as any of the user's devices.
    assert_eq!(notifications(s, &u.token, &a2, None, None).await.0, 200);
}

/// A cursor near `u64::MAX`, on the queue and on the socket: told that events
/// are lost, never a crash or a wrong answer.
async fn cursors_beyond_any_queue_are_lost_not_overflowed(s: &TestServer) {
    let u = s.register("max@example.com").await;
    let (_, a) = s.add_client(&u, "permanent", [1]).await;
    let a = a["id"].as_str().expect("id").to_owned();
    for since in [u64::MAX, u64::MAX - 1, i64::MAX as u64, i64::MAX as u64 + 1] {
        let (st, v) = notifications(s, &u.token, &a, Some(since), None).await;
        assert_eq!((st, label(&v)), (404, "notifications-lost"), "{since}: {v}");
    }
    let mut live = s
        .upgrade(&u.token, &a, Some(u64::MAX))
        .await
        .expect("upgraded");
    assert_eq!(
        close_reason(&mut live, false).await.as_deref(),
        Some("notifications-lost")
    );
}

async fn the_websocket_pushes_events_live_and_catches_up(s: &TestServer) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let u = s.register("uri@example.com").await;
    let (_, a) = s.add_client(&u, "permanent", [1]).await;
    let a = a["id"].as_str().expect("id").to_owned();
    let ws_base = s.base.replace("http://", "ws://");

    let mut request = format!("{ws_base}/v1/await?client={a}")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", u.token).parse().expect("header"),
    );
    let (mut live, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    for (i, name) in ["Uri One", "Uri Two"].iter().enumerate() {
        s.call(
            Method::PUT,
            "/v1/self",
            Some(&u.token),
            Some(json!({"name": name})),
        )
        .await;
        let event = next_event(&mut live).await;
        assert_eq!(event["id"], i as u64 + 1);
        assert_eq!(event["payload"]["type"], "user.update");
        assert_eq!(event["payload"]["update"]["name"], *name);
    }
    // A device reconnecting from its cursor gets what it missed, in order, then live.
    let url = format!(
        "{ws_base}/v1/await?client={a}&since=0&access_token={}",
        u.token
    );
    let (mut again, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    assert_eq!(next_event(&mut again).await["id"], 1);
    assert_eq!(next_event(&mut again).await["id"], 2);
    s.call(
        Method::PUT,
        "/v1/self",
        Some(&u.token),
        Some(json!({"name": "Uri Three"})),
    )
    .await;
    assert_eq!(next_event(&mut again).await["id"], 3);
    assert_eq!(
        next_event(&mut live).await["id"],
        3,
        "every socket of the device"
    );

    // No token, or someone else's device: refused before the upgrade.
    let err = tokio_tungstenite::connect_async(format!("{ws_base}/v1/await?client={a}"))
        .await
        .expect_err("no token");
    assert!(
        matches!(err, tokio_tungstenite::tungstenite::Error::Http(ref r) if r.status() == 401),
        "{err}"
    );
    let other = s.register("vera@example.com").await;
    let url = format!("{ws_base}/v1/await?client={a}&access_token={}", other.token);
    let err = tokio_tungstenite::connect_async(url)
        .await
        .expect_err("not yours");
    assert!(
        matches!(err, tokio_tungstenite::tungstenite::Error::Http(ref r) if r.status() == 404),
        "{err}"
    );
}

/// The trust chain as the server sees it: a device's identity key signed by the
/// user's root key is checked, stored and shown to everyone; the recovery bundle
/// is an opaque blob only its owner reads.
async fn device_signatures_and_the_recovery_bundle(s: &TestServer) {
    use base64::Engine;
    use ed25519_dalek::Signer;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let u = s.register("root@example.com").await;
    let other = s.register("peer@example.com").await;
    let root = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let identity = [9u8; 32];
    let signed_for = |user: parley_api::UserId| {
        root.sign(&parley_api::device_signature_message(user, &identity))
            .to_bytes()
    };
    let trust = |signature: &[u8]| {
        json!({
            "identity_key": b64(&identity),
            "root_key": b64(root.verifying_key().as_bytes()),
            "signature": b64(signature),
        })
    };
    let with = |t: Value| {
        let mut v = new_client("permanent", [1], Some(PASSWORD));
        v["trust"] = t;
        v
    };
    // Refused: a signature for another user, a flipped bit, wrong lengths.
    let mut flipped = signed_for(u.id);
    flipped[0] ^= 1;
    let mut short = trust(&signed_for(u.id));
    short["identity_key"] = json!(b64(&[1; 31]));
    for bad in [
        trust(&signed_for(other.id)),
        trust(&flipped),
        trust(&[0; 63]),
        short,
    ] {
        let (st, v) = s.post("/v1/clients", Some(&u.token), with(bad)).await;
        assert_eq!((st.as_u16(), label(&v)), (400, "invalid-device-signature"));
    }
    let (_, v) = s.get("/v1/clients", &u.token).await;
    assert_eq!(v.as_array().map(Vec::len), Some(0), "nothing was added");

    let good = trust(&signed_for(u.id));
    let (st, v) = s
        .post("/v1/clients", Some(&u.token), with(good.clone()))
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["trust"], good);
    let (_, v) = s
        .get(
            &format!("/v1/users/localhost/{}/clients", u.id),
            &other.token,
        )
        .await;
    assert_eq!(v[0]["trust"], good, "peers see the signature");
    let (st, v) = s.add_client(&u, "permanent", [1]).await;
    assert_eq!(st, 201);
    assert_eq!(v["trust"], Value::Null, "an unsigned device says so");

    let path = "/v1/self/recovery-bundle";
    let (st, v) = s.get(path, &u.token).await;
    assert_eq!((st.as_u16(), label(&v)), (404, "no-recovery-bundle"));
    let put = |body: Value| s.call(Method::PUT, path, Some(&u.token), Some(body));
    for bad in [
        json!({"bundle": "***"}),
        json!({"bundle": ""}),
        json!({"bundle": b64(&vec![1; parley_api::limits::MAX_RECOVERY_BUNDLE + 1])}),
    ] {
        let (st, v, _) = put(bad).await;
        assert_eq!((st.as_u16(), label(&v)), (400, "invalid-recovery-bundle"));
    }
    let (st, _) = s.get(path, &u.token).await;
    assert_eq!(st, 404, "bad bundles change nothing");
    for bundle in [b64(b"first"), b64(&[0xff; 2000])] {
        let (st, _, _) = put(json!({ "bundle": bundle })).await;
        assert_eq!(st, 200);
        let (st, v) = s.get(path, &u.token).await;
        assert_eq!(
            (st.as_u16(), v["bundle"].as_str()),
            (200, Some(bundle.as_str()))
        );
    }
    let (st, _) = s.get(path, &other.token).await;
    assert_eq!(st, 404, "each user reads only their own");
}

/// How many password-reset mails went to `to`.
fn reset_mails(s: &TestServer, to: &str) -> usize {
    std::fs::read_dir(s.outbox())
        .expect("outbox exists")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("mail"))
        .filter(|m| m.contains(&format!("To: {to}")) && m.contains("key:"))
        .count()
}

async fn a_pending_reset_is_neither_replaced_nor_given_fresh_tries(s: &TestServer) {
    let email = "rita@example.com";
    s.register(email).await;
    // Ten requests at once start one reset: one code, one mail.
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (http, url) = (s.http.clone(), format!("{}/v1/password-reset", s.base));
            tokio::spawn(async move {
                http.post(url)
                    .json(&json!({"email": email}))
                    .send()
                    .await
                    .expect("send")
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task"), 201);
    }
    assert_eq!(reset_mails(s, email), 1, "one reset for ten requests");
    let (key, code) = reset_key_and_code(&s.last_mail_to(email));
    // A wrong try, then a new request: the pending code stands with the
    // tries it has left (the request answers alike and mails nothing).
    let wrong = json!({"key": key, "code": "wrong", "password": "New-secret-1"});
    let (st, _) = s
        .post("/v1/password-reset/complete", None, wrong.clone())
        .await;
    assert_eq!(st, 403);
    let (st, _) = s
        .post("/v1/password-reset", None, json!({"email": email}))
        .await;
    assert_eq!(st, 201);
    assert_eq!(reset_mails(s, email), 1);
    for _ in 0..2 {
        let (st, _) = s
            .post("/v1/password-reset/complete", None, wrong.clone())
            .await;
        assert_eq!(st, 403);
    }
    let right = json!({"key": key, "code": code, "password": "New-secret-1"});
    let (st, v) = s.post("/v1/password-reset/complete", None, right).await;
    assert_eq!(
        (st.as_u16(), label(&v)),
        (403, "invalid-code"),
        "three tries in all, not three after each request"
    );
    // Used up, a new request starts a new reset.
    s.post("/v1/password-reset", None, json!({"email": email}))
        .await;
    assert_eq!(reset_mails(s, email), 2);
    let (key, code) = reset_key_and_code(&s.last_mail_to(email));
    let right = json!({"key": key, "code": code, "password": "New-secret-1"});
    assert_eq!(
        s.post("/v1/password-reset/complete", None, right).await.0,
        200
    );
}

async fn prekeys_are_claimed_only_within_a_relationship(s: &TestServer) {
    let owner = s.register("pia@example.com").await;
    let stranger = s.register("pim@example.com").await;
    let (_, c) = s.add_client(&owner, "permanent", 1..=10).await;
    let id = client_id(&c);
    let count = || async {
        s.get(&format!("/v1/clients/{id}/prekeys"), &owner.token)
            .await
            .1["count"]
            .as_u64()
            .expect("count")
    };
    let path = format!("/v1/users/localhost/{}/prekeys/{id}", owner.id);
    // A stranger gets nothing, whether the device exists or not, one by one
    // or many at once.
    let (st, v) = s.get(&path, &stranger.token).await;
    assert_eq!((st.as_u16(), label(&v)), (403, "not-related"), "{v}");
    let (st, v) = s
        .get(
            &format!("/v1/users/localhost/{}/prekeys/999", owner.id),
            &stranger.token,
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (403, "not-related"), "{v}");
    let body = json!({"localhost": {owner.id.to_string(): [id.to_string()]}});
    let (st, v) = s
        .post(
            "/v1/users/list-prekeys",
            Some(&stranger.token),
            body.clone(),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["localhost"][owner.id.to_string()][id.to_string()],
        Value::Null
    );
    assert_eq!(count().await, 10, "nothing was taken");
    // Connected, they may.
    let (st, v) = s
        .post(
            &format!("/v1/connections/localhost/{}", owner.id),
            Some(&stranger.token),
            json!({}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, _) = s.get(&path, &stranger.token).await;
    assert_eq!(st, 403, "a request alone is not a relationship");
    let (st, v, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/v1/connections/localhost/{}", stranger.id),
            Some(&owner.token),
            Some(json!({"status": "accepted"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s.get(&path, &stranger.token).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s
        .post("/v1/users/list-prekeys", Some(&stranger.token), body)
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["localhost"][owner.id.to_string()][id.to_string()]["id"].is_u64());
    assert_eq!(count().await, 8);
    // A block ends it.
    let (st, _, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/v1/connections/localhost/{}", stranger.id),
            Some(&owner.token),
            Some(json!({"status": "blocked"})),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = s.get(&path, &stranger.token).await;
    assert_eq!(st, 403);
    // The owner may always claim their own devices' prekeys.
    let (st, _) = s.get(&path, &owner.token).await;
    assert_eq!(st, 200);
}

async fn logging_out_closes_that_logins_sockets_only(s: &TestServer) {
    let u = s.register("lou@example.com").await;
    let (_, c) = s.add_client(&u, "permanent", [1]).await;
    let id = client_id(&c);
    // A second login of the same account, with its own socket.
    let (st, v, cookie2) = s.login("lou@example.com", PASSWORD, true, None).await;
    assert_eq!(st, 200, "{v}");
    let cookie2 = cookie2.expect("cookie");
    let token2 = v["access_token"].as_str().expect("token").to_owned();
    let mut first = s.connect(&u.token, id, None).await;
    let mut second = s.connect(&token2, id, None).await;
    // Logging out of the second login closes its socket ...
    let (st, _) = s.with_cookie("/v1/access/logout", &cookie2).await;
    assert_eq!(st, 200);
    assert_eq!(
        close_reason(&mut second, true).await.as_deref(),
        Some("logged-out")
    );
    // Its access token, still unexpired, opens no new socket.
    let refused = s.upgrade(&token2, &id.to_string(), None).await;
    assert_eq!(refused_with(&refused), Some(401));
    // ... and not the first one's, which still gets events.
    let (_, c2) = s.add_client(&u, "temporary", [2]).await;
    let added = next_event(&mut first).await;
    assert_eq!(added["payload"]["type"], "user.client-add", "{added}");
    assert_eq!(added["payload"]["client"]["id"], c2["id"]);
}

async fn notification_pages_are_bounded_in_bytes(s: &TestServer) {
    let u = s.register("pag@example.com").await;
    let (_, c) = s.add_client(&u, "permanent", [1]).await;
    let id = client_id(&c);
    // Twelve events of about 200 KiB each: messages from a second device, in
    // a group of one.
    let (st, v) = s
        .post(
            "/v1/conversations",
            Some(&u.token),
            json!({"name": "notes", "users": []}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let conv = v["id"]["id"].as_str().expect("id").to_owned();
    let (_, c2) = s.add_client(&u, "temporary", [2]).await;
    let other = client_id(&c2);
    use base64::Engine as _;
    let big = base64::engine::general_purpose::STANDARD.encode(vec![1u8; 150 * 1024]);
    for _ in 0..12 {
        let (st, v) = s
            .post(
                &format!("/v1/conversations/localhost/{conv}/proteus/messages"),
                Some(&u.token),
                json!({"sender": other, "recipients": {"localhost": {u.id.to_string(): {id.to_string(): big}}}}),
            )
            .await;
        assert_eq!(st, 201, "{v}");
    }
    // Pages of at most 1 MiB, however many events were asked for; paging
    // through them loses nothing.
    let mut since = None::<u64>;
    let mut messages = 0;
    let mut pages = 0;
    loop {
        let query = since.map(|s| format!("&since={s}")).unwrap_or_default();
        let resp = s
            .http
            .get(format!(
                "{}/v1/notifications?client={id}&size=1000{query}",
                s.base
            ))
            .bearer_auth(&u.token)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let body = resp.bytes().await.expect("body");
        assert!(
            body.len() <= 1024 * 1024 + 64 * 1024,
            "{} bytes",
            body.len()
        );
        let page: Value = serde_json::from_slice(&body).expect("json");
        let events = page["notifications"].as_array().expect("events");
        pages += 1;
        messages += events
            .iter()
            .filter(|e| e["payload"]["type"] == "conversation.otr-message-add")
            .count();
        since = events.last().and_then(|e| e["id"].as_u64()).or(since);
        if page["has_more"] == false {
            break;
        }
        assert!(!events.is_empty());
    }
    assert_eq!(messages, 12);
    assert!(pages >= 2, "{pages} pages");
}
