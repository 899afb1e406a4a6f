//! MLS groups over HTTP on loopback, on SQLite and PostgreSQL, with devices
//! that are real mls-rs clients: key packages through the directory, commit
//! bundles checked by the server, welcomes and messages read from each
//! device's queue and processed as a device would.

mod support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use mls_rs::client_builder::MlsConfig;
use mls_rs::extension::built_in::ExternalSendersExt;
use mls_rs::group::{CommitOutput, ReceivedMessage};
use mls_rs::identity::SigningIdentity;
use mls_rs::identity::basic::BasicCredential;
use mls_rs::{Client, ExtensionList, Group, MlsMessage};
use parley_api::ClientId;
use parley_mls::delivery::{CommitBundle, WelcomeBytes};
use parley_mls::{CipherSuite, DeviceIdentity, DeviceKeys};
use reqwest::Method;
use serde_json::{Value, json};
use support::{TestServer, User, client_id};

on_both_stores!(crate::support::GENEROUS =>
    a_group_of_twelve_devices_on_every_suite,
    commits_are_checked_and_serialised,
    hostile_commits_change_nothing,
    the_server_removes_deleted_devices_and_leavers,
    a_mixed_group_follows_its_conversation,
    a_one_to_one_conversation_moves_to_mls,
    a_call_has_a_group_of_its_own,
);

const LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// One device: its user (by index), its MLS client and, once it joined, its
/// group; where it has read its queue to.
struct Device<C: MlsConfig> {
    user: usize,
    client: ClientId,
    mls: Client<C>,
    group: Option<Group<C>>,
    /// Its group in the conversation's call, once it joined.
    call: Option<Group<C>>,
    seen: Option<u64>,
}

/// Adds a device to `u` with its MLS key registered on `suite` and three key
/// packages in the directory.
async fn new_device(
    s: &TestServer, users: &[User], user: usize, suite: CipherSuite,
) -> Device<impl MlsConfig> {
    let u = &users[user];
    let (st, v) = s.add_client(u, "permanent", [1]).await;
    assert_eq!(st, 201, "{v}");
    let client = client_id(&v);
    let identity = DeviceIdentity {
        user: u.id,
        client,
        domain: "localhost".into(),
    };
    let keys = DeviceKeys::generate(identity, suite).expect("keys");
    let scheme = suite.signature_scheme().expect("a scheme");
    let (st, v, _) = s
        .call(
            Method::PUT,
            &format!("/v1/clients/{client}/mls-public-keys"),
            Some(&u.token),
            Some(json!({"mls_public_keys": {scheme.name: B64.encode(keys.public_key())}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let mls = keys.member(LIFETIME);
    let packages: Vec<String> = (0..3)
        .map(|_| {
            let kp = mls
                .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
                .expect("key package");
            B64.encode(kp.to_bytes().expect("encodes"))
        })
        .collect();
    let (st, v) = s
        .post(
            &format!("/v1/mls/key-packages/self/{client}"),
            Some(&u.token),
            json!({"key_packages": packages}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    Device {
        user,
        client,
        mls,
        group: None,
        call: None,
        seen: None,
    }
}

/// One key package of each of `user`'s devices but `skip`, from the directory.
async fn claim(
    s: &TestServer, me: &User, user: &User, suite: CipherSuite, skip: Option<ClientId>,
) -> Vec<MlsMessage> {
    let skip = skip.map(|c| format!("&skip_own={c}")).unwrap_or_default();
    let (st, v) = s
        .post(
            &format!(
                "/v1/mls/key-packages/claim/localhost/{}?ciphersuite={}{skip}",
                user.id, suite.0
            ),
            Some(&me.token),
            json!({}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v["key_packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let bytes = B64
                .decode(p["key_package"].as_str().expect("base64"))
                .expect("base64");
            MlsMessage::from_bytes(&bytes).expect("a key package")
        })
        .collect()
}

fn bytes(m: &MlsMessage) -> Vec<u8> {
    m.to_bytes().expect("encodes")
}

/// The bundle a device posts for a commit it made.
fn bundle(out: &CommitOutput) -> Vec<u8> {
    CommitBundle {
        commit: bytes(&out.commit_message),
        welcome: out.welcome_messages.first().map(|w| WelcomeBytes(bytes(w))),
        group_info: bytes(out.external_commit_group_info.as_ref().expect("group info")),
    }
    .encode()
}

/// Posts an MLS body; the status and the answer.
async fn post_mls(
    s: &TestServer, u: &User, client: ClientId, path: &str, body: Vec<u8>,
) -> (u16, Value) {
    let resp = s
        .http
        .post(format!("{}{path}?client={client}", s.base))
        .bearer_auth(&u.token)
        .header("content-type", "message/mls")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn commit(s: &TestServer, u: &User, client: ClientId, out: &CommitOutput) -> (u16, Value) {
    post_mls(s, u, client, "/v1/mls/commit-bundles", bundle(out)).await
}

async fn send<C: MlsConfig>(
    s: &TestServer, users: &[User], d: &mut Device<C>, text: &str,
) -> (u16, Value) {
    let message = d
        .group
        .as_mut()
        .expect("in the group")
        .encrypt_application_message(text.as_bytes(), Vec::new())
        .expect("encrypts");
    post_mls(
        s,
        &users[d.user],
        d.client,
        "/v1/mls/messages",
        bytes(&message),
    )
    .await
}

/// Reads the device's new events and processes them as a device would:
/// welcomes join, commits advance, application messages are returned.
async fn sync<C: MlsConfig>(s: &TestServer, users: &[User], d: &mut Device<C>) -> Vec<String> {
    let since = d.seen.map(|id| format!("&since={id}")).unwrap_or_default();
    let (st, v) = s
        .get(
            &format!("/v1/notifications?client={}&size=1000{since}", d.client),
            &users[d.user].token,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let mut texts = Vec::new();
    for event in v["notifications"].as_array().expect("events") {
        d.seen = event["id"].as_u64();
        let payload = &event["payload"];
        let Some(data) = payload["data"].as_str() else {
            continue;
        };
        let message = MlsMessage::from_bytes(&B64.decode(data).expect("base64")).expect("mls");
        match payload["type"].as_str() {
            Some("conversation.mls-welcome") => {
                let (group, _) = d.mls.join_group(None, &message, None).expect("joins");
                d.group = Some(group);
            }
            Some("conversation.mls-message-add") => {
                let group = if payload["subconversation"].is_string() {
                    d.call.as_mut().expect("in the call")
                } else {
                    d.group.as_mut().expect("in a group")
                };
                match group.process_incoming_message(message).expect("processes") {
                    ReceivedMessage::ApplicationMessage(m) => {
                        texts.push(String::from_utf8(m.data().to_vec()).expect("utf-8"));
                    }
                    ReceivedMessage::Commit(_) | ReceivedMessage::Proposal(_) => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            _ => {}
        }
    }
    texts
}

/// A new group of the device's, naming the backend as its external sender
/// (as every group must).
async fn new_group<C: MlsConfig + Clone>(
    s: &TestServer, u: &User, mls: &Client<C>, group_id: Vec<u8>, suite: CipherSuite,
) -> Group<C> {
    mls.create_group_with_id(
        group_id,
        server(s, u, suite).await,
        ExtensionList::new(),
        None,
    )
    .expect("group")
}

/// The group context extension naming the backend's removal key for
/// `suite` as the group's external sender, read from the backend.
async fn server(s: &TestServer, u: &User, suite: CipherSuite) -> ExtensionList {
    let (st, v) = s.get("/v1/mls/public-keys", &u.token).await;
    assert_eq!(st, 200, "{v}");
    let scheme = suite.signature_scheme().expect("a scheme");
    let key = B64
        .decode(v["removal"][scheme.name].as_str().expect("a key"))
        .expect("base64");
    assert_eq!(key.len(), scheme.key_len, "{v}");
    let sender = SigningIdentity::new(
        BasicCredential::new(b"localhost".to_vec()).into_credential(),
        key.into(),
    );
    let mut extensions = ExtensionList::new();
    extensions
        .set_from(ExternalSendersExt::new(vec![sender]))
        .expect("an extension");
    extensions
}

/// Registers `n` users (the first connected with every other).
async fn people(s: &TestServer, tag: &str, n: usize) -> Vec<User> {
    let mut users = Vec::new();
    for i in 0..n {
        users.push(s.register(&format!("{tag}-{i}@example.com")).await);
    }
    for other in &users[1..] {
        s.connect_users(&users[0], other).await;
    }
    users
}

/// The first user creates an MLS conversation on `suite`: its id and group id.
async fn create(s: &TestServer, u: &User, suite: CipherSuite) -> (String, Vec<u8>) {
    let (st, v) = s
        .post(
            "/v1/conversations",
            Some(&u.token),
            json!({"name": "mls", "protocol": "mls", "cipher_suite": suite.0}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        (v["protocol"].as_str(), v["epoch"].as_u64()),
        (Some("mls"), Some(0)),
        "{v}"
    );
    assert_eq!(v["cipher_suite"].as_u64(), Some(u64::from(suite.0)));
    let group_id = B64
        .decode(v["group_id"].as_str().expect("a group id"))
        .expect("base64");
    (v["id"]["id"].as_str().expect("an id").to_owned(), group_id)
}

async fn conversation(s: &TestServer, u: &User, id: &str) -> Value {
    let (st, v) = s
        .get(&format!("/v1/conversations/localhost/{id}"), &u.token)
        .await;
    assert_eq!(st, 200, "{v}");
    v
}

fn label(v: &Value) -> &str {
    v["label"].as_str().unwrap_or_default()
}

/// Four users with three devices each make one group on each of the five
/// suites: the creator's first commit adds the other eleven devices, which
/// join from their welcomes and read the creator's message.
async fn a_group_of_twelve_devices_on_every_suite(s: &TestServer) {
    for suite in CipherSuite::SELECTABLE {
        let users = people(s, &format!("twelve-{}", suite.0), 4).await;
        let mut devices = Vec::new();
        for user in 0..4 {
            for _ in 0..3 {
                devices.push(new_device(s, &users, user, suite).await);
            }
        }
        let (id, group_id) = create(s, &users[0], suite).await;
        let mut packages = claim(s, &users[0], &users[0], suite, Some(devices[0].client)).await;
        for u in &users[1..] {
            packages.extend(claim(s, &users[0], u, suite, None).await);
        }
        assert_eq!(packages.len(), 11, "{suite}");
        let creator = &mut devices[0];
        let mut group = new_group(s, &users[0], &creator.mls, group_id, suite).await;
        let mut builder = group.commit_builder();
        for p in packages {
            builder = builder.add_member(p).expect("add");
        }
        let out = builder.build().expect("commit");
        let (st, v) = commit(s, &users[0], creator.client, &out).await;
        assert_eq!((st, v["epoch"].as_u64()), (201, Some(1)), "{suite}: {v}");
        group.apply_pending_commit().expect("merged");
        creator.group = Some(group);
        let (st, v) = send(s, &users, &mut devices[0], &format!("hello on {suite}")).await;
        assert_eq!(st, 201, "{v}");
        for d in &mut devices[1..] {
            assert_eq!(
                sync(s, &users, d).await,
                vec![format!("hello on {suite}")],
                "{suite}"
            );
        }
        let v = conversation(s, &users[3], &id).await;
        assert_eq!(v["members"].as_array().map(Vec::len), Some(4), "{v}");
        assert_eq!(v["epoch"].as_u64(), Some(1));
    }
}

/// Stale, forged, partial and unauthorised commits are refused with their
/// labels and change nothing; of two commits on one epoch exactly one wins
/// and the other retries; a removed user's devices get nothing more; a new
/// device joins its user's group by external commit.
async fn commits_are_checked_and_serialised(s: &TestServer) {
    let suite = CipherSuite::DEFAULT;
    let users = people(s, "checked", 4).await;
    // Ann: devices 0, 1; Bob: 2, 3; Cid: 4; Dee: 5, 6.
    let mut d = Vec::new();
    for user in [0, 0, 1, 1, 2, 3, 3] {
        d.push(new_device(s, &users, user, suite).await);
    }
    let ids: Vec<ClientId> = d.iter().map(|x| x.client).collect();
    let (id, group_id) = create(s, &users[0], suite).await;
    // Ann's first commit adds her other device and Bob's two.
    let mut packages = claim(s, &users[0], &users[0], suite, Some(d[0].client)).await;
    packages.extend(claim(s, &users[0], &users[1], suite, None).await);
    let mut group = new_group(s, &users[0], &d[0].mls, group_id, suite).await;
    let mut builder = group.commit_builder();
    for p in packages {
        builder = builder.add_member(p).expect("add");
    }
    let out = builder.build().expect("commit");
    // Bob may not make the group's first commit, even with Ann's bytes.
    let (st, v) = commit(s, &users[1], d[2].client, &out).await;
    assert_eq!((st, label(&v)), (403, "access-denied"), "{v}");
    assert_eq!(commit(s, &users[0], d[0].client, &out).await.0, 201);
    group.apply_pending_commit().expect("merged");
    d[0].group = Some(group);
    for device in &mut d[1..4] {
        sync(s, &users, device).await;
        assert!(device.group.is_some(), "device {} joined", device.client);
    }

    // Only one of Dee's two devices: refused, nothing changes.
    let dee = claim(s, &users[0], &users[3], suite, Some(ids[6])).await;
    let group = d[0].group.as_mut().expect("group");
    let out = group
        .commit_builder()
        .add_member(dee[0].clone())
        .expect("add")
        .build()
        .expect("commit");
    let (st, v) = commit(s, &users[0], ids[0], &out).await;
    assert_eq!((st, label(&v)), (409, "mls-client-mismatch"), "{v}");
    group.clear_pending_commit();
    // A forged commit (a signed byte changed): refused.
    let out = group.commit(Vec::new()).expect("commit");
    let mut forged = bytes(&out.commit_message);
    let middle = forged.len() / 2;
    forged[middle] ^= 1;
    let forged = CommitBundle {
        commit: forged,
        welcome: None,
        group_info: bytes(out.external_commit_group_info.as_ref().expect("info")),
    };
    let (st, v) = post_mls(
        s,
        &users[0],
        ids[0],
        "/v1/mls/commit-bundles",
        forged.encode(),
    )
    .await;
    assert_eq!((st, label(&v)), (400, "mls-protocol-error"), "{v}");
    group.clear_pending_commit();
    // Bob, not an admin, may not add Cid.
    let cid = claim(s, &users[0], &users[2], suite, None).await;
    let bob = d[2].group.as_mut().expect("group");
    let out = bob
        .commit_builder()
        .add_member(cid[0].clone())
        .expect("add")
        .build()
        .expect("commit");
    let (st, v) = commit(s, &users[1], ids[2], &out).await;
    assert_eq!((st, label(&v)), (403, "action-denied"), "{v}");
    bob.clear_pending_commit();
    assert_eq!(
        conversation(s, &users[0], &id).await["epoch"].as_u64(),
        Some(1)
    );

    // Ann and Bob update their keys at once, round after round: exactly one
    // wins each time; the other reads the winner's commit and tries again on
    // the new epoch.
    let mut epoch = 1;
    for round in 0..4 {
        let ann_out = d[0]
            .group
            .as_mut()
            .expect("group")
            .commit(Vec::new())
            .expect("commit");
        let bob_out = d[2]
            .group
            .as_mut()
            .expect("group")
            .commit(Vec::new())
            .expect("commit");
        let (ann, bob) = tokio::join!(
            commit(s, &users[0], d[0].client, &ann_out),
            commit(s, &users[1], d[2].client, &bob_out)
        );
        let mut codes = [ann.0, bob.0];
        codes.sort_unstable();
        assert_eq!(codes, [201, 409], "round {round}: {ann:?} {bob:?}");
        let (winner, loser, lost) = if ann.0 == 201 {
            (0, 2, &bob.1)
        } else {
            (2, 0, &ann.1)
        };
        assert_eq!(label(lost), "mls-stale-message", "{lost}");
        d[winner]
            .group
            .as_mut()
            .expect("group")
            .apply_pending_commit()
            .expect("merged");
        d[loser]
            .group
            .as_mut()
            .expect("group")
            .clear_pending_commit();
        sync(s, &users, &mut d[loser]).await;
        let retry = d[loser]
            .group
            .as_mut()
            .expect("group")
            .commit(Vec::new())
            .expect("commit");
        let (st, v) = commit(s, &users[d[loser].user], d[loser].client, &retry).await;
        epoch += 2;
        assert_eq!((st, v["epoch"].as_u64()), (201, Some(epoch)), "{v}");
        d[loser]
            .group
            .as_mut()
            .expect("group")
            .apply_pending_commit()
            .expect("merged");
        for i in [1, 3, winner] {
            sync(s, &users, &mut d[i]).await;
        }
    }

    // Ann removes Bob's two devices: Bob leaves the conversation, and his
    // devices get the removal but nothing after it.
    let group = d[0].group.as_mut().expect("group");
    let bob = users[1].id;
    let bobs: Vec<u32> = group
        .roster()
        .members()
        .into_iter()
        .filter(|m| match &m.signing_identity.credential {
            mls_rs::identity::Credential::Basic(b) => {
                DeviceIdentity::parse(b.identifier()).is_some_and(|d| d.user == bob)
            }
            _ => false,
        })
        .map(|m| m.index)
        .collect();
    assert_eq!(bobs.len(), 2);
    let mut builder = group.commit_builder();
    for index in bobs {
        builder = builder.remove_member(index).expect("remove");
    }
    let out = builder.build().expect("commit");
    let removal = B64.encode(bytes(&out.commit_message));
    let (st, v) = commit(s, &users[0], d[0].client, &out).await;
    assert_eq!(st, 201, "{v}");
    d[0].group
        .as_mut()
        .expect("group")
        .apply_pending_commit()
        .expect("merged");
    sync(s, &users, &mut d[1]).await;
    let members = conversation(s, &users[0], &id).await["members"].clone();
    assert!(
        !members.to_string().contains(&users[1].id.to_string()),
        "{members}"
    );
    let (st, _) = send(s, &users, &mut d[0], "after Bob").await;
    assert_eq!(st, 201);
    assert_eq!(
        sync(s, &users, &mut d[1]).await,
        vec!["after Bob".to_owned()]
    );
    for i in [2, 3] {
        let (st, v) = s
            .get(
                &format!("/v1/notifications?client={}&size=1000", d[i].client),
                &users[1].token,
            )
            .await;
        assert_eq!(st, 200);
        let events = v["notifications"].as_array().expect("events");
        let last = &events.last().expect("events")["payload"];
        assert_eq!(
            last["data"],
            removal.as_str(),
            "the removal is the last thing Bob got"
        );
    }
    // Bob can no longer post to the group.
    let (st, v) = send(s, &users, &mut d[2], "still here?").await;
    assert_eq!((st, label(&v)), (403, "access-denied"), "{v}");

    // Ann's new device joins by external commit from the group info.
    let mut fresh = new_device(s, &users, 0, suite).await;
    join_external(s, &users, &mut fresh, &id).await;
    sync(s, &users, &mut d[0]).await;
    sync(s, &users, &mut d[1]).await;
    let (st, _) = send(s, &users, &mut fresh, "from the new device").await;
    assert_eq!(st, 201);
    assert_eq!(
        sync(s, &users, &mut d[0]).await,
        vec!["from the new device".to_owned()]
    );

    // Over a socket: a small message comes as a live frame, a large one
    // (beyond what is framed inline) from the queue after a wake-up; both
    // arrive whole and in order.
    sync(s, &users, &mut d[1]).await;
    let mut ws = s.connect(&users[0].token, d[1].client, d[1].seen).await;
    let large = "x".repeat(40 * 1024);
    for text in ["small", large.as_str()] {
        let (st, v) = send(s, &users, &mut fresh, text).await;
        assert_eq!(st, 201, "{v}");
        let event = support::next_event(&mut ws).await;
        let data = event["payload"]["data"].as_str().expect("data");
        let message = MlsMessage::from_bytes(&B64.decode(data).expect("base64")).expect("mls");
        let group = d[1].group.as_mut().expect("group");
        match group.process_incoming_message(message).expect("processes") {
            ReceivedMessage::ApplicationMessage(m) => assert_eq!(m.data(), text.as_bytes()),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Commits that name a key nobody registered, a stranger, the wrong epoch's
/// group info, another conversation, or come from a non-member are refused
/// with their labels, and the group stays where it was.
async fn hostile_commits_change_nothing(s: &TestServer) {
    let suite = CipherSuite::DEFAULT;
    // Ann (0) is connected with Bob (1) and Cid (2); Eve (3) with nobody.
    let mut users = people(s, "hostile", 3).await;
    users.push(s.register("hostile-eve@example.com").await);
    let mut ann = new_device(s, &users, 0, suite).await;
    let _bob = new_device(s, &users, 1, suite).await;
    let cid = new_device(s, &users, 2, suite).await;
    let eve = new_device(s, &users, 3, suite).await;
    let (id, group_id) = create(s, &users[0], suite).await;
    let bob_packages = claim(s, &users[0], &users[1], suite, None).await;
    // A group that does not name the backend as its external sender (so
    // the backend could never remove a deleted device from it): refused.
    let out = ann
        .mls
        .create_group_with_id(
            group_id.clone(),
            ExtensionList::new(),
            ExtensionList::new(),
            None,
        )
        .expect("group")
        .commit_builder()
        .add_member(bob_packages[0].clone())
        .expect("add")
        .build()
        .expect("commit");
    let (st, v) = commit(s, &users[0], ann.client, &out).await;
    assert_eq!((st, label(&v)), (400, "mls-missing-external-sender"), "{v}");
    let mut group = new_group(s, &users[0], &ann.mls, group_id, suite).await;
    // A first commit whose group info is of epoch 0: refused.
    let early = group
        .group_info_message_allowing_ext_commit(true)
        .expect("info");
    let out = group
        .commit_builder()
        .add_member(bob_packages[0].clone())
        .expect("add")
        .build()
        .expect("commit");
    let mut wrong = CommitBundle::decode(&bundle(&out)).expect("decodes");
    wrong.group_info = bytes(&early);
    let (st, v) = post_mls(
        s,
        &users[0],
        ann.client,
        "/v1/mls/commit-bundles",
        wrong.encode(),
    )
    .await;
    assert_eq!((st, label(&v)), (400, "mls-group-info-mismatch"), "{v}");
    let (st, v) = commit(s, &users[0], ann.client, &out).await;
    assert_eq!(st, 201, "{v}");
    group.apply_pending_commit().expect("merged");
    ann.group = Some(group);
    let group = ann.group.as_mut().expect("group");

    // Cid's device with a key Cid never registered.
    let forged_keys = DeviceKeys::generate(
        DeviceIdentity {
            user: users[2].id,
            client: cid.client,
            domain: "localhost".into(),
        },
        suite,
    )
    .expect("keys");
    let forged = forged_keys
        .member(LIFETIME)
        .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
        .expect("key package");
    let out = group
        .commit_builder()
        .add_member(forged)
        .expect("add")
        .build()
        .expect("commit");
    let (st, v) = commit(s, &users[0], ann.client, &out).await;
    assert_eq!((st, label(&v)), (403, "mls-identity-mismatch"), "{v}");
    group.clear_pending_commit();
    // Eve's real key package, but Ann and Eve are not connected.
    let eves = eve
        .mls
        .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
        .expect("key package");
    let out = group
        .commit_builder()
        .add_member(eves)
        .expect("add")
        .build()
        .expect("commit");
    let (st, v) = commit(s, &users[0], ann.client, &out).await;
    assert_eq!((st, label(&v)), (403, "not-connected"), "{v}");
    group.clear_pending_commit();
    // A key update carrying the previous epoch's group info.
    let stale_info = group
        .group_info_message_allowing_ext_commit(true)
        .expect("info");
    let out = group.commit(Vec::new()).expect("commit");
    let mut wrong = CommitBundle::decode(&bundle(&out)).expect("decodes");
    wrong.group_info = bytes(&stale_info);
    let (st, v) = post_mls(
        s,
        &users[0],
        ann.client,
        "/v1/mls/commit-bundles",
        wrong.encode(),
    )
    .await;
    assert_eq!((st, label(&v)), (400, "mls-group-info-mismatch"), "{v}");
    group.clear_pending_commit();
    // Eve, given the group info, joins by external commit: she is no member.
    let info = group
        .group_info_message_allowing_ext_commit(true)
        .expect("info");
    let (_, external) = eve
        .mls
        .commit_external(info.clone())
        .expect("external commit");
    let (joined, _) = eve.mls.commit_external(info).expect("external commit");
    let eve_bundle = CommitBundle {
        commit: bytes(&external),
        welcome: None,
        group_info: bytes(
            &joined
                .group_info_message_allowing_ext_commit(true)
                .expect("info"),
        ),
    };
    let (st, v) = post_mls(
        s,
        &users[3],
        eve.client,
        "/v1/mls/commit-bundles",
        eve_bundle.encode(),
    )
    .await;
    assert_eq!((st, label(&v)), (403, "access-denied"), "{v}");
    // A commit of a group no conversation has.
    let mut other = ann
        .mls
        .create_group_with_id(
            vec![7; 16],
            ExtensionList::new(),
            ExtensionList::new(),
            None,
        )
        .expect("group");
    let out = other.commit(Vec::new()).expect("commit");
    let (st, v) = commit(s, &users[0], ann.client, &out).await;
    assert_eq!((st, label(&v)), (404, "no-conversation"), "{v}");
    // A proposal sent as a message: not taken.
    let proposal = group.propose_update(Vec::new()).expect("proposal");
    let (st, v) = post_mls(
        s,
        &users[0],
        ann.client,
        "/v1/mls/messages",
        bytes(&proposal),
    )
    .await;
    assert_eq!((st, label(&v)), (400, "mls-unsupported-proposal"), "{v}");
    // Eve cannot read the group info either.
    let (st, v) = s
        .get(
            &format!("/v1/conversations/localhost/{id}/groupinfo"),
            &users[3].token,
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (403, "access-denied"), "{v}");
    // A large bundle is read only for a caller with a valid token: 300 KiB
    // of nothing is a protocol error for Ann, too large for anyone else.
    let big = vec![0u8; 300 * 1024];
    let (st, v) = post_mls(
        s,
        &users[0],
        ann.client,
        "/v1/mls/commit-bundles",
        big.clone(),
    )
    .await;
    assert_eq!((st, label(&v)), (400, "mls-protocol-error"), "{v}");
    let resp = s
        .http
        .post(format!(
            "{}/v1/mls/commit-bundles?client={}",
            s.base, ann.client
        ))
        .bearer_auth("v1.forged.token.here")
        .header("content-type", "message/mls")
        .body(big)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 413);
    // Nothing moved: still epoch 1, Ann and Bob.
    let v = conversation(s, &users[0], &id).await;
    assert_eq!(v["epoch"].as_u64(), Some(1), "{v}");
    assert_eq!(v["members"].as_array().map(Vec::len), Some(2), "{v}");
}

/// The server removes what nobody else would: a deleted device and a user
/// who left. Its proposals reach every member; a commit that leaves one out
/// is refused; any member (not only an admin) commits them; whoever left
/// gets nothing more.
async fn the_server_removes_deleted_devices_and_leavers(s: &TestServer) {
    let suite = CipherSuite::DEFAULT;
    let users = people(s, "removals", 3).await;
    // Ann: device 0; Bob: 1, 2; Cid: 3.
    let mut d = Vec::new();
    for user in [0, 1, 1, 2] {
        d.push(new_device(s, &users, user, suite).await);
    }
    let (id, group_id) = create(s, &users[0], suite).await;
    let mut packages = claim(s, &users[0], &users[1], suite, None).await;
    packages.extend(claim(s, &users[0], &users[2], suite, None).await);
    let mut group = new_group(s, &users[0], &d[0].mls, group_id, suite).await;
    let mut builder = group.commit_builder();
    for p in packages {
        builder = builder.add_member(p).expect("add");
    }
    let out = builder.build().expect("commit");
    assert_eq!(commit(s, &users[0], d[0].client, &out).await.0, 201);
    group.apply_pending_commit().expect("merged");
    d[0].group = Some(group);
    for device in &mut d[1..] {
        sync(s, &users, device).await;
    }
    let in_group = |d: &Device<_>| d.group.as_ref().expect("group").roster().members().len();

    // Bob has a new device that has not joined yet, and deletes his second:
    // the removal can still be committed (he is not held to all or none).
    let _bob3 = new_device(s, &users, 1, suite).await;
    let (st, v, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/clients/{}", d[2].client),
            Some(&users[1].token),
            Some(json!({"password": support::PASSWORD})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    // Cid's commit made before he read the proposal: refused.
    let unaware = d[3]
        .group
        .as_mut()
        .expect("group")
        .commit(Vec::new())
        .expect("commit");
    let (st, v) = commit(s, &users[2], d[3].client, &unaware).await;
    assert_eq!(
        (st, label(&v)),
        (400, "mls-commit-missing-references"),
        "{v}"
    );
    d[3].group.as_mut().expect("group").clear_pending_commit();
    // Everyone reads the proposal; Cid, no admin, commits it.
    for i in [0, 1, 3] {
        sync(s, &users, &mut d[i]).await;
    }
    let client = d[3].client;
    let group = d[3].group.as_mut().expect("group");
    let out = group.commit(Vec::new()).expect("commit");
    let (st, v) = commit(s, &users[2], client, &out).await;
    assert_eq!(st, 201, "{v}");
    group.apply_pending_commit().expect("merged");
    for i in [0, 1] {
        sync(s, &users, &mut d[i]).await;
    }
    assert_eq!(
        [in_group(&d[0]), in_group(&d[1]), in_group(&d[3])],
        [3, 3, 3]
    );
    let v = conversation(s, &users[0], &id).await;
    assert_eq!(v["members"].as_array().map(Vec::len), Some(3), "{v}");
    // Nobody takes the backend's removals away.
    let group = d[3].group.as_mut().expect("group");
    let out = group
        .commit_builder()
        .set_group_context_ext(ExtensionList::new())
        .expect("extensions")
        .build()
        .expect("commit");
    let (st, v) = commit(s, &users[2], d[3].client, &out).await;
    assert_eq!((st, label(&v)), (400, "mls-missing-external-sender"), "{v}");
    d[3].group.as_mut().expect("group").clear_pending_commit();

    // Bob leaves: a member no more at once, and his device can post nothing.
    let (st, v, _) = s
        .call(
            Method::DELETE,
            &format!(
                "/v1/conversations/localhost/{id}/members/localhost/{}",
                users[1].id
            ),
            Some(&users[1].token),
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let v = conversation(s, &users[0], &id).await;
    assert_eq!(v["members"].as_array().map(Vec::len), Some(2), "{v}");
    let (st, v) = send(s, &users, &mut d[1], "still here?").await;
    assert_eq!((st, label(&v)), (403, "access-denied"), "{v}");
    // Cid, no admin, commits his removal; what Ann sends after reaches Cid,
    // not Bob.
    sync(s, &users, &mut d[3]).await;
    let client = d[3].client;
    let group = d[3].group.as_mut().expect("group");
    let out = group.commit(Vec::new()).expect("commit");
    let (st, v) = commit(s, &users[2], client, &out).await;
    assert_eq!(st, 201, "{v}");
    group.apply_pending_commit().expect("merged");
    sync(s, &users, &mut d[0]).await;
    let (st, v) = send(s, &users, &mut d[0], "after").await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(sync(s, &users, &mut d[3]).await, vec!["after".to_owned()]);
    assert_eq!([in_group(&d[0]), in_group(&d[3])], [2, 2]);

    // Cid deletes his account: his device's removal is proposed, and Ann
    // commits it.
    let (st, v, _) = s
        .call(
            Method::DELETE,
            "/v1/self",
            Some(&users[2].token),
            Some(json!({"password": support::PASSWORD})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    sync(s, &users, &mut d[0]).await;
    let client = d[0].client;
    let group = d[0].group.as_mut().expect("group");
    let out = group.commit(Vec::new()).expect("commit");
    let (st, v) = commit(s, &users[0], client, &out).await;
    assert_eq!(st, 201, "{v}");
    group.apply_pending_commit().expect("merged");
    assert_eq!(in_group(&d[0]), 1);
    assert!(sync(s, &users, &mut d[1]).await.is_empty());
}

/// The device joins the conversation's group by external commit, from the
/// server's group info.
async fn join_external<C: MlsConfig>(s: &TestServer, users: &[User], d: &mut Device<C>, id: &str) {
    let path = format!("/v1/conversations/localhost/{id}/groupinfo");
    d.group = Some(external_commit(s, users, d, &path).await);
}

/// The device joins a group by external commit from the group info at
/// `path`: the group it joined.
async fn external_commit<C: MlsConfig>(
    s: &TestServer, users: &[User], d: &Device<C>, path: &str,
) -> Group<C> {
    let resp = s
        .http
        .get(format!("{}{path}", s.base))
        .bearer_auth(&users[d.user].token)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "message/mls");
    let info = MlsMessage::from_bytes(&resp.bytes().await.expect("body")).expect("group info");
    let (joined, commit_message) = d.mls.commit_external(info).expect("external commit");
    let external = CommitBundle {
        commit: bytes(&commit_message),
        welcome: None,
        group_info: bytes(
            &joined
                .group_info_message_allowing_ext_commit(true)
                .expect("info"),
        ),
    };
    let (st, v) = post_mls(
        s,
        &users[d.user],
        d.client,
        "/v1/mls/commit-bundles",
        external.encode(),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    joined
}

/// A Proteus group between the first two of `users` (the first its admin):
/// its id.
async fn proteus_group(s: &TestServer, users: &[User]) -> String {
    let (st, v) = s
        .post(
            "/v1/conversations",
            Some(&users[0].token),
            json!({"name": "old", "users": [{"id": users[1].id, "domain": "localhost"}]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["protocol"], "proteus", "{v}");
    v["id"]["id"].as_str().expect("id").to_owned()
}

/// Past `[mls] migration_finalise_after`, a migration ends at the group's
/// first commit though a member's device is out; that device joins later
/// by external commit and reads what follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_migration_past_its_deadline_ends_with_devices_out() {
    let s = TestServer::start_with(support::Backend::Sqlite, support::GENEROUS, |settings| {
        settings.mls_migration_finalise_after = Some(0);
    })
    .await
    .expect("SQLite always runs");
    let s = &s;
    let suite = CipherSuite::DEFAULT;
    let users = people(s, "deadline", 2).await;
    let (st, v) = s.get("/v1/mls/config", &users[0].token).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["migration_finalise_after"], "1970-01-01T00:00:00Z", "{v}");
    let mut d = [
        new_device(s, &users, 0, suite).await,
        new_device(s, &users, 1, suite).await,
    ];
    let id = proteus_group(s, &users).await;
    let (st, v) = set_protocol(s, &users[0], &id, "mixed").await;
    assert_eq!(st, 200, "{v}");
    // Not before the group is made, deadline or not.
    let (st, v) = set_protocol(s, &users[0], &id, "mls").await;
    assert_eq!(
        (st, label(&v)),
        (409, "mls-migration-criteria-not-satisfied"),
        "{v}"
    );
    let group_id = B64
        .decode(
            conversation(s, &users[0], &id).await["group_id"]
                .as_str()
                .expect("group id"),
        )
        .expect("base64");
    let mut group = new_group(s, &users[0], &d[0].mls, group_id, suite).await;
    let out = group.commit(Vec::new()).expect("commit");
    let (st, v) = commit(s, &users[0], d[0].client, &out).await;
    assert_eq!(st, 201, "{v}");
    group.apply_pending_commit().expect("merged");
    d[0].group = Some(group);
    let v = conversation(s, &users[1], &id).await;
    assert_eq!(
        (v["protocol"].as_str(), v["epoch"].as_u64()),
        (Some("mls"), Some(1)),
        "{v}"
    );
    assert_eq!(v["members"].as_array().map(Vec::len), Some(2), "{v}");
    join_external(s, &users, &mut d[1], &id).await;
    sync(s, &users, &mut d[0]).await;
    let (st, v) = send(s, &users, &mut d[0], "after the deadline").await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(sync(s, &users, &mut d[1]).await, ["after the deadline"]);
}

/// `PUT …/protocol` as the given user: the status and the answer.
async fn set_protocol(s: &TestServer, u: &User, id: &str, protocol: &str) -> (u16, Value) {
    let (st, v, _) = s
        .call(
            Method::PUT,
            &format!("/v1/conversations/localhost/{id}/protocol"),
            Some(&u.token),
            Some(json!({ "protocol": protocol })),
        )
        .await;
    (st.as_u16(), v)
}

/// A Proteus group migrating to MLS: only an admin starts it, one step at a
/// time; its group takes only members' devices, any of them (no user held
/// to all or none), and its messages still go by Proteus (MLS ones wait);
/// it cannot end while a member's device is out, and the external commit
/// that brings the last one in ends it, after which Proteus is refused. A
/// member removed the Proteus way has their devices' removal proposed.
async fn a_mixed_group_follows_its_conversation(s: &TestServer) {
    let suite = CipherSuite::DEFAULT;
    let users = people(s, "mixed", 3).await;
    // Ann: device 0; Bob: 1, 2; Cid (not a member): 3.
    let mut d = Vec::new();
    for user in [0, 1, 1, 2] {
        d.push(new_device(s, &users, user, suite).await);
    }
    // Mixed is a migration's step, not a start.
    let (st, v) = s
        .post(
            "/v1/conversations",
            Some(&users[0].token),
            json!({"name": "new", "users": [], "protocol": "mixed"}),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (400, "bad-request"), "{v}");

    let id = proteus_group(s, &users).await;
    let (st, v) = set_protocol(s, &users[1], &id, "mixed").await;
    assert_eq!((st, label(&v)), (403, "action-denied"), "{v}");
    let (st, v) = set_protocol(s, &users[0], &id, "mls").await;
    assert_eq!(
        (st, label(&v)),
        (403, "mls-invalid-protocol-transition"),
        "{v}"
    );
    for _ in 0..2 {
        let (st, v) = set_protocol(s, &users[0], &id, "mixed").await;
        assert_eq!(st, 200, "{v}");
    }
    let v = conversation(s, &users[1], &id).await;
    assert_eq!(
        (v["protocol"].as_str(), v["epoch"].as_u64()),
        (Some("mixed"), Some(0)),
        "{v}"
    );
    let group_id = B64
        .decode(v["group_id"].as_str().expect("a group id"))
        .expect("base64");
    let (st, v) = set_protocol(s, &users[0], &id, "mls").await;
    assert_eq!(
        (st, label(&v)),
        (409, "mls-migration-criteria-not-satisfied"),
        "{v}"
    );

    // Bob is no admin: not his to make the group.
    let mut bobs = new_group(s, &users[1], &d[1].mls, group_id.clone(), suite).await;
    let out = bobs.commit(Vec::new()).expect("commit");
    let (st, v) = commit(s, &users[1], d[1].client, &out).await;
    assert_eq!((st, label(&v)), (403, "action-denied"), "{v}");
    // Cid is no member: his device is not taken.
    let mut group = new_group(s, &users[0], &d[0].mls, group_id, suite).await;
    let bob1 = claim(s, &users[0], &users[1], suite, None).await;
    let cids = claim(s, &users[0], &users[2], suite, None).await;
    let mut builder = group.commit_builder();
    for p in bob1.iter().take(1).chain(&cids) {
        builder = builder.add_member(p.clone()).expect("add");
    }
    let out = builder.build().expect("commit");
    let (st, v) = commit(s, &users[0], d[0].client, &out).await;
    assert_eq!((st, label(&v)), (403, "mls-not-in-conversation"), "{v}");
    group.clear_pending_commit();
    // One of Bob's two devices: taken.
    let mine = bob1
        .iter()
        .find(|p| {
            parley_mls::KeyPackageIn(bytes(p))
                .device()
                .is_some_and(|who| who.client == d[1].client)
        })
        .expect("a key package of Bob's first device")
        .clone();
    let out = group
        .commit_builder()
        .add_member(mine)
        .expect("add")
        .build()
        .expect("commit");
    let (st, v) = commit(s, &users[0], d[0].client, &out).await;
    assert_eq!(st, 201, "{v}");
    group.apply_pending_commit().expect("merged");
    d[0].group = Some(group);
    sync(s, &users, &mut d[1]).await;
    assert!(d[1].group.is_some());
    let v = conversation(s, &users[0], &id).await;
    assert_eq!(
        (v["protocol"].as_str(), v["epoch"].as_u64()),
        (Some("mixed"), Some(1)),
        "{v}"
    );
    let (st, v) = set_protocol(s, &users[0], &id, "mls").await;
    assert_eq!(
        (st, label(&v)),
        (409, "mls-migration-criteria-not-satisfied"),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("1 of the members' 3 devices")),
        "{v}"
    );

    // Messages: Proteus still, MLS not yet.
    let (st, v) = send(s, &users, &mut d[1], "too early").await;
    assert_eq!((st, label(&v)), (409, "mls-mixed-conversation"), "{v}");
    let ann = d[0].client;
    let proteus = |to: Vec<ClientId>| {
        let devices: serde_json::Map<String, Value> =
            to.iter().map(|c| (c.to_string(), json!("AAAA"))).collect();
        json!({"sender": ann, "recipients": {"localhost": {users[1].id.to_string(): devices}}})
    };
    let path = format!("/v1/conversations/localhost/{id}/proteus/messages");
    let (st, v) = s
        .post(
            &path,
            Some(&users[0].token),
            proteus(vec![d[1].client, d[2].client]),
        )
        .await;
    assert_eq!(st, 201, "{v}");

    // Members change the Proteus way, and the group follows: not by a
    // commit removing a member's device, but Cid, added to the
    // conversation, can be added to the group; removed from it, his device's
    // removal is the server's proposal, which Ann commits.
    let (st, v) = {
        let group = d[0].group.as_mut().expect("group");
        let bobs = group
            .roster()
            .members()
            .into_iter()
            .find(|m| m.index != group.current_member_index())
            .expect("bob's device")
            .index;
        let out = group
            .commit_builder()
            .remove_member(bobs)
            .expect("remove")
            .build()
            .expect("commit");
        group.clear_pending_commit();
        commit(s, &users[0], ann, &out).await
    };
    assert_eq!((st, label(&v)), (403, "action-denied"), "{v}");
    let (st, v) = s
        .post(
            &format!("/v1/conversations/localhost/{id}/members"),
            Some(&users[0].token),
            json!({"users": [{"id": users[2].id, "domain": "localhost"}]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let cids = claim(s, &users[0], &users[2], suite, None).await;
    let group = d[0].group.as_mut().expect("group");
    let out = group
        .commit_builder()
        .add_member(cids[0].clone())
        .expect("add")
        .build()
        .expect("commit");
    assert_eq!(commit(s, &users[0], ann, &out).await.0, 201);
    group.apply_pending_commit().expect("merged");
    sync(s, &users, &mut d[1]).await;
    sync(s, &users, &mut d[3]).await;
    assert!(d[3].group.is_some());
    let (st, v, _) = s
        .call(
            Method::DELETE,
            &format!(
                "/v1/conversations/localhost/{id}/members/localhost/{}",
                users[2].id
            ),
            Some(&users[0].token),
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    sync(s, &users, &mut d[0]).await;
    let group = d[0].group.as_mut().expect("group");
    let out = group.commit(Vec::new()).expect("commit");
    assert_eq!(commit(s, &users[0], ann, &out).await.0, 201);
    group.apply_pending_commit().expect("merged");
    assert_eq!(group.roster().members().len(), 2);
    sync(s, &users, &mut d[1]).await;

    // Bob's second device joins by external commit, which ends it.
    join_external(s, &users, &mut d[2], &id).await;
    let v = conversation(s, &users[0], &id).await;
    assert_eq!(
        (v["protocol"].as_str(), v["epoch"].as_u64()),
        (Some("mls"), Some(4)),
        "{v}"
    );
    let (st, v) = set_protocol(s, &users[0], &id, "mls").await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = set_protocol(s, &users[0], &id, "mixed").await;
    assert_eq!(
        (st, label(&v)),
        (403, "mls-invalid-protocol-transition"),
        "{v}"
    );
    let (st, v) = s
        .post(
            &path,
            Some(&users[0].token),
            proteus(vec![d[1].client, d[2].client]),
        )
        .await;
    assert_eq!(
        (st.as_u16(), label(&v)),
        (409, "mls-commit-required"),
        "{v}"
    );
    for i in [0, 1] {
        sync(s, &users, &mut d[i]).await;
    }
    let (st, v) = send(s, &users, &mut d[0], "by mls").await;
    assert_eq!(st, 201, "{v}");
    for i in [1, 2] {
        assert_eq!(sync(s, &users, &mut d[i]).await, ["by mls"]);
    }
}

/// A 1:1 conversation moves to MLS the same way, by either member: the
/// first commit, bringing in every device of both, ends the migration at
/// once. Its group never takes anyone else, and a block stops its messages
/// as it stops Proteus ones.
async fn a_one_to_one_conversation_moves_to_mls(s: &TestServer) {
    let suite = CipherSuite::DEFAULT;
    let users = people(s, "one2one", 3).await;
    // Ann: device 0; Bob: 1; Cid (connected with Ann only): 2.
    let mut d = Vec::new();
    for user in [0, 1, 2] {
        d.push(new_device(s, &users, user, suite).await);
    }
    // Bob has one conversation: his 1:1 with Ann.
    let (st, v) = s.get("/v1/conversations", &users[1].token).await;
    assert_eq!(st, 200, "{v}");
    let c = &v["conversations"][0];
    assert_eq!(
        (c["type"].as_str(), c["protocol"].as_str()),
        (Some("one2one"), Some("proteus")),
        "{v}"
    );
    let id = c["id"]["id"].as_str().expect("id").to_owned();
    let (st, v) = set_protocol(s, &users[1], &id, "mixed").await;
    assert_eq!(st, 200, "{v}");
    let group_id = B64
        .decode(
            conversation(s, &users[1], &id).await["group_id"]
                .as_str()
                .expect("group id"),
        )
        .expect("base64");
    let mut group = new_group(s, &users[1], &d[1].mls, group_id, suite).await;
    let anns = claim(s, &users[1], &users[0], suite, None).await;
    let out = group
        .commit_builder()
        .add_member(anns[0].clone())
        .expect("add")
        .build()
        .expect("commit");
    assert_eq!(commit(s, &users[1], d[1].client, &out).await.0, 201);
    group.apply_pending_commit().expect("merged");
    d[1].group = Some(group);
    let v = conversation(s, &users[0], &id).await;
    assert_eq!(
        (v["protocol"].as_str(), v["epoch"].as_u64()),
        (Some("mls"), Some(1)),
        "{v}"
    );
    sync(s, &users, &mut d[0]).await;
    let (st, v) = send(s, &users, &mut d[0], "hello bob").await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(sync(s, &users, &mut d[1]).await, ["hello bob"]);

    // Cid's device is not brought into it.
    let cids = claim(s, &users[0], &users[2], suite, None).await;
    let group = d[0].group.as_mut().expect("group");
    let out = group
        .commit_builder()
        .add_member(cids[0].clone())
        .expect("add")
        .build()
        .expect("commit");
    group.clear_pending_commit();
    let (st, v) = commit(s, &users[0], d[0].client, &out).await;
    assert_eq!((st, label(&v)), (403, "invalid-op"), "{v}");
    assert_eq!(
        conversation(s, &users[0], &id).await["epoch"].as_u64(),
        Some(1)
    );

    // Bob blocks Ann: neither's messages go.
    let (st, v, _) = s
        .call(
            Method::PUT,
            &format!("/v1/connections/localhost/{}", users[0].id),
            Some(&users[1].token),
            Some(json!({"status": "blocked"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = send(s, &users, &mut d[0], "still there?").await;
    assert_eq!((st, label(&v)), (403, "blocked"), "{v}");
    let (st, v) = send(s, &users, &mut d[1], "no").await;
    assert_eq!((st, label(&v)), (403, "blocked"), "{v}");
    // Nor do commits, nor (in another 1:1) a migration.
    let group = d[0].group.as_mut().expect("group");
    let out = group.commit(Vec::new()).expect("commit");
    group.clear_pending_commit();
    let (st, v) = commit(s, &users[0], d[0].client, &out).await;
    assert_eq!((st, label(&v)), (403, "blocked"), "{v}");
    let (st, v, _) = s
        .call(
            Method::PUT,
            &format!("/v1/connections/localhost/{}", users[0].id),
            Some(&users[1].token),
            Some(json!({"status": "accepted"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    // Neither takes the other's devices out of a 1:1.
    let group = d[1].group.as_mut().expect("group");
    let anns = group
        .roster()
        .members()
        .into_iter()
        .find(|m| m.index != group.current_member_index())
        .expect("ann's device")
        .index;
    let out = group
        .commit_builder()
        .remove_member(anns)
        .expect("remove")
        .build()
        .expect("commit");
    group.clear_pending_commit();
    let (st, v) = commit(s, &users[1], d[1].client, &out).await;
    assert_eq!((st, label(&v)), (403, "invalid-op"), "{v}");
    // A stranger posting to the 1:1's group hears what any group's stranger
    // hears.
    let (st, v) = post_mls(s, &users[2], d[2].client, "/v1/mls/messages", {
        let m = d[0]
            .group
            .as_mut()
            .expect("group")
            .encrypt_application_message(b"not cid's", Vec::new())
            .expect("encrypts");
        bytes(&m)
    })
    .await;
    assert_eq!((st, label(&v)), (403, "access-denied"), "{v}");
}

/// The call's group info, read by `u`.
async fn call_group_info(s: &TestServer, u: &User, id: &str) -> (u16, Option<MlsMessage>) {
    let resp = s
        .http
        .get(format!(
            "{}/v1/conversations/localhost/{id}/subconversations/conference/groupinfo",
            s.base
        ))
        .bearer_auth(&u.token)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("body");
    (status, MlsMessage::from_bytes(&body).ok())
}

/// The device joins the conversation's call by external commit.
async fn join_call<C: MlsConfig>(s: &TestServer, users: &[User], d: &mut Device<C>, id: &str) {
    let path = format!("/v1/conversations/localhost/{id}/subconversations/conference/groupinfo");
    d.call = Some(external_commit(s, users, d, &path).await);
}

/// The call (subconversation) as `u` reads it; the status and the answer.
async fn call_of(s: &TestServer, u: &User, id: &str) -> (u16, Value) {
    let (st, v) = s
        .get(
            &format!("/v1/conversations/localhost/{id}/subconversations/conference"),
            &u.token,
        )
        .await;
    (st.as_u16(), v)
}

/// The call's group id and epoch, and the devices in it.
fn call_parts(v: &Value) -> (Vec<u8>, u64, Vec<u64>) {
    let group = B64
        .decode(v["group_id"].as_str().expect("a group id"))
        .expect("base64");
    let members = v["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            m["client"].as_str().map_or_else(
                || m["client"].as_u64().expect("a device"),
                |c| u64::from_str_radix(c, 16).expect("a device id"),
            )
        })
        .collect();
    (group, v["epoch"].as_u64().expect("an epoch"), members)
}

/// A device's key for the call at its group's epoch.
fn call_key<C: MlsConfig>(d: &Device<C>) -> Vec<u8> {
    d.call
        .as_ref()
        .expect("in the call")
        .export_secret(b"exporter", &[], 32)
        .expect("exports")
        .as_bytes()
        .to_vec()
}

/// A conversation's call: its own group (opened on asking, made by its first
/// device, joined by external commit), its own delivery and keys, left by
/// the server's proposal, reset to a new group; only members come in, and
/// nobody adds anyone.
async fn a_call_has_a_group_of_its_own(s: &TestServer) {
    let suite = CipherSuite::DEFAULT;
    let users = people(s, "calls", 3).await;
    // Ann: device 0; Bob: 1, 2; Cid (no member): 3.
    let mut d = Vec::new();
    for user in [0, 1, 1, 2] {
        d.push(new_device(s, &users, user, suite).await);
    }
    let (id, group_id) = create(s, &users[0], suite).await;
    let packages = claim(s, &users[0], &users[1], suite, None).await;
    let mut group = new_group(s, &users[0], &d[0].mls, group_id.clone(), suite).await;
    let mut builder = group.commit_builder();
    for p in packages {
        builder = builder.add_member(p).expect("add");
    }
    let out = builder.build().expect("commit");
    assert_eq!(commit(s, &users[0], d[0].client, &out).await.0, 201);
    group.apply_pending_commit().expect("merged");
    d[0].group = Some(group);
    for device in &mut d[1..3] {
        sync(s, &users, device).await;
    }

    // Asking opens it: its own group id, epoch 0, nobody in it.
    let (st, v) = call_of(s, &users[0], &id).await;
    assert_eq!(st, 200, "{v}");
    let (call_id, epoch, members) = call_parts(&v);
    let mut expected = group_id.clone();
    expected.extend_from_slice(&0u32.to_be_bytes());
    expected.extend_from_slice(b"conference");
    assert_eq!((call_id.clone(), epoch, members), (expected, 0, vec![]));
    assert_eq!(v["cipher_suite"].as_u64(), Some(u64::from(suite.0)), "{v}");
    // Members only; known names only.
    let (st, v) = call_of(s, &users[2], &id).await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = s
        .get(
            &format!("/v1/conversations/localhost/{id}/subconversations/party"),
            &users[0].token,
        )
        .await;
    assert_eq!(
        (st.as_u16(), label(&v)),
        (400, "mls-unknown-subconversation"),
        "{v}"
    );
    assert_eq!(call_group_info(s, &users[0], &id).await.0, 404);

    // Ann starts the call: a group of her device alone.
    let mut call = new_group(s, &users[0], &d[0].mls, call_id.clone(), suite).await;
    let out = call.commit(Vec::new()).expect("commit");
    let (st, v) = commit(s, &users[0], d[0].client, &out).await;
    assert_eq!(st, 201, "{v}");
    call.apply_pending_commit().expect("merged");
    d[0].call = Some(call);
    let (_, v) = call_of(s, &users[0], &id).await;
    assert_eq!(call_parts(&v).1, 1, "{v}");
    assert_eq!(call_parts(&v).2, vec![d[0].client.0], "{v}");
    // Nobody adds anyone to a call, an admin neither.
    let bobs = claim(s, &users[0], &users[1], suite, Some(d[2].client)).await;
    let client = d[0].client;
    let call = d[0].call.as_mut().expect("in the call");
    let out = call
        .commit_builder()
        .add_member(bobs[0].clone())
        .expect("add")
        .build()
        .expect("commit");
    let (st, v) = commit(s, &users[0], client, &out).await;
    assert_eq!((st, label(&v)), (403, "action-denied"), "{v}");
    call.clear_pending_commit();
    // A stranger reads nothing of it.
    assert_eq!(call_group_info(s, &users[2], &id).await.0, 403);

    // Bob's first device joins by external commit; both derive one key.
    join_call(s, &users, &mut d[1], &id).await;
    assert!(sync(s, &users, &mut d[0]).await.is_empty());
    assert_eq!(call_key(&d[0]), call_key(&d[1]));
    let epoch2 = call_key(&d[0]);
    // The call's messages reach its devices only; the conversation's reach
    // every member device, as before.
    let client = d[0].client;
    let message = d[0]
        .call
        .as_mut()
        .expect("in the call")
        .encrypt_application_message(b"ring", Vec::new())
        .expect("encrypts");
    let (st, v) = post_mls(s, &users[0], client, "/v1/mls/messages", bytes(&message)).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(send(s, &users, &mut d[0], "hello").await.0, 201);
    assert_eq!(sync(s, &users, &mut d[1]).await, ["ring", "hello"]);
    assert_eq!(sync(s, &users, &mut d[2]).await, ["hello"]);
    // Nobody takes another device out of a call: it leaves by itself.
    let client = d[0].client;
    let call = d[0].call.as_mut().expect("in the call");
    let bob = call
        .roster()
        .members()
        .iter()
        .map(|m| m.index)
        .find(|i| *i != call.current_member_index())
        .expect("Bob's leaf");
    let out = call
        .commit_builder()
        .remove_member(bob)
        .expect("remove")
        .build()
        .expect("commit");
    let (st, v) = commit(s, &users[0], client, &out).await;
    assert_eq!((st, label(&v)), (403, "action-denied"), "{v}");
    call.clear_pending_commit();

    // Bob's device leaves: out at once, its removal proposed to Ann, who
    // commits it; the key moves on.
    let (st, v, _) = s
        .call(
            Method::DELETE,
            &format!(
                "/v1/conversations/localhost/{id}/subconversations/conference/self?client={}",
                d[1].client
            ),
            Some(&users[1].token),
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (_, v) = call_of(s, &users[0], &id).await;
    assert_eq!(call_parts(&v).2, vec![d[0].client.0], "{v}");
    let client = d[1].client;
    let late = d[1]
        .call
        .as_mut()
        .expect("in the call")
        .encrypt_application_message(b"still here?", Vec::new())
        .expect("encrypts");
    let (st, v) = post_mls(s, &users[1], client, "/v1/mls/messages", bytes(&late)).await;
    assert_eq!(st, 403, "{v}");
    sync(s, &users, &mut d[0]).await;
    let client = d[0].client;
    let call = d[0].call.as_mut().expect("in the call");
    let out = call.commit(Vec::new()).expect("commit");
    let (st, v) = commit(s, &users[0], client, &out).await;
    assert_eq!(st, 201, "{v}");
    call.apply_pending_commit().expect("merged");
    assert_eq!(call.roster().members().len(), 1);
    assert_ne!(call_key(&d[0]), epoch2);

    // A reset names what it ends; then the call starts anew in another
    // group, and the old one's messages are refused.
    let reset = |group: &[u8], epoch: u64| json!({"group_id": B64.encode(group), "epoch": epoch});
    let path = format!("/v1/conversations/localhost/{id}/subconversations/conference");
    let (st, v, _) = s
        .call(
            Method::DELETE,
            &path,
            Some(&users[1].token),
            Some(reset(&call_id, 2)),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (409, "mls-stale-message"), "{v}");
    let (st, v, _) = s
        .call(
            Method::DELETE,
            &path,
            Some(&users[1].token),
            Some(reset(&call_id, 3)),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (_, v) = call_of(s, &users[0], &id).await;
    let (next_id, epoch, members) = call_parts(&v);
    assert_ne!(next_id, call_id);
    assert_eq!((epoch, members), (0, vec![]), "{v}");
    // Ann's device, in the call, is told.
    let since = d[0]
        .seen
        .map(|id| format!("&since={id}"))
        .unwrap_or_default();
    let (st, v) = s
        .get(
            &format!("/v1/notifications?client={}{since}", d[0].client),
            &users[0].token,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let told = v["notifications"]
        .as_array()
        .expect("events")
        .iter()
        .any(|e| {
            e["payload"]["type"] == "conversation.subconversation-reset"
                && e["payload"]["subconversation"] == "conference"
        });
    assert!(told, "{v}");
    let client = d[0].client;
    let old = d[0]
        .call
        .as_mut()
        .expect("in the old call")
        .encrypt_application_message(b"anyone?", Vec::new())
        .expect("encrypts");
    let (st, v) = post_mls(s, &users[0], client, "/v1/mls/messages", bytes(&old)).await;
    assert_eq!((st, label(&v)), (404, "no-subconversation"), "{v}");

    // Bob starts the new call, Ann joins; Bob leaves the conversation: he
    // is out of the call too, and Ann commits his removal there.
    let mut call = new_group(s, &users[1], &d[1].mls, next_id.clone(), suite).await;
    let out = call.commit(Vec::new()).expect("commit");
    assert_eq!(commit(s, &users[1], d[1].client, &out).await.0, 201);
    call.apply_pending_commit().expect("merged");
    d[1].call = Some(call);
    join_call(s, &users, &mut d[0], &id).await;
    let (st, v, _) = s
        .call(
            Method::DELETE,
            &format!(
                "/v1/conversations/localhost/{id}/members/localhost/{}",
                users[1].id
            ),
            Some(&users[1].token),
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (_, v) = call_of(s, &users[0], &id).await;
    assert_eq!(call_parts(&v).2, vec![d[0].client.0], "{v}");
    sync(s, &users, &mut d[0]).await;
    let client = d[0].client;
    let call = d[0].call.as_mut().expect("in the call");
    let out = call.commit(Vec::new()).expect("commit");
    let (st, v) = commit(s, &users[0], client, &out).await;
    assert_eq!(st, 201, "{v}");
    call.apply_pending_commit().expect("merged");
    assert_eq!(call.roster().members().len(), 1);

    // The last one out ends the call: a new group, nobody in it.
    let (st, v, _) = s
        .call(
            Method::DELETE,
            &format!("{path}/self?client={}", d[0].client),
            Some(&users[0].token),
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (_, v) = call_of(s, &users[0], &id).await;
    let (last_id, epoch, members) = call_parts(&v);
    assert_ne!(last_id, next_id);
    assert_eq!((epoch, members), (0, vec![]), "{v}");
}
