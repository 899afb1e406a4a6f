//! The device's tests: pinned identities hold against a substituted bundle or
//! a forged prekey message, duplicates are dropped, and garbage changes no
//! session or prekey.

use std::collections::BTreeMap;

use parley_api::{Event, EventPayload, PrekeyMap, Qualified};

use super::*;

/// A device with an id, as registration leaves it.
fn device(client: u64) -> Device {
    let mut d = Device::generate(UserId::random());
    d.set_id(ClientId(client));
    d
}

/// One fresh prekey bundle of `d`, as the server hands it out for
/// `(user, client)` (which a lying server may choose).
fn bundle(d: &mut Device, user: UserId, client: ClientId) -> PrekeyMap {
    let prekey = d.new_prekeys(1).pop().expect("one prekey");
    BTreeMap::from([(
        "example.com".to_owned(),
        BTreeMap::from([(user, BTreeMap::from([(client, Some(prekey))]))]),
    )])
}

fn message(from: &Device, to: &Device, text: String) -> Event {
    Event {
        id: 1,
        time: parley_api::OffsetDateTime::UNIX_EPOCH,
        payload: EventPayload::OtrMessageAdd {
            conversation: Qualified {
                id: parley_api::ConversationId::default(),
                domain: "example.com".into(),
            },
            from: from.user,
            time: parley_api::OffsetDateTime::UNIX_EPOCH,
            data: parley_api::ProteusMessage {
                sender: from.client,
                recipient: to.client,
                text,
                data: None,
            },
        },
    }
}

fn encrypt(from: &mut Device, to: &Device, plaintext: &[u8]) -> String {
    let mut out = BTreeMap::new();
    from.encrypt_for(&[to.user], plaintext, &mut out);
    out[&to.user][&to.client].clone()
}

#[test]
fn a_bundle_with_another_identity_for_a_pinned_device_is_refused() {
    let (mut alice, mut bob, mut mallory) = (device(1), device(2), device(3));
    let (bob_user, bob_client) = (bob.user, bob.client);
    let opened = alice
        .open_sessions(&bundle(&mut bob, bob_user, bob_client))
        .expect("opened");
    assert_eq!(opened.new.len(), 1);
    assert_eq!(
        alice.pinned_identity(bob_user, bob_client),
        Some(bob.identity_key())
    );
    // The session is reset; the server now hands out Mallory's bundle as
    // Bob's device.
    assert!(alice.reset_session(bob_user, bob_client));
    let opened = alice
        .open_sessions(&bundle(&mut mallory, bob_user, bob_client))
        .expect("answered");
    assert!(opened.new.is_empty(), "no session with the substitute");
    assert_eq!(
        opened.changed,
        vec![ChangedIdentity {
            user: bob_user,
            client: bob_client,
            offered: mallory.identity_key()
        }]
    );
    assert!(!alice.has_session(bob_user, bob_client));
    assert_eq!(
        alice.pinned_identity(bob_user, bob_client),
        Some(bob.identity_key())
    );
}

#[test]
fn a_message_from_another_identity_for_a_pinned_device_is_refused_and_costs_nothing() {
    let (mut alice, bob, mut mallory) = (device(1), device(2), device(3));
    let (alice_user, alice_client) = (alice.user, alice.client);
    // Alice knows Bob's device.
    let (bob_user, bob_client) = (bob.user, bob.client);
    alice.pin(bob_user, bob_client, bob.identity_key());
    // Mallory starts a session with Alice and writes as Bob's device.
    mallory
        .open_sessions(&bundle(&mut alice, alice_user, alice_client))
        .expect("opened");
    let forged = encrypt(&mut mallory, &alice, b"it's me, bob");
    mallory.user = bob_user;
    mallory.client = bob_client;
    let held = alice.prekeys_held();
    let incoming = alice.incoming(&message(&mallory, &alice, forged));
    assert!(
        matches!(
            incoming,
            Some(Incoming::Undecryptable {
                failure: Failure::IdentityChanged(Some(k)),
                ..
            }) if k == mallory.identity_key()
        ),
        "{incoming:?}"
    );
    assert_eq!(
        alice.prekeys_held(),
        held,
        "the refused message used no prekey"
    );
    assert!(!alice.has_session(bob_user, bob_client));
}

#[test]
fn duplicates_are_dropped_and_garbage_changes_nothing() {
    let (mut alice, mut bob) = (device(1), device(2));
    let (bob_user, bob_client) = (bob.user, bob.client);
    alice
        .open_sessions(&bundle(&mut bob, bob_user, bob_client))
        .expect("opened");
    let first = encrypt(&mut alice, &bob, b"first");
    let event = message(&alice, &bob, first.clone());
    assert!(matches!(bob.incoming(&event), Some(Incoming::Message(_))));
    assert_eq!(bob.incoming(&event), None, "a replay is dropped");
    let state = |d: &Device| {
        let mut rows: Vec<_> = d
            .rows()
            .into_iter()
            .map(|(_, n, v)| (n, v.to_vec()))
            .collect();
        rows.sort();
        rows
    };
    let before = state(&bob);
    for garbage in ["bm90IHByb3RldXM=".to_owned(), "%%%".to_owned()] {
        assert!(matches!(
            bob.incoming(&message(&alice, &bob, garbage)),
            Some(Incoming::Undecryptable {
                failure: Failure::Garbage,
                ..
            })
        ));
    }
    let after = state(&bob);
    assert!(before == after, "garbage changed no session or prekey");
    let second = encrypt(&mut alice, &bob, b"second");
    assert!(matches!(
        bob.incoming(&message(&alice, &bob, second)),
        Some(Incoming::Message(m)) if m.plaintext == b"second"
    ));
}
