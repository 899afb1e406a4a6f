//! MLS groups: epochs, the group's devices, messages stored once.

use crate::{
    GroupCommit, GroupKey, GroupProposals, GroupWrite, MlsGroupRecord, SharedMessage,
    SubconversationLeave, with_data,
};

use super::*;

const COMMIT: SharedMessage<'static> = SharedMessage {
    payload: r#"{"type":"commit"}"#,
    data: "Q09NTUlU",
};
const WELCOME: SharedMessage<'static> = SharedMessage {
    payload: r#"{"type":"welcome"}"#,
    data: "V0VMQ09NRQ==",
};
const HELLO: SharedMessage<'static> = SharedMessage {
    payload: r#"{"type":"hello"}"#,
    data: "SEVMTE8=",
};

/// Two users with devices 1 and 2 each, and an MLS conversation the first
/// creates, at epoch 0.
async fn mls_conversation(s: &dyn Store, tag: &str) -> (User, User, ConversationRecord) {
    let a = user(&format!("{tag}-a@example.com"));
    let b = user(&format!("{tag}-b@example.com"));
    for u in [&a, &b] {
        s.create_user(u).await.expect("create");
        for id in [1, 2] {
            s.add_client(
                &client(u, id, ClientType::Permanent),
                &prekeys([65535]),
                8,
                QUIET,
            )
            .await
            .expect("add");
        }
    }
    let conv = group(&a);
    let record = MlsGroupRecord {
        conversation: conv.id,
        subconversation: None,
        generation: 0,
        group_id: conv.id.0.as_bytes().to_vec(),
        suite: 2,
        epoch: 0,
        epoch_at: 1_700_000_000,
        mixed: false,
    };
    let admin = MemberRecord {
        user: a.id,
        role: Role::Admin,
    };
    s.create_mls_conversation(&conv, admin, &record, QUIET)
        .await
        .expect("create");
    assert_eq!(
        s.mls_group(&GroupKey::of(conv.id)).await.expect("group"),
        Some(record)
    );
    assert_eq!(
        s.mls_group_state(&GroupKey::of(conv.id))
            .await
            .expect("state"),
        None
    );
    (a, b, conv)
}

fn commit<'a>(
    conv: &'a ConversationRecord, from: u64, sender: (UserId, ClientId),
    added: &'a [(UserId, ClientId)], removed: &'a [(UserId, ClientId)], join: &'a [MemberRecord],
    leave: &'a [UserId],
) -> GroupCommit<'a> {
    GroupCommit {
        group: GroupKey::of(conv.id),
        group_id: conv.id.0.as_bytes(),
        from_epoch: from,
        from_revision: from,
        epoch: from + 1,
        at: 1_700_000_100,
        state: b"state",
        group_info: b"info",
        join,
        leave,
        sender,
        admin: None,
        added,
        removed,
        commit: COMMIT,
        welcome: (!added.is_empty()).then_some(WELCOME),
    }
}

/// The newest event of a device's queue, as the device reads it.
async fn newest(s: &dyn Store, u: &User, client: u64) -> Option<String> {
    s.events(u.id, ClientId(client), None, 100)
        .await
        .expect("events")
        .expect("a queue")
        .events
        .pop()
        .map(|e| e.payload)
}

pub(super) async fn mls_groups(s: &dyn Store) {
    let (a, b, conv) = mls_conversation(s, "groups").await;
    let (a1, a2, b1, b2) = (
        (a.id, ClientId(1)),
        (a.id, ClientId(2)),
        (b.id, ClientId(1)),
        (b.id, ClientId(2)),
    );
    let joining = [MemberRecord {
        user: b.id,
        role: Role::Member,
    }];
    // The creator's first commit: the welcome goes to every added device
    // but the sender; the commit to nobody (the group was empty).
    let added = [a1, a2, b1, b2];
    let GroupWrite::Done(delivered) = s
        .commit_group(&commit(&conv, 0, a1, &added, &[], &joining, &[]))
        .await
        .expect("commit")
    else {
        panic!("the first commit applies");
    };
    let welcome = with_data(WELCOME.payload, WELCOME.data);
    let mut to: Vec<_> = delivered.iter().map(|d| (d.user, d.client)).collect();
    to.sort();
    let mut expected = vec![a2, b1, b2];
    expected.sort();
    assert_eq!(to, expected);
    assert!(delivered.iter().all(|d| *d.payload == *welcome));
    assert_eq!(newest(s, &b, 1).await, Some(welcome.clone()));
    assert_eq!(newest(s, &b, 2).await, Some(welcome));
    let group = s
        .mls_group(&GroupKey::of(conv.id))
        .await
        .expect("group")
        .expect("there");
    assert_eq!((group.epoch, group.epoch_at), (1, 1_700_000_100));
    let state = s
        .mls_group_state(&GroupKey::of(conv.id))
        .await
        .expect("state")
        .expect("there");
    assert_eq!(state.epoch, 1);
    assert_eq!(state.state, b"state");
    assert_eq!(state.group_info, b"info");
    let mut devices = s
        .group_devices(&GroupKey::of(conv.id))
        .await
        .expect("devices");
    devices.sort();
    let mut all = added.to_vec();
    all.sort();
    assert_eq!(devices, all);
    assert!(
        s.members(conv.id)
            .await
            .expect("members")
            .iter()
            .any(|m| m.user == b.id)
    );

    // The same epoch again is stale, and changes nothing.
    assert_eq!(
        s.commit_group(&commit(&conv, 0, a1, &[], &[], &[], &[]))
            .await
            .expect("commit"),
        GroupWrite::Stale(1)
    );
    // A commit that needs an admin, for a user who is not one: nothing.
    let gone = [a2];
    let not_admin = GroupCommit {
        admin: Some(b.id),
        ..commit(&conv, 1, b1, &[], &gone, &[], &[])
    };
    assert_eq!(
        s.commit_group(&not_admin).await.expect("commit"),
        GroupWrite::NotAdmin
    );
    assert_eq!(
        s.mls_group(&GroupKey::of(conv.id))
            .await
            .expect("group")
            .expect("there")
            .epoch,
        1
    );
    assert_eq!(
        s.group_devices(&GroupKey::of(conv.id))
            .await
            .expect("devices")
            .len(),
        4
    );
    // A message goes to every device of the group but the sender, with its
    // data; from a past epoch too, within the limit.
    for e in [1, 0] {
        let GroupWrite::Done(sent) = s
            .post_group_message(
                (&GroupKey::of(conv.id), conv.id.0.as_bytes()),
                e,
                1,
                b1,
                HELLO,
                1_700_000_200,
            )
            .await
            .expect("post")
        else {
            panic!("posted at epoch {e}");
        };
        assert_eq!(sent.len(), 3);
    }
    assert_eq!(
        newest(s, &a, 2).await,
        Some(with_data(HELLO.payload, HELLO.data))
    );
    assert_eq!(
        s.post_group_message(
            (&GroupKey::of(conv.id), conv.id.0.as_bytes()),
            2,
            1,
            b1,
            HELLO,
            1_700_000_200
        )
        .await
        .expect("post"),
        GroupWrite::Stale(1)
    );
    let stranger = (UserId::random(), ClientId(9));
    for e in [1, 9] {
        assert_eq!(
            s.post_group_message(
                (&GroupKey::of(conv.id), conv.id.0.as_bytes()),
                e,
                0,
                stranger,
                HELLO,
                1_700_000_200
            )
            .await
            .expect("post"),
            GroupWrite::NotMember,
            "a stranger learns nothing of the epoch"
        );
    }

    // Removing the second user: the commit reaches their devices too (so
    // they learn it), then they are out of the group and the conversation.
    let GroupWrite::Done(sent) = s
        .commit_group(&commit(&conv, 1, a1, &[], &[b1, b2], &[], &[b.id]))
        .await
        .expect("commit")
    else {
        panic!("the removal applies");
    };
    assert_eq!(sent.len(), 3);
    assert_eq!(
        newest(s, &b, 1).await,
        Some(with_data(COMMIT.payload, COMMIT.data))
    );
    assert_eq!(
        s.group_devices(&GroupKey::of(conv.id))
            .await
            .expect("devices")
            .len(),
        2
    );
    assert!(
        !s.members(conv.id)
            .await
            .expect("members")
            .iter()
            .any(|m| m.user == b.id)
    );
    assert_eq!(
        s.post_group_message(
            (&GroupKey::of(conv.id), conv.id.0.as_bytes()),
            2,
            0,
            b1,
            HELLO,
            1_700_000_300
        )
        .await
        .expect("post"),
        GroupWrite::NotMember
    );

    // Purged by age with their events: what is left still reads whole.
    s.purge_events(1_700_000_150).await.expect("purge");
    assert_eq!(
        newest(s, &a, 2).await,
        Some(with_data(HELLO.payload, HELLO.data))
    );
    s.purge_events(1_800_000_000).await.expect("purge");
    assert_eq!(newest(s, &a, 2).await, None);

    // A device removed and added again in one commit gets the welcome (only).
    let again = [a2];
    let GroupWrite::Done(sent) = s
        .commit_group(&commit(&conv, 2, a1, &again, &again, &[], &[]))
        .await
        .expect("commit")
    else {
        panic!("the re-add applies");
    };
    let welcome = with_data(WELCOME.payload, WELCOME.data);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].user, sent[0].client), a2);
    assert_eq!(*sent[0].payload, *welcome);
    assert_eq!(newest(s, &a, 2).await, Some(welcome));
}

/// Of many commits on one epoch at once, exactly one applies.
pub(super) async fn concurrent_group_commits(s: Arc<dyn Store>) {
    let (a, _b, conv) = mls_conversation(&*s, "group-race").await;
    let a1 = (a.id, ClientId(1));
    let first = [a1];
    assert!(matches!(
        s.commit_group(&commit(&conv, 0, a1, &first, &[], &[], &[]))
            .await
            .expect("commit"),
        GroupWrite::Done(_)
    ));
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (s, conv) = (s.clone(), conv.clone());
            tokio::spawn(async move {
                s.commit_group(&commit(&conv, 1, a1, &[], &[], &[], &[]))
                    .await
                    .expect("commit")
            })
        })
        .collect();
    let mut applied = 0;
    for t in tasks {
        match t.await.expect("task") {
            GroupWrite::Done(_) => applied += 1,
            GroupWrite::Stale(2) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(applied, 1);
    assert_eq!(
        s.mls_group(&GroupKey::of(conv.id))
            .await
            .expect("group")
            .expect("there")
            .epoch,
        2
    );
}

/// The server's proposals: written only on the epoch and revision they were
/// made from (each write moves the revision: a commit, a proposal, a member
/// leaving), queued for the group's devices; a member who leaves is out of
/// the group's delivery at once; the removal keys: the first stored is the
/// one every later call reads.
pub(super) async fn group_proposals(s: &dyn Store) {
    let (a, b, conv) = mls_conversation(s, "proposals").await;
    let (a1, b1, b2) = (
        (a.id, ClientId(1)),
        (b.id, ClientId(1)),
        (b.id, ClientId(2)),
    );
    let joining = [MemberRecord {
        user: b.id,
        role: Role::Member,
    }];
    let added = [a1, b1, b2];
    // No state before the first commit: nothing to propose in.
    let early = GroupProposals {
        group: GroupKey::of(conv.id),
        epoch: 0,
        revision: 0,
        at: 1_700_000_150,
        state: b"early",
        proposals: &[HELLO],
        group_id: conv.id.0.as_bytes(),
    };
    assert!(s.propose_group(&early).await.is_err());
    assert!(matches!(
        s.commit_group(&commit(&conv, 0, a1, &added, &[], &joining, &[]))
            .await
            .expect("commit"),
        GroupWrite::Done(_)
    ));
    let state = s
        .mls_group_state(&GroupKey::of(conv.id))
        .await
        .expect("state")
        .expect("there");
    assert_eq!((state.epoch, state.revision), (1, 1));
    // Bob leaves: his devices are out of the group's delivery, the revision
    // moves, and the proposal goes to Ann's device only.
    s.change_conversation(conv.id, &ConversationChange::RemoveMember(b.id), QUIET)
        .await
        .expect("left");
    assert_eq!(
        s.group_devices(&GroupKey::of(conv.id))
            .await
            .expect("devices"),
        vec![a1]
    );
    let leaving = [b1, b2];
    let proposal = GroupProposals {
        epoch: 1,
        revision: 1,
        state: b"proposed",
        ..early
    };
    assert_eq!(
        s.propose_group(&proposal).await.expect("propose"),
        GroupWrite::Stale(1)
    );
    let proposal = GroupProposals {
        revision: 2,
        ..proposal
    };
    let GroupWrite::Done(sent) = s.propose_group(&proposal).await.expect("propose") else {
        panic!("proposed");
    };
    assert_eq!(
        sent.iter().map(|d| (d.user, d.client)).collect::<Vec<_>>(),
        vec![a1]
    );
    assert_eq!(
        newest(s, &a, 1).await,
        Some(with_data(HELLO.payload, HELLO.data))
    );
    assert_eq!(
        s.group_devices(&GroupKey::of(conv.id))
            .await
            .expect("devices"),
        vec![a1]
    );
    let state = s
        .mls_group_state(&GroupKey::of(conv.id))
        .await
        .expect("state")
        .expect("there");
    assert_eq!(
        (state.revision, state.state.as_slice()),
        (3, &b"proposed"[..])
    );
    // Made from the old revision: stale, nothing changes.
    assert_eq!(
        s.propose_group(&GroupProposals {
            state: b"lost",
            ..proposal
        })
        .await
        .expect("propose"),
        GroupWrite::Stale(1)
    );
    let left = [b.id];
    let stale_commit = commit(&conv, 1, a1, &[], &leaving, &[], &left);
    assert_eq!(
        s.commit_group(&stale_commit).await.expect("commit"),
        GroupWrite::Stale(1)
    );
    assert_eq!(
        s.mls_group_state(&GroupKey::of(conv.id))
            .await
            .expect("state")
            .expect("there")
            .state,
        b"proposed"
    );
    // The commit made from the proposals' state applies.
    assert!(matches!(
        s.commit_group(&GroupCommit {
            from_revision: 3,
            ..stale_commit
        })
        .await
        .expect("commit"),
        GroupWrite::Done(_)
    ));
    let state = s
        .mls_group_state(&GroupKey::of(conv.id))
        .await
        .expect("state")
        .expect("there");
    assert_eq!((state.epoch, state.revision), (2, 4));

    // Removal keys: the first stored stays.
    let first = s
        .mls_removal_key(0x0807, (b"secret-1", b"public-1"))
        .await
        .expect("stored");
    assert_eq!(first, (b"secret-1".to_vec(), b"public-1".to_vec()));
    let again = s
        .mls_removal_key(0x0807, (b"secret-2", b"public-2"))
        .await
        .expect("read");
    assert_eq!(again, first);
    let other = s
        .mls_removal_key(0x0403, (b"secret-3", b"public-3"))
        .await
        .expect("stored");
    assert_eq!(other.1, b"public-3");
}

/// A Proteus group's migration: its group made beside it (mixed, epoch 0)
/// with every member told, once; commits as in any group, the conversation's
/// members untouched by them; then MLS, once, every member told again.
pub(super) async fn group_migration(s: &dyn Store) {
    let a = user_with_devices(s, "migrate-a@example.com", &[1, 2]).await;
    let b = user_with_devices(s, "migrate-b@example.com", &[1]).await;
    let conv = group_of(s, &[&a, &b]).await;
    let record = MlsGroupRecord {
        conversation: conv.id,
        subconversation: None,
        generation: 0,
        group_id: conv.id.0.as_bytes().to_vec(),
        suite: 2,
        epoch: 0,
        epoch_at: 1_700_000_000,
        mixed: true,
    };
    const STARTED: Notify<'static> = Notify {
        payload: r#"{"type":"started"}"#,
        at: 1_700_000_000,
    };
    const FINISHED: Notify<'static> = Notify {
        payload: r#"{"type":"finished"}"#,
        at: 1_700_000_200,
    };
    assert!(s.start_migration(&record, STARTED).await.expect("starts"));
    assert_eq!(
        s.mls_group(&GroupKey::of(conv.id)).await.expect("group"),
        Some(record.clone())
    );
    // Once: a second start changes nothing and tells nobody.
    let again = MlsGroupRecord {
        suite: 1,
        ..record.clone()
    };
    assert!(!s.start_migration(&again, STARTED).await.expect("no-op"));
    assert_eq!(
        s.mls_group(&GroupKey::of(conv.id)).await.expect("group"),
        Some(record.clone())
    );
    for (u, client) in [(&a, 1), (&a, 2), (&b, 1)] {
        assert_eq!(payloads(s, u, client).await, [STARTED.payload]);
    }
    // A conversation that is gone has nothing to start.
    let gone = MlsGroupRecord {
        conversation: ConversationId::random(),
        subconversation: None,
        generation: 0,
        ..record.clone()
    };
    assert!(matches!(
        s.start_migration(&gone, STARTED).await,
        Err(StoreError::NotFound)
    ));

    // The group follows the conversation's members: a device of a user who
    // is not one is not taken (stale: the commit was checked against other
    // members), and a member who came and went before the first commit
    // leaves nothing to be stale against.
    let c = user_with_devices(s, "migrate-c@example.com", &[1]).await;
    let stranger = [(c.id, ClientId(1))];
    assert_eq!(
        s.commit_group(&commit(
            &conv,
            0,
            (a.id, ClientId(1)),
            &stranger,
            &[],
            &[],
            &[]
        ))
        .await
        .expect("refused"),
        GroupWrite::Stale(0)
    );
    let member = MemberRecord {
        user: c.id,
        role: Role::Member,
    };
    s.change_conversation(
        conv.id,
        &ConversationChange::AddMembers {
            members: vec![member],
            max: 10,
        },
        QUIET,
    )
    .await
    .expect("added");
    s.change_conversation(conv.id, &ConversationChange::RemoveMember(c.id), QUIET)
        .await
        .expect("removed");

    // An admin's first commit adds what can join; nobody joins or leaves.
    let added = [(a.id, ClientId(1)), (b.id, ClientId(1))];
    let write = s
        .commit_group(&commit(
            &conv,
            0,
            (a.id, ClientId(1)),
            &added,
            &[],
            &[],
            &[],
        ))
        .await
        .expect("commit");
    assert!(matches!(write, GroupWrite::Done(_)), "{write:?}");
    assert_eq!(s.members(conv.id).await.expect("members").len(), 2);
    assert!(
        s.mls_group(&GroupKey::of(conv.id))
            .await
            .expect("group")
            .expect("there")
            .mixed
    );
    // Its messages still go by Proteus.
    assert_eq!(
        s.post_group_message(
            (&GroupKey::of(conv.id), conv.id.0.as_bytes()),
            1,
            0,
            (a.id, ClientId(1)),
            HELLO,
            1_700_000_150
        )
        .await
        .expect("refused"),
        GroupWrite::Mixed
    );

    assert!(
        s.finish_migration(conv.id, FINISHED)
            .await
            .expect("finishes")
    );
    // A commit checked while it was mixed is stale now.
    assert_eq!(
        s.commit_group(&GroupCommit {
            from_revision: 1,
            ..commit(&conv, 1, (a.id, ClientId(1)), &[], &[], &[], &[])
        })
        .await
        .expect("refused"),
        GroupWrite::Stale(1)
    );
    let group = s
        .mls_group(&GroupKey::of(conv.id))
        .await
        .expect("group")
        .expect("there");
    assert!(!group.mixed);
    assert_eq!(group.epoch, 1);
    assert!(!s.finish_migration(conv.id, FINISHED).await.expect("no-op"));
    assert_eq!(
        payloads(s, &a, 2).await,
        [STARTED.payload, FINISHED.payload]
    );
    // An MLS conversation from the start is not mixed: nothing to finish.
    let (_, _, mls) = mls_conversation(s, "migrate-mls").await;
    assert!(!s.finish_migration(mls.id, FINISHED).await.expect("no-op"));
}

/// A subconversation's group beside its conversation's: opened once, its
/// own epoch, devices and delivery, left by proposal, reset to a new
/// generation, and out of reach of a user who leaves the conversation.
pub(super) async fn subconversations(s: &dyn Store) {
    let (a, b, conv) = mls_conversation(s, "subconversations").await;
    let (a1, a2, b1, b2) = (
        (a.id, ClientId(1)),
        (a.id, ClientId(2)),
        (b.id, ClientId(1)),
        (b.id, ClientId(2)),
    );
    let joining = [MemberRecord {
        user: b.id,
        role: Role::Member,
    }];
    let everyone = [a1, a2, b1, b2];
    let (ann, bob, bob2) = ([a1], [b1], [b2]);
    assert!(matches!(
        s.commit_group(&commit(&conv, 0, a1, &everyone, &[], &joining, &[]))
            .await
            .expect("commit"),
        GroupWrite::Done(_)
    ));
    let main = GroupKey::of(conv.id);
    let key = GroupKey::sub(conv.id, "conference");
    let record = MlsGroupRecord {
        conversation: conv.id,
        subconversation: Some("conference".into()),
        generation: 0,
        group_id: b"call-0".to_vec(),
        suite: 2,
        epoch: 0,
        epoch_at: 1_700_000_100,
        mixed: false,
    };
    assert_eq!(s.mls_group(&key).await.expect("group"), None);
    assert_eq!(s.open_subconversation(&record).await.expect("open"), record);
    // Opened once: a second opening finds the first.
    let other = MlsGroupRecord {
        group_id: b"call-other".to_vec(),
        ..record.clone()
    };
    assert_eq!(s.open_subconversation(&other).await.expect("open"), record);
    assert_eq!(
        s.subconversations(conv.id).await.expect("subconversations"),
        vec![record.clone()]
    );
    let nowhere = MlsGroupRecord {
        conversation: ConversationId::random(),
        group_id: b"call-nowhere".to_vec(),
        ..record.clone()
    };
    assert!(matches!(
        s.open_subconversation(&nowhere).await,
        Err(StoreError::NotFound)
    ));
    // Its first commit: the call's own epoch; the conversation's group and
    // devices are as they were.
    let first = GroupCommit {
        group: key.clone(),
        group_id: b"call-0",
        welcome: None,
        ..commit(&conv, 0, a1, &ann, &[], &[], &[])
    };
    assert!(matches!(
        s.commit_group(&first).await.expect("commit"),
        GroupWrite::Done(_)
    ));
    assert_eq!(
        s.mls_group(&key).await.expect("group").map(|g| g.epoch),
        Some(1)
    );
    assert_eq!(
        s.mls_group(&main).await.expect("group").map(|g| g.epoch),
        Some(1)
    );
    assert_eq!(s.group_devices(&key).await.expect("devices"), vec![a1]);
    assert_eq!(s.group_devices(&main).await.expect("devices").len(), 4);
    // Bob's first device joins the call: its commit goes to Ann's first
    // device alone.
    let join = GroupCommit {
        group: key.clone(),
        group_id: b"call-0",
        welcome: None,
        ..commit(&conv, 1, b1, &bob, &[], &[], &[])
    };
    let GroupWrite::Done(sent) = s.commit_group(&join).await.expect("commit") else {
        panic!("joined");
    };
    assert_eq!(
        sent.iter().map(|d| (d.user, d.client)).collect::<Vec<_>>(),
        vec![a1]
    );
    // A call message reaches the call's devices only.
    let GroupWrite::Done(sent) = s
        .post_group_message((&key, b"call-0"), 2, 0, a1, HELLO, 1_700_000_200)
        .await
        .expect("post")
    else {
        panic!("posted");
    };
    assert_eq!(
        sent.iter().map(|d| (d.user, d.client)).collect::<Vec<_>>(),
        vec![b1]
    );
    assert_eq!(
        s.post_group_message((&key, b"call-0"), 2, 0, a2, HELLO, 1_700_000_200)
            .await
            .expect("post"),
        GroupWrite::NotMember
    );
    // Bob's device leaves: out of the delivery at once; again, nothing.
    assert_eq!(
        s.leave_subconversation(&key, b1, b"call-1", 1_700_000_300)
            .await
            .expect("leave"),
        SubconversationLeave::Left
    );
    assert_eq!(s.group_devices(&key).await.expect("devices"), vec![a1]);
    assert_eq!(
        s.leave_subconversation(&key, b1, b"call-1", 1_700_000_300)
            .await
            .expect("leave"),
        SubconversationLeave::NotIn
    );
    // The server's proposal of its removal goes to those who stay.
    let state = s
        .mls_group_state(&key)
        .await
        .expect("state")
        .expect("there");
    let proposal = GroupProposals {
        group: key.clone(),
        group_id: b"call-0",
        epoch: 2,
        revision: state.revision,
        at: 1_700_000_300,
        state: b"left",
        proposals: &[HELLO],
    };
    let GroupWrite::Done(sent) = s.propose_group(&proposal).await.expect("propose") else {
        panic!("proposed");
    };
    assert_eq!(
        sent.iter().map(|d| (d.user, d.client)).collect::<Vec<_>>(),
        vec![a1]
    );
    // A reset names the group and epoch it ends; any other changes nothing.
    let told = Notify {
        payload: r#"{"type":"reset"}"#,
        at: 1_700_000_400,
    };
    for (group, seen) in [
        (&key, (&b"call-other"[..], 2)),
        (&key, (&b"call-0"[..], 1)),
        (&main, (&record.group_id[..], 1)),
    ] {
        assert_eq!(
            s.reset_subconversation(group, seen, b"call-1", told)
                .await
                .expect("reset"),
            None,
            "{seen:?} ends nothing (a conversation's own group is never reset)"
        );
    }
    let told_to = s
        .reset_subconversation(&key, (b"call-0", 2), b"call-1", told)
        .await
        .expect("reset")
        .expect("reset");
    assert_eq!(
        told_to
            .iter()
            .map(|d| (d.user, d.client))
            .collect::<Vec<_>>(),
        vec![a1]
    );
    assert_eq!(newest(s, &a, 1).await.as_deref(), Some(told.payload));
    let reset = s.mls_group(&key).await.expect("group").expect("there");
    assert_eq!(
        (
            reset.generation,
            reset.group_id.as_slice(),
            reset.epoch,
            reset.epoch_at
        ),
        (1, &b"call-1"[..], 0, 1_700_000_400)
    );
    assert_eq!(s.mls_group_state(&key).await.expect("state"), None);
    assert!(s.group_devices(&key).await.expect("devices").is_empty());
    assert_eq!(
        s.mls_group(&main).await.expect("group").map(|g| g.epoch),
        Some(1)
    );
    // A commit to the group before the reset is not taken into the new one.
    let late = GroupCommit {
        group: key.clone(),
        group_id: b"call-0",
        welcome: None,
        ..commit(&conv, 0, b2, &bob2, &[], &[], &[])
    };
    assert!(matches!(
        s.commit_group(&late).await,
        Err(StoreError::NotFound)
    ));
    // A new call; Bob leaves the conversation and is out of it too.
    let again = GroupCommit {
        group_id: b"call-1",
        ..late
    };
    assert!(matches!(
        s.commit_group(&again).await.expect("commit"),
        GroupWrite::Done(_)
    ));
    // What was made for the old group lands nowhere, though the new one is
    // at the same epoch and revision.
    let old = GroupProposals {
        epoch: 1,
        revision: 1,
        ..proposal
    };
    assert!(matches!(
        s.propose_group(&old).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.post_group_message((&key, b"call-0"), 1, 0, b2, HELLO, 1_700_000_500)
            .await,
        Err(StoreError::NotFound)
    ));
    s.change_conversation(conv.id, &ConversationChange::RemoveMember(b.id), QUIET)
        .await
        .expect("left");
    assert!(s.group_devices(&key).await.expect("devices").is_empty());
    // One who is no member starts no call.
    let told_to = s
        .reset_subconversation(&key, (b"call-1", 1), b"call-2", told)
        .await
        .expect("reset")
        .expect("reset");
    assert!(told_to.is_empty(), "Bob's devices are out of it already");
    let outsider = GroupCommit {
        group_id: b"call-2",
        ..commit(&conv, 0, b1, &bob, &[], &[], &[])
    };
    let outsider = GroupCommit {
        group: key.clone(),
        welcome: None,
        ..outsider
    };
    assert_eq!(
        s.commit_group(&outsider).await.expect("commit"),
        GroupWrite::NotMember
    );
    // The last one out ends it.
    let first = GroupCommit {
        group_id: b"call-2",
        ..first
    };
    assert!(matches!(
        s.commit_group(&first).await.expect("commit"),
        GroupWrite::Done(_)
    ));
    assert_eq!(
        s.leave_subconversation(&key, a1, b"call-3", 1_700_000_600)
            .await
            .expect("leave"),
        SubconversationLeave::Ended
    );
    let ended = s.mls_group(&key).await.expect("group").expect("there");
    assert_eq!(
        (ended.generation, ended.group_id.as_slice(), ended.epoch),
        (3, &b"call-3"[..], 0)
    );
    assert!(s.group_devices(&key).await.expect("devices").is_empty());
    assert_eq!(s.mls_group_state(&key).await.expect("state"), None);
}
