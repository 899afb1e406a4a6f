//! Connections, blocks and who shares a conversation.

use super::*;

pub(super) async fn connections(s: &dyn Store) {
    let a = user_with_devices(s, "conn-a@example.com", &[1]).await;
    let b = user_with_devices(s, "conn-b@example.com", &[1, 2]).await;
    let side = |from: &User, to: &User, status| ConnectionRecord {
        from: from.id,
        to: to.id,
        status,
        conversation: None,
        updated_at: 5,
    };
    let request = ConnectionChange {
        sides: vec![
            (side(&a, &b, ConnectionStatus::Sent), None),
            (side(&b, &a, ConnectionStatus::Pending), None),
        ],
        conversation: None,
        notify: vec![(b.id, "request".into())],
        at: 5,
    };
    s.change_connection(&request).await.expect("request");
    assert_eq!(
        s.connection(a.id, b.id).await.expect("read"),
        Some(side(&a, &b, ConnectionStatus::Sent))
    );
    assert_eq!(payloads(s, &b, 1).await, ["request"]);
    assert_eq!(payloads(s, &b, 2).await, ["request"]);
    assert!(payloads(s, &a, 1).await.is_empty());
    // The same change again: the sides are no longer as expected; nothing changes.
    assert!(matches!(
        s.change_connection(&request).await,
        Err(StoreError::Conflict("connection"))
    ));
    assert_eq!(payloads(s, &b, 1).await.len(), 1);
    // Acceptance creates the 1:1 conversation with the change.
    let one2one = ConversationRecord {
        kind: ConversationKind::One2one,
        name: None,
        ..group(&a)
    };
    let members = vec![
        MemberRecord {
            user: a.id,
            role: Role::Admin,
        },
        MemberRecord {
            user: b.id,
            role: Role::Admin,
        },
    ];
    let accepted = |from: &User, to: &User, before| {
        (
            ConnectionRecord {
                conversation: Some(one2one.id),
                ..side(from, to, ConnectionStatus::Accepted)
            },
            Some(before),
        )
    };
    s.change_connection(&ConnectionChange {
        sides: vec![
            accepted(&b, &a, ConnectionStatus::Pending),
            accepted(&a, &b, ConnectionStatus::Sent),
        ],
        conversation: Some((one2one.clone(), members.clone())),
        notify: vec![(a.id, "accepted".into()), (b.id, "accepted".into())],
        at: 6,
    })
    .await
    .expect("accept");
    assert_eq!(
        s.conversation(one2one.id).await.expect("read"),
        Some(one2one.clone())
    );
    assert_eq!(s.members(one2one.id).await.expect("members").len(), 2);
    assert_eq!(payloads(s, &a, 1).await, ["accepted"]);
    let mine = s.connections(b.id).await.expect("list");
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].status, mine[0].conversation),
        (ConnectionStatus::Accepted, Some(one2one.id))
    );
    // Who shares a conversation, and who is blocked, both ways.
    let c = user_with_devices(s, "conn-c@example.com", &[1]).await;
    assert!(s.share_conversation(a.id, b.id).await.expect("read"));
    assert!(s.share_conversation(b.id, a.id).await.expect("read"));
    assert!(!s.share_conversation(a.id, c.id).await.expect("read"));
    assert!(s.blocks_involving(a.id).await.expect("read").is_empty());
    s.change_connection(&ConnectionChange {
        sides: vec![(
            ConnectionRecord {
                conversation: Some(one2one.id),
                ..side(&b, &a, ConnectionStatus::Blocked)
            },
            Some(ConnectionStatus::Accepted),
        )],
        conversation: None,
        notify: vec![],
        at: 7,
    })
    .await
    .expect("block");
    assert_eq!(
        s.blocks_involving(a.id).await.expect("read"),
        [b.id],
        "blocked"
    );
    assert_eq!(
        s.blocks_involving(b.id).await.expect("read"),
        [a.id],
        "blocker"
    );
    assert!(s.blocks_involving(c.id).await.expect("read").is_empty());
    // Deleting a user takes their connections and memberships with them.
    s.delete_user(a.id).await.expect("delete");
    assert!(s.connections(b.id).await.expect("list").is_empty());
    assert!(s.blocks_involving(b.id).await.expect("read").is_empty());
    assert!(!s.share_conversation(a.id, b.id).await.expect("read"));
    assert_eq!(
        s.roster(one2one.id).await.expect("roster"),
        Some(Roster {
            members: vec![(b.id, vec![ClientId(1), ClientId(2)])]
        })
    );
}
