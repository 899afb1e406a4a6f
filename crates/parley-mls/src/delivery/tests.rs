use std::time::Duration;

use mls_rs::{ExtensionList, MlsMessage};
use parley_api::{ClientId, UserId};

use super::*;
use crate::device::DeviceKeys;

/// mls-rs checks lifetimes against the system clock when it commits, so the
/// tests live in the present.
#[expect(clippy::disallowed_methods, reason = "mls-rs reads the clock itself")]
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}
const LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

fn device(user: u128, client: u64) -> DeviceIdentity {
    DeviceIdentity {
        user: UserId(uuid::Uuid::from_u128(user)),
        client: ClientId(client),
        domain: "example.com".into(),
    }
}

fn at() -> Option<mls_rs::time::MlsTime> {
    Some(mls_rs::time::MlsTime::from(now()))
}

fn bytes(m: &MlsMessage) -> Vec<u8> {
    m.to_bytes().expect("encodes")
}

#[test]
fn the_server_follows_adds_removes_and_refuses_stale_and_forged_commits() {
    let suite = CipherSuite::DEFAULT;
    let keys: Vec<DeviceKeys> = [(1, 1), (2, 1), (2, 2)]
        .into_iter()
        .map(|(u, c)| DeviceKeys::generate(device(u, c), suite).expect("keys"))
        .collect();
    let clients: Vec<_> = keys.iter().map(|k| k.member(LIFETIME)).collect();
    let group_id = b"conversation-1".to_vec();
    let mut alice = clients[0]
        .create_group_with_id(
            group_id.clone(),
            ExtensionList::new(),
            ExtensionList::new(),
            at(),
        )
        .expect("group");
    let info = alice
        .group_info_message_allowing_ext_commit(true)
        .expect("group info");
    assert_eq!(
        TrackedGroup::start(&bytes(&info), b"another", suite, now()).err(),
        Some(DeliveryError::WrongGroup)
    );
    let mut server = TrackedGroup::start(&bytes(&info), &group_id, suite, now()).expect("start");
    assert_eq!(server.epoch(), 0);
    assert_eq!(server.members().expect("members").len(), 1);

    // Alice adds both of the second user's devices.
    let mut commit = alice.commit_builder();
    for c in &clients[1..] {
        let kp = c
            .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), at())
            .expect("key package");
        commit = commit.add_member(kp).expect("add");
    }
    let output = commit.build().expect("commit");
    let stale_base = bytes(&output.commit_message);

    // A forged commit (one signed byte changed) changes nothing. (Its last
    // bytes are the membership tag, which only members can check.)
    let mut forged = stale_base.clone();
    let middle = forged.len() / 2;
    forged[middle] ^= 1;
    assert!(matches!(
        server.apply_commit(&forged, now()),
        Err(DeliveryError::Invalid(_) | DeliveryError::Malformed)
    ));
    assert_eq!(server.epoch(), 0);

    let applied = server.apply_commit(&stale_base, now()).expect("applies");
    assert_eq!(applied.epoch, 1);
    assert_eq!(applied.committer.device, device(1, 1));
    let added: Vec<_> = applied.added.iter().map(|l| l.device.clone()).collect();
    assert_eq!(added, vec![device(2, 1), device(2, 2)]);
    assert!(applied.removed.is_empty() && !applied.external);
    alice.apply_pending_commit().expect("merged");
    let info = output
        .external_commit_group_info
        .as_ref()
        .expect("group info");
    server
        .check_group_info(&bytes(info), now())
        .expect("the new epoch's group info");
    // The old epoch's group info is not this epoch's.
    let old_info = bytes(
        &clients[0]
            .create_group_with_id(
                group_id.clone(),
                ExtensionList::new(),
                ExtensionList::new(),
                at(),
            )
            .expect("group")
            .group_info_message_allowing_ext_commit(true)
            .expect("info"),
    );
    assert_eq!(
        server.check_group_info(&old_info, now()),
        Err(DeliveryError::GroupInfoMismatch)
    );

    // The same commit again is stale now.
    assert_eq!(
        server.apply_commit(&stale_base, now()),
        Err(DeliveryError::Stale { current: 1, got: 0 })
    );

    // The snapshot carries the group over a restart; a removal is seen.
    let mut server = TrackedGroup::load(&server.snapshot()).expect("load");
    let output = alice
        .commit_builder()
        .remove_member(2)
        .expect("remove")
        .build()
        .expect("commit");
    let applied = server
        .apply_commit(&bytes(&output.commit_message), now())
        .expect("applies");
    assert_eq!(applied.removed.len(), 1);
    assert_eq!(applied.removed[0].device, device(2, 2));
    assert_eq!(server.members().expect("members").len(), 2);

    // Application messages are classified, not read.
    alice.apply_pending_commit().expect("merged");
    let message = alice
        .encrypt_application_message(b"hello", Vec::new())
        .expect("encrypts");
    assert_eq!(
        MessageIn(&bytes(&message)).classify(),
        Ok(ClassifiedMessage {
            group_id,
            epoch: 2,
            kind: MessageKind::Application
        })
    );
    assert_eq!(
        MessageIn(&bytes(&output.commit_message)).classify(),
        Err(DeliveryError::Malformed)
    );
}

#[test]
fn a_bundle_round_trips_and_its_parts_must_be_what_they_say() {
    let suite = CipherSuite::DEFAULT;
    let keys = DeviceKeys::generate(device(1, 1), suite).expect("keys");
    let client = keys.member(LIFETIME);
    let mut group = client
        .create_group(ExtensionList::new(), ExtensionList::new(), at())
        .expect("group");
    let output = group.commit(Vec::new()).expect("commit");
    let bundle = CommitBundle {
        commit: bytes(&output.commit_message),
        welcome: None,
        group_info: bytes(output.external_commit_group_info.as_ref().expect("info")),
    };
    assert_eq!(CommitBundle::decode(&bundle.encode()), Ok(bundle.clone()));
    let swapped = CommitBundle {
        commit: bundle.group_info.clone(),
        welcome: None,
        group_info: bundle.commit.clone(),
    };
    assert_eq!(
        CommitBundle::decode(&swapped.encode()),
        Err(DeliveryError::Malformed)
    );
    assert_eq!(
        CommitBundle::decode(b"\x00\x01"),
        Err(DeliveryError::Malformed)
    );
}
