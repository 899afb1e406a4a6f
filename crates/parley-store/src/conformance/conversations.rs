//! Conversations, members and deliveries, alone and concurrent.

use super::*;

pub(super) async fn conversations(s: &dyn Store) {
    let a = user_with_devices(s, "conv-a@example.com", &[1]).await;
    let b = user_with_devices(s, "conv-b@example.com", &[1]).await;
    let c = user_with_devices(s, "conv-c@example.com", &[1]).await;
    let conv = group(&a);
    let event = |payload| Notify { payload, at: 7 };
    s.create_conversation(
        &conv,
        &[
            MemberRecord {
                user: a.id,
                role: Role::Admin,
            },
            MemberRecord {
                user: b.id,
                role: Role::Member,
            },
        ],
        event("created"),
    )
    .await
    .expect("create");
    assert_eq!(payloads(s, &a, 1).await, ["created"]);
    assert_eq!(payloads(s, &b, 1).await, ["created"]);
    assert!(payloads(s, &c, 1).await.is_empty());
    // A member that does not exist: nothing is created.
    let ghost = group(&a);
    assert!(
        s.create_conversation(
            &ghost,
            &[MemberRecord {
                user: UserId::random(),
                role: Role::Member
            }],
            QUIET
        )
        .await
        .is_err()
    );
    assert_eq!(s.conversation(ghost.id).await.expect("read"), None);
    // Adding beyond the limit changes nothing.
    let add_c = ConversationChange::AddMembers {
        members: vec![MemberRecord {
            user: c.id,
            role: Role::Member,
        }],
        max: 2,
    };
    assert!(matches!(
        s.change_conversation(conv.id, &add_c, event("joined"))
            .await,
        Err(StoreError::Limit("members"))
    ));
    assert_eq!(s.members(conv.id).await.expect("members").len(), 2);
    assert_eq!(payloads(s, &a, 1).await.len(), 1);
    let add_c = ConversationChange::AddMembers {
        members: vec![MemberRecord {
            user: c.id,
            role: Role::Member,
        }],
        max: 3,
    };
    s.change_conversation(conv.id, &add_c, event("joined"))
        .await
        .expect("add");
    assert_eq!(payloads(s, &c, 1).await, ["joined"]);
    s.change_conversation(
        conv.id,
        &ConversationChange::Rename("renamed".into()),
        event("renamed"),
    )
    .await
    .expect("rename");
    s.change_conversation(
        conv.id,
        &ConversationChange::MessageTimer(Some(60_000)),
        QUIET,
    )
    .await
    .expect("timer");
    s.change_conversation(conv.id, &ConversationChange::ReceiptMode(1), QUIET)
        .await
        .expect("receipts");
    s.change_conversation(
        conv.id,
        &ConversationChange::SetRole(MemberRecord {
            user: b.id,
            role: Role::Admin,
        }),
        QUIET,
    )
    .await
    .expect("role");
    let now = s
        .conversation(conv.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        (now.name.as_deref(), now.message_timer, now.receipt_mode),
        (Some("renamed"), Some(60_000), 1)
    );
    assert!(
        s.members(conv.id)
            .await
            .expect("members")
            .contains(&MemberRecord {
                user: b.id,
                role: Role::Admin
            })
    );
    // The removed member is told too; then they are gone.
    s.change_conversation(
        conv.id,
        &ConversationChange::RemoveMember(c.id),
        event("left"),
    )
    .await
    .expect("remove");
    assert_eq!(
        payloads(s, &c, 1).await.last().map(String::as_str),
        Some("left")
    );
    assert!(matches!(
        s.change_conversation(conv.id, &ConversationChange::RemoveMember(c.id), QUIET)
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.change_conversation(
            ConversationId::random(),
            &ConversationChange::Rename("x".into()),
            QUIET
        )
        .await,
        Err(StoreError::NotFound)
    ));
    // Paging a user's conversations in id order.
    let mut ids = vec![conv.id];
    for _ in 0..4 {
        let more = group(&b);
        s.create_conversation(
            &more,
            &[MemberRecord {
                user: b.id,
                role: Role::Admin,
            }],
            QUIET,
        )
        .await
        .expect("create");
        ids.push(more.id);
    }
    ids.sort();
    let first = s.conversations_of(b.id, None, 3).await.expect("page");
    let rest = s
        .conversations_of(b.id, first.last().map(|c| c.id), 3)
        .await
        .expect("page");
    let seen: Vec<_> = first.iter().chain(&rest).map(|c| c.id).collect();
    assert_eq!(seen, ids);
    assert_eq!(s.conversations_of(c.id, None, 10).await.expect("page"), []);
}

pub(super) async fn deliveries(s: &dyn Store) {
    let a = user_with_devices(s, "post-a@example.com", &[1, 2]).await;
    let b = user_with_devices(s, "post-b@example.com", &[1]).await;
    let conv = group(&a);
    s.create_conversation(
        &conv,
        &[
            MemberRecord {
                user: a.id,
                role: Role::Admin,
            },
            MemberRecord {
                user: b.id,
                role: Role::Member,
            },
        ],
        QUIET,
    )
    .await
    .expect("create");
    let mut expected = vec![
        (a.id, vec![ClientId(1), ClientId(2)]),
        (b.id, vec![ClientId(1)]),
    ];
    expected.sort();
    assert_eq!(
        s.roster(conv.id).await.expect("roster"),
        Some(Roster {
            members: expected.clone()
        })
    );
    assert_eq!(
        s.roster(ConversationId::random()).await.expect("roster"),
        None
    );
    // A refused plan writes nothing and returns the roster it saw.
    let posted = s
        .post(conv.id, 9, Arc::new(|_| None))
        .await
        .expect("post")
        .expect("known");
    assert_eq!((posted.roster.members, posted.delivered), (expected, None));
    assert!(payloads(s, &b, 1).await.is_empty(), "nothing delivered");
    // A plan addressing every device but the sender's; one device that is gone.
    let (a_id, b_id) = (a.id, b.id);
    let plan: crate::DeliveryPlan = Arc::new(move |r: &Roster| {
        let mut out: Vec<Outgoing> = r
            .members
            .iter()
            .flat_map(|(u, cs)| cs.iter().map(move |c| (*u, *c)))
            .filter(|(u, c)| !(*u == a_id && *c == ClientId(1)))
            .map(|(user, client)| Outgoing {
                user,
                client,
                payload: format!("to {client}"),
            })
            .collect();
        out.push(Outgoing {
            user: b_id,
            client: ClientId(77),
            payload: "lost".into(),
        });
        Some(out)
    });
    let posted = s
        .post(conv.id, 9, plan.clone())
        .await
        .expect("post")
        .expect("known");
    let mut delivered: Vec<_> = posted
        .delivered
        .expect("delivered")
        .into_iter()
        .map(|d| (d.user, d.client))
        .collect();
    delivered.sort();
    let mut want = vec![(a.id, ClientId(2)), (b.id, ClientId(1))];
    want.sort();
    assert_eq!(delivered, want);
    assert_eq!(
        payloads(s, &a, 2).await.last().map(String::as_str),
        Some("to 2")
    );
    assert_eq!(
        payloads(s, &b, 1).await.last().map(String::as_str),
        Some("to 1")
    );
    assert!(
        s.post(ConversationId::random(), 9, plan)
            .await
            .expect("post")
            .is_none()
    );
    // A removed device leaves the roster at once.
    s.delete_client(a.id, ClientId(2), QUIET)
        .await
        .expect("delete");
    let roster = s.roster(conv.id).await.expect("roster").expect("known");
    assert!(roster.members.contains(&(a.id, vec![ClientId(1)])));
}

/// Many senders at once in one conversation: nothing is lost and every device's
/// queue holds the messages in the same order.
pub(super) async fn concurrent_deliveries(s: Arc<dyn Store>) {
    let a = user_with_devices(&*s, "race-a@example.com", &[1, 2]).await;
    let b = user_with_devices(&*s, "race-b@example.com", &[1, 2]).await;
    let c = user_with_devices(&*s, "race-c@example.com", &[1]).await;
    let conv = group_of(&*s, &[&a, &b, &c]).await;
    let tasks: Vec<_> = (0..48)
        .map(|n| {
            let s = s.clone();
            tokio::spawn(async move {
                let plan = to_everyone(format!("m{n}"));
                s.post(conv.id, 10, plan).await
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("post").expect("known");
    }
    let order = payloads(&*s, &a, 1).await;
    assert_eq!(order.len(), 48, "48 messages");
    assert_eq!(order.iter().collect::<HashSet<_>>().len(), 48, "each once");
    for (u, d) in [(&a, 2), (&b, 1), (&b, 2), (&c, 1)] {
        assert_eq!(
            payloads(&*s, u, d).await,
            order,
            "one order for every device"
        );
    }
}

/// Posts racing a member who joins and leaves: every message goes to exactly
/// the members at the moment it is stored. A post waiting for the conversation
/// while a join or leave commits must see the members after it (on PostgreSQL,
/// a roster read in the statement that waited for the lock would not).
pub(super) async fn deliveries_follow_membership(s: Arc<dyn Store>) {
    let a = user_with_devices(&*s, "churn-a@example.com", &[1]).await;
    let b = user_with_devices(&*s, "churn-b@example.com", &[1]).await;
    let c = user_with_devices(&*s, "churn-c@example.com", &[1]).await;
    let conv = group(&a);
    let member = |u: &User| MemberRecord {
        user: u.id,
        role: Role::Member,
    };
    s.create_conversation(&conv, &[member(&a), member(&b), member(&c)], QUIET)
        .await
        .expect("create");
    let posters: Vec<_> = (0..6)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..40 {
                    let plan = to_everyone(format!("m{t}-{i}"));
                    s.post(conv.id, 10, plan)
                        .await
                        .expect("post")
                        .expect("known");
                }
            })
        })
        .collect();
    let churn = {
        let s = s.clone();
        let c = member(&c);
        tokio::spawn(async move {
            for _ in 0..12 {
                s.change_conversation(
                    conv.id,
                    &ConversationChange::RemoveMember(c.user),
                    Notify {
                        payload: "left",
                        at: 10,
                    },
                )
                .await
                .expect("leave");
                tokio::task::yield_now().await;
                s.change_conversation(
                    conv.id,
                    &ConversationChange::AddMembers {
                        members: vec![c],
                        max: 10,
                    },
                    Notify {
                        payload: "joined",
                        at: 10,
                    },
                )
                .await
                .expect("join");
                tokio::task::yield_now().await;
            }
        })
    };
    for t in posters {
        t.await.expect("poster");
    }
    churn.await.expect("churn");
    // Alice's queue holds every message and every join and leave, in the one
    // order they were stored: what Carol should have is what came while she
    // was a member.
    let mut expected = Vec::new();
    let mut inside = true;
    for p in payloads(&*s, &a, 1).await {
        match p.as_str() {
            "left" => inside = false,
            "joined" => inside = true,
            _ if inside => expected.push(p),
            _ => {}
        }
    }
    let got: Vec<String> = payloads(&*s, &c, 1)
        .await
        .into_iter()
        .filter(|p| p != "left" && p != "joined")
        .collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "Carol got {} messages; {} were stored while she was a member",
        got.len(),
        expected.len()
    );
    assert_eq!(got, expected, "exactly the messages of her membership");
}

/// Events for two users stored while deliveries reach the same two: every
/// fan-out locks queue heads in one order, whatever order its caller names the
/// users in, so none deadlocks (PostgreSQL would abort one with 40P01).
pub(super) async fn fan_outs_never_deadlock(s: Arc<dyn Store>) {
    let x = user_with_devices(&*s, "lock-x@example.com", &[1, 2]).await;
    let y = user_with_devices(&*s, "lock-y@example.com", &[1, 2]).await;
    // The caller names the later one first.
    let (first, second) = if x.id.to_string() > y.id.to_string() {
        (x.id, y.id)
    } else {
        (y.id, x.id)
    };
    let conv = group(&x);
    let member = |u: UserId| MemberRecord {
        user: u,
        role: Role::Member,
    };
    s.create_conversation(&conv, &[member(x.id), member(y.id)], QUIET)
        .await
        .expect("create");
    let changes = {
        let s = s.clone();
        tokio::spawn(async move {
            for _ in 0..60 {
                let change = ConnectionChange {
                    sides: Vec::new(),
                    conversation: None,
                    notify: vec![(first, "told".into()), (second, "told".into())],
                    at: 5,
                };
                s.change_connection(&change).await.expect("no deadlock");
            }
        })
    };
    let posts = {
        let s = s.clone();
        tokio::spawn(async move {
            for _ in 0..60 {
                let plan = to_everyone("posted");
                s.post(conv.id, 5, plan)
                    .await
                    .expect("no deadlock")
                    .expect("known");
            }
        })
    };
    changes.await.expect("changes");
    posts.await.expect("posts");
    for (u, d) in [(&x, 1), (&x, 2), (&y, 1), (&y, 2)] {
        assert_eq!(payloads(&*s, u, d).await.len(), 120, "every event stored");
    }
}

/// Purges racing deliveries: neither waits forever for the other (on
/// PostgreSQL both lock queue heads in one order), and no event goes without
/// its queue saying so: afterwards, a cursor just before any event that is
/// gone reads as lost.
pub(super) async fn purges_race_deliveries(s: Arc<dyn Store>) {
    let a = user_with_devices(&*s, "purge-a@example.com", &[1, 2]).await;
    let b = user_with_devices(&*s, "purge-b@example.com", &[1, 2]).await;
    let c = user_with_devices(&*s, "purge-c@example.com", &[1]).await;
    let conv = group_of(&*s, &[&a, &b, &c]).await;
    let posters: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut stored = Vec::new();
                for at in 0..30 {
                    let posted = s
                        .post(conv.id, at, to_everyone(format!("m{t}-{at}")))
                        .await
                        .expect("post")
                        .expect("known");
                    stored.extend(
                        posted
                            .delivered
                            .expect("planned")
                            .into_iter()
                            .map(|d| (d.user, d.client, d.id)),
                    );
                }
                stored
            })
        })
        .collect();
    let purger = {
        let s = s.clone();
        tokio::spawn(async move {
            for before in 0..30 {
                s.purge_events(before).await.expect("purge");
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
    };
    let mut stored = Vec::new();
    for p in posters {
        stored.extend(p.await.expect("poster"));
    }
    purger.await.expect("purger");
    // And once more when all is stored, so there is something gone to check.
    s.purge_events(15).await.expect("purge");
    let mut gone = 0;
    for (user, client, id) in stored {
        let left = s
            .events(user, client, Some(id - 1), 1)
            .await
            .expect("page")
            .expect("known");
        if left.events.first().map(|e| e.id) != Some(id) {
            gone += 1;
            assert!(left.lost, "event {id} of {client} went without a trace");
        }
    }
    assert!(gone > 0, "the purges took something");
}
