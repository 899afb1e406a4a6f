//! Members over their passed-in state: every step goes through the rows a
//! device stores, so what survives a restart is what is tested.

use std::time::Duration;

use parley_api::{ClientId, UserId};

use super::*;
use crate::CipherSuite;

const LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

#[expect(
    clippy::disallowed_methods,
    reason = "mls-rs checks key package lifetimes against the system clock"
)]
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn device(user: u128, client: u64) -> Member {
    let id = DeviceIdentity {
        user: UserId(uuid::Uuid::from_u128(user)),
        client: ClientId(client),
        domain: "example.com".into(),
    };
    let keys = DeviceKeys::generate(id, CipherSuite::DEFAULT).expect("keys");
    Member::new(keys, MemberState::default(), LIFETIME)
}

/// The member as a new process would find it: its keys and its state read
/// back from the rows it wrote.
fn restarted(m: &Member) -> Member {
    let fresh = MemberState::default();
    for (kind, _, bytes) in m.state.rows() {
        fresh.load_row(kind, &bytes).expect("a row reads back");
    }
    let k = &m.keys;
    let keys = DeviceKeys::restore(
        k.identity().clone(),
        k.suite(),
        &k.secret_bytes(),
        k.public_key(),
    );
    Member::new(keys, fresh, LIFETIME)
}

/// The backend's removal key on the default suite's scheme.
fn server() -> &'static crate::RemovalKey {
    static KEY: std::sync::OnceLock<crate::RemovalKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        crate::RemovalKey::generate(
            CipherSuite::DEFAULT
                .signature_scheme()
                .expect("a selectable suite"),
        )
        .expect("a key")
    })
}

fn bundle(bytes: &[u8]) -> CommitBundle {
    CommitBundle::decode(bytes).expect("a bundle")
}

fn text(p: Processed) -> Vec<u8> {
    match p {
        Processed::Application { plaintext, .. } => plaintext.to_vec(),
        other => panic!("not an application message: {other:?}"),
    }
}

#[test]
fn a_group_works_across_restarts_and_a_removed_device_reads_nothing_more() {
    let ann = device(1, 1);
    let bob = device(2, 2);
    let cid = device(3, 3);
    let kp_bob = bob.key_packages(1, now()).expect("kp").remove(0);
    let kp_cid = cid.key_packages(1, now()).expect("kp").remove(0);
    assert_eq!(bob.state.key_packages_held(), 1);
    // Bob's key package's private part survives a restart.
    let bob = restarted(&bob);
    ann.create(b"group", &server().sender("example.com"))
        .expect("created");
    let b = ann
        .commit(
            b"group",
            &Changes {
                add: vec![kp_bob, kp_cid],
                remove: Vec::new(),
            },
        )
        .expect("commit");
    // Pending, not merged: a restart keeps it pending.
    let ann = restarted(&ann);
    assert!(ann.has_pending(b"group"));
    assert_eq!(ann.epoch(b"group"), Some(0));
    assert_eq!(ann.confirm(b"group").expect("merged"), 1);
    let welcome = bundle(&b).welcome.expect("a welcome").0;
    assert!(matches!(
        bob.join(b"other", &welcome),
        Err(MemberError::UnexpectedGroup)
    ));
    assert_eq!(bob.join(b"group", &welcome).expect("joins"), 1);
    assert!(matches!(
        bob.join(b"group", &welcome),
        Err(MemberError::UnexpectedGroup)
    ));
    assert_eq!(
        bob.state.key_packages_held(),
        0,
        "the key package is used up"
    );
    cid.join(b"group", &welcome).expect("joins");
    let bob = restarted(&bob);
    let m = ann.encrypt(b"group", b"hello").expect("encrypts");
    let got = bob.process(b"group", &m).expect("decrypts");
    let Processed::Application { sender, .. } = &got else {
        panic!("{got:?}")
    };
    assert_eq!(sender, ann.keys().identity());
    assert_eq!(text(got), b"hello");
    // The same message again (a re-post after a lost reply) is a duplicate.
    assert!(matches!(
        bob.process(b"group", &m),
        Err(MemberError::Duplicate)
    ));
    // Ann removes Cid; Bob follows; Cid learns it was removed.
    let b = ann
        .commit(
            b"group",
            &Changes {
                add: Vec::new(),
                remove: vec![cid.keys().identity().clone()],
            },
        )
        .expect("commit");
    ann.confirm(b"group").expect("merged");
    let commit = bundle(&b).commit;
    let Processed::Commit {
        epoch,
        added,
        removed,
        external,
    } = bob.process(b"group", &commit).expect("follows")
    else {
        panic!("a commit")
    };
    assert_eq!((epoch, external), (2, false));
    assert!(added.is_empty());
    assert_eq!(removed, [cid.keys().identity().clone()]);
    assert!(matches!(
        cid.process(b"group", &commit).expect("follows"),
        Processed::Removed
    ));
    assert!(matches!(
        cid.process(
            b"group",
            &ann.encrypt(b"group", b"secret").expect("encrypts")
        ),
        Err(MemberError::UnknownGroup)
    ));
    // A self-update moves the epoch and Bob still reads Ann.
    let b = bob.commit(b"group", &Changes::default()).expect("update");
    bob.confirm(b"group").expect("merged");
    ann.process(b"group", &bundle(&b).commit).expect("follows");
    let m = ann.encrypt(b"group", b"after").expect("encrypts");
    assert_eq!(text(bob.process(b"group", &m).expect("decrypts")), b"after");
    // Both derive the same call key for the epoch, and it changes with it.
    let key = ann.call_key(b"group", 32).expect("exported");
    assert_eq!(key, bob.call_key(b"group", 32).expect("exported"));
    let b = ann.commit(b"group", &Changes::default()).expect("update");
    ann.confirm(b"group").expect("merged");
    bob.process(b"group", &bundle(&b).commit).expect("follows");
    assert_ne!(key, ann.call_key(b"group", 32).expect("exported"));
}

#[test]
fn a_refused_commit_is_dropped_and_a_device_that_missed_commits_rejoins() {
    let ann = device(1, 1);
    let bob = device(2, 2);
    ann.create(b"g", &server().sender("example.com"))
        .expect("created");
    let kp = bob.key_packages(1, now()).expect("kp").remove(0);
    let b = ann
        .commit(
            b"g",
            &Changes {
                add: vec![kp],
                remove: Vec::new(),
            },
        )
        .expect("commit");
    ann.confirm(b"g").expect("merged");
    bob.join(b"g", &bundle(&b).welcome.expect("welcome").0)
        .expect("joins");
    // Bob's commit loses the race to Ann's: cancelled, nothing changed.
    let _lost = bob.commit(b"g", &Changes::default()).expect("update");
    assert!(matches!(
        bob.commit(b"g", &Changes::default()),
        Err(MemberError::CommitPending)
    ));
    bob.cancel(b"g").expect("dropped");
    assert!(!bob.has_pending(b"g"));
    assert_eq!(bob.epoch(b"g"), Some(1));
    // Ann commits twice; Bob misses the first, so the second is beyond him.
    let first = ann.commit(b"g", &Changes::default()).expect("update");
    ann.confirm(b"g").expect("merged");
    let second = ann.commit(b"g", &Changes::default()).expect("update");
    ann.confirm(b"g").expect("merged");
    assert!(matches!(
        bob.process(b"g", &bundle(&second).commit),
        Err(MemberError::WrongEpoch {
            message: 2,
            ours: 1
        })
    ));
    let _ = first;
    // Bob rejoins from the latest group info, in place of his old leaf.
    assert!(matches!(
        bob.join_external(b"other", 1, &bundle(&second).group_info),
        Err(MemberError::UnexpectedGroup)
    ));
    assert!(matches!(
        bob.join_external(b"g", 4, &bundle(&second).group_info),
        Err(MemberError::OldGroupInfo { got: 3, known: 4 })
    ));
    let rejoin = bob
        .join_external(b"g", 1, &bundle(&second).group_info)
        .expect("rejoins");
    ann.process(b"g", &bundle(&rejoin).commit).expect("follows");
    assert_eq!(ann.members(b"g").expect("members").len(), 2);
    let m = ann.encrypt(b"g", b"welcome back").expect("encrypts");
    assert_eq!(
        text(bob.process(b"g", &m).expect("decrypts")),
        b"welcome back"
    );
}

#[test]
fn a_pending_commit_found_after_a_crash_settles_against_the_server() {
    let ann = device(1, 1);
    let bob = device(2, 2);
    ann.create(b"g", &server().sender("example.com"))
        .expect("created");
    let kp = bob.key_packages(1, now()).expect("kp").remove(0);
    let b = ann
        .commit(
            b"g",
            &Changes {
                add: vec![kp],
                remove: Vec::new(),
            },
        )
        .expect("commit");
    // The server took it, the device died before merging: merged on settle.
    let ann = restarted(&ann);
    assert!(ann.settle(b"g", &bundle(&b).group_info).expect("settles"));
    assert_eq!(ann.epoch(b"g"), Some(1));
    bob.join(b"g", &bundle(&b).welcome.expect("welcome").0)
        .expect("joins");
    // Ann's next commit lost to Bob's: dropped on settle.
    let _lost = ann.commit(b"g", &Changes::default()).expect("update");
    let won = bob.commit(b"g", &Changes::default()).expect("update");
    bob.confirm(b"g").expect("merged");
    let ann = restarted(&ann);
    assert!(!ann.settle(b"g", &bundle(&won).group_info).expect("settles"));
    assert!(!ann.has_pending(b"g"));
    ann.process(b"g", &bundle(&won).commit).expect("follows");
    assert_eq!(ann.epoch(b"g"), Some(2));
}

#[test]
fn damaged_rows_are_refused() {
    let state = MemberState::default();
    assert!(state.load_row(RowKind::Group, b"\xff\xff").is_err());
    assert!(state.load_row(RowKind::KeyPackage, b"").is_err());
}

#[test]
fn the_servers_removal_is_kept_and_must_go_into_the_next_commit() {
    use crate::delivery::{DeliveryError, TrackedGroup};
    let sender = server().sender("example.com");
    let ann = device(1, 1);
    let bob = device(2, 2);
    let cid = device(3, 3);
    let kps = [&bob, &cid].map(|m| m.key_packages(1, now()).expect("kp").remove(0));
    ann.create(b"g", &sender).expect("created");
    let first = bundle(
        &ann.commit(
            b"g",
            &Changes {
                add: kps.to_vec(),
                remove: Vec::new(),
            },
        )
        .expect("commit"),
    );
    ann.confirm(b"g").expect("merged");
    for m in [&bob, &cid] {
        m.join(b"g", &first.welcome.as_ref().expect("welcome").0)
            .expect("joined");
    }
    let mut tracked =
        TrackedGroup::start(&first.group_info, b"g", CipherSuite::DEFAULT, now()).expect("start");
    assert_eq!(tracked.external_senders(), vec![sender.clone()]);
    // Another key than the one the group names cannot propose.
    let stranger = crate::RemovalKey::generate(server().scheme()).expect("a key");
    assert_eq!(
        tracked.propose_remove(
            cid.keys().identity(),
            &stranger,
            &stranger.sender("example.com")
        ),
        Err(DeliveryError::NoServerSender)
    );
    // Cid's device is deleted: the server proposes its removal, once.
    let unproposed = tracked.snapshot();
    let proposal = tracked
        .propose_remove(cid.keys().identity(), server(), &sender)
        .expect("proposed")
        .expect("cid is in the group");
    assert_eq!(
        tracked.propose_remove(cid.keys().identity(), server(), &sender),
        Ok(None)
    );
    assert_eq!(
        tracked.pending().expect("pending"),
        vec![cid.keys().identity().clone()]
    );
    let bob_before = restarted(&bob);
    // Ann and Bob keep it (across a restart); Cid cannot commit its own removal.
    for m in [&ann, &bob, &cid] {
        assert!(matches!(
            m.process(b"g", &proposal),
            Ok(Processed::Proposal)
        ));
    }
    // The same removal signed again (a server repeating itself) is not
    // kept twice: the state does not grow.
    let again = TrackedGroup::load(&unproposed)
        .expect("loads")
        .propose_remove(cid.keys().identity(), server(), &sender)
        .expect("proposed")
        .expect("cid is in the group");
    assert_ne!(again, proposal);
    let rows = |m: &Member| {
        m.state()
            .rows()
            .into_iter()
            .map(|(_, _, b)| b)
            .collect::<Vec<_>>()
    };
    let kept = rows(&bob);
    assert!(matches!(bob.process(b"g", &again), Ok(Processed::Proposal)));
    assert_eq!(rows(&bob), kept);
    let ann = restarted(&ann);
    assert!(ann.proposals_due(b"g") && bob.proposals_due(b"g"));
    assert!(!cid.proposals_due(b"g"));
    // A commit that leaves it out (made by a copy that never saw it) is
    // refused and changes nothing.
    let unaware = bundle(
        &bob_before
            .commit(b"g", &Changes::default())
            .expect("update"),
    );
    let epoch = tracked.epoch();
    assert_eq!(
        tracked.apply_commit(&unaware.commit, now()),
        Err(DeliveryError::MissingReferences)
    );
    assert_eq!(tracked.epoch(), epoch);
    let update = bundle(&bob.commit(b"g", &Changes::default()).expect("update"));
    let mut copy = TrackedGroup::load(&tracked.snapshot()).expect("loads");
    assert!(
        copy.apply_commit(&update.commit, now()).is_ok(),
        "bob's commit takes it in"
    );
    bob.cancel(b"g").expect("dropped");
    // Ann commits the removal alone (the proposal by reference).
    let b = bundle(&ann.commit(b"g", &Changes::default()).expect("commit"));
    let applied = tracked.apply_commit(&b.commit, now()).expect("applied");
    assert_eq!(applied.removed.len(), 1);
    assert_eq!(applied.server_removed, applied.removed);
    assert!(applied.lapsed.is_empty());
    ann.confirm(b"g").expect("merged");
    assert!(!ann.proposals_due(b"g"));
    assert!(matches!(
        bob.process(b"g", &b.commit),
        Ok(Processed::Commit { .. })
    ));
    assert!(matches!(
        cid.process(b"g", &b.commit),
        Ok(Processed::Removed)
    ));
    assert!(tracked.pending().expect("none").is_empty());
}
