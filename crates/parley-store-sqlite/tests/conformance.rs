//! The store conformance story against a real SQLite file.

use std::sync::Arc;

use parley_store_sqlite::SqliteStore;

/// A fresh SQLite file in a temporary directory.
async fn fresh() -> Option<parley_store::conformance::Fresh> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("parley.db"))
        .await
        .expect("opens");
    Some(parley_store::conformance::Fresh {
        store: Arc::new(store),
        keep: Box::new(dir),
    })
}

mod conformance {
    parley_store::conformance_tests!(super::fresh);
    parley_store::model_tests!(super::fresh);
}

#[tokio::test]
async fn reopening_keeps_the_data_and_does_not_reapply_migrations() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("parley.db");
    {
        let store = SqliteStore::open(&path).await.expect("opens");
        parley_store::AccountStore::put_activation_code(
            &store,
            &parley_store::OneTimeCode {
                key: "x@example.com".into(),
                user: None,
                code_hash: vec![1],
                expires_at: 1,
                tries: 0,
            },
        )
        .await
        .expect("put");
    }
    let store = SqliteStore::open(&path).await.expect("reopens");
    let code = parley_store::AccountStore::one_time_code(
        &store,
        parley_store::CodeKind::Activation,
        "x@example.com",
    )
    .await
    .expect("get");
    assert!(code.is_some());
}

/// Deliveries committed together stay independent: one that fails (here, a plan
/// that panics) fails alone, the others in its batch are stored, and the writer
/// goes on serving later deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_delivery_fails_alone_in_its_batch() {
    use parley_api::{ClientClass, ClientId, ClientType, ConversationKind, Role};
    use parley_store::{
        AccountStore, ClientRecord, ConversationRecord, ConversationStore, DeliveryPlan,
        DeviceStore, MemberRecord, Notify, Outgoing, PrekeyRecord, QueueStore, Roster, User,
    };

    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("parley.db"))
            .await
            .expect("opens"),
    );
    let quiet = Notify {
        payload: "{}",
        at: 1,
    };
    let user = User {
        id: parley_api::UserId::random(),
        name: "Batch".into(),
        email: "batch@example.com".into(),
        handle: None,
        password_hash: "x".into(),
        accent_id: 0,
        locale: "en".into(),
        picture: None,
        created_at: 1,
    };
    store.create_user(&user).await.expect("user");
    let device = ClientRecord {
        user: user.id,
        id: ClientId(1),
        kind: ClientType::Permanent,
        class: ClientClass::Desktop,
        model: None,
        label: None,
        cookie_label: None,
        created_at: 1,
        trust: None,
    };
    let last_resort = PrekeyRecord {
        id: 65535,
        key: "k".into(),
    };
    store
        .add_client(&device, &[last_resort], 7, quiet)
        .await
        .expect("device");
    let conv = ConversationRecord {
        id: parley_api::ConversationId::random(),
        kind: ConversationKind::Group,
        name: Some("batch".into()),
        creator: user.id,
        message_timer: None,
        receipt_mode: 0,
        created_at: 1,
    };
    let member = MemberRecord {
        user: user.id,
        role: Role::Admin,
    };
    store
        .create_conversation(&conv, &[member], quiet)
        .await
        .expect("conversation");

    let good = |n: usize| -> DeliveryPlan {
        let user = user.id;
        Arc::new(move |_: &Roster| {
            Some(vec![Outgoing {
                user,
                client: ClientId(1),
                payload: format!("\"m{n}\""),
            }])
        })
    };
    let bad: DeliveryPlan = Arc::new(|_: &Roster| panic!("a broken plan"));
    let mut tasks = Vec::new();
    for n in 0..20 {
        let (store, plan) = (store.clone(), if n == 10 { bad.clone() } else { good(n) });
        tasks.push(tokio::spawn(
            async move { store.post(conv.id, 2, plan).await },
        ));
    }
    let mut failed = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(posted) => assert!(posted.expect("known").delivered.is_some()),
            Err(_) => failed += 1,
        }
    }
    assert_eq!(failed, 1, "only the broken delivery failed");
    let after = store
        .post(conv.id, 3, good(99))
        .await
        .expect("still serving");
    assert!(after.is_some());
    let page = store
        .events(user.id, ClientId(1), None, 100)
        .await
        .expect("page")
        .expect("known");
    assert_eq!(
        page.events.len(),
        21,
        "the creation event, 19 from the batch and one after"
    );
}

/// Migration 0007: a `conversation.create` event queued in the old shape (the
/// whole conversation, members and all) is rewritten to name the
/// conversation, and reads as today's event; anything else is left alone, and
/// running the rewrite again changes nothing.
#[tokio::test]
async fn queued_create_events_are_rewritten_to_name_the_conversation() {
    use sqlx::sqlite::SqliteConnectOptions;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("parley.db");
    drop(SqliteStore::open(&path).await.expect("opens"));
    // Straight into the table, as an older server would have queued it.
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .foreign_keys(false);
    let pool = sqlx::SqlitePool::connect_with(options)
        .await
        .expect("raw pool");
    let conv = "6f2a7c0e-8d3b-4f6e-9a51-2b7c9d0e1f23";
    let creator = "0b9d8e7f-1a2b-4c3d-8e4f-5a6b7c8d9e0f";
    let old = format!(
        r#"{{"type":"conversation.create","conversation":{{"id":{{"id":"{conv}","domain":"localhost"}},"type":"group","name":"Plans","creator":"{creator}","members":[{{"id":{{"id":"{creator}","domain":"localhost"}},"role":"admin"}}],"message_timer":null,"receipt_mode":0}}}}"#
    );
    let other = r#"{"type":"user.client-remove","client":"a1"}"#;
    for (id, payload) in [(1, old.as_str()), (2, other)] {
        sqlx::query("INSERT INTO notifications (user_id, client_id, id, payload, created_at) VALUES ('u', 1, ?, ?, 0)")
            .bind(id)
            .bind(payload)
            .execute(&pool)
            .await
            .expect("insert");
    }
    let rewrite = include_str!("../migrations/0007_create_events_refer.sql");
    for _ in 0..2 {
        sqlx::raw_sql(rewrite)
            .execute(&pool)
            .await
            .expect("rewrite");
    }
    let rows: Vec<String> = sqlx::query_scalar("SELECT payload FROM notifications ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("read");
    let event: parley_api::EventPayload = serde_json::from_str(&rows[0]).expect("today's shape");
    match event {
        parley_api::EventPayload::ConversationCreate { conversation, from } => {
            assert_eq!(conversation.id.to_string(), conv);
            assert_eq!(conversation.domain, "localhost");
            assert_eq!(from.to_string(), creator);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rows[1], other, "other events untouched");
}
