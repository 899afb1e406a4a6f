//! The terminal chat rendered with ratatui's test backend, over accounts on a
//! real server: the list with unread counts and the shield, messages with
//! edits, reactions and receipts, and the input line sending for real.

use parley_api::Register;
use parley_cli::tui::{Ui, View, draw, on_key};
use parley_client::account::Account;
use parley_client::api::Api;
use parley_testkit::TestServer;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

async fn register(s: &TestServer, dir: &std::path::Path, name: &str) -> Account {
    let email = format!("{name}@example.com");
    Api::new(&s.url())
        .expect("client")
        .send_activation_code(&email)
        .await
        .expect("code");
    let account = Account::register(
        &dir.join(name),
        "passphrase",
        "violet harbour sings under copper rain",
        &s.url(),
        &Register {
            name: name.into(),
            email: email.clone(),
            email_code: s.code_for(&email),
            password: "Secret-123!".into(),
            handle: None,
        },
    )
    .await
    .expect("registered");
    account.set_handle(name).await.expect("handle");
    account
}

fn screen(view: &View, ui: &Ui) -> String {
    let mut terminal = Terminal::new(TestBackend::new(90, 16)).expect("terminal");
    terminal.draw(|f| draw(f, view, ui)).expect("drawn");
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_window_shows_and_sends() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut alice = register(&s, dir.path(), "alice").await;
    let mut bob = register(&s, dir.path(), "bob").await;
    let bob_id = alice.find("bob").await.expect("found");
    alice.connect_to(&bob_id).await.expect("requested");
    let conv = bob
        .accept(&parley_api::Qualified {
            id: alice.user(),
            domain: "localhost".into(),
        })
        .await
        .expect("accepted");
    alice.sync().await.expect("synced");
    let first = alice.send_text(&conv, "lunch?", false).await.expect("sent");
    alice
        .send_text(&conv, "at noon", false)
        .await
        .expect("sent");
    alice
        .edit(&conv, &first, "lunch today?")
        .await
        .expect("edited");
    bob.sync().await.expect("synced");

    // Bob's window before he reads: the conversation with 2 unread.
    let ui = Ui::default();
    let shown = screen(&View::of(&mut bob, &mut None).await.expect("view"), &ui);
    assert!(shown.contains("alice (2)"), "{shown}");
    assert!(shown.contains("alice: lunch today? (edited)"), "{shown}");
    assert!(shown.contains("Ctrl-C quit"), "the help bar\n{shown}");

    // Alice is typing: Bob's window says so.
    let mut typing = Ui::default();
    typing.typing.insert(
        conv.id,
        (
            "alice".into(),
            std::time::Instant::now() + std::time::Duration::from_secs(5),
        ),
    );
    let shown = screen(
        &View::of(&mut bob, &mut typing.selected)
            .await
            .expect("view"),
        &typing,
    );
    assert!(shown.contains("alice is typing…"), "{shown}");

    // Bob types and presses Enter: the message really goes out.
    let mut ui = Ui::default();
    let view = View::of(&mut bob, &mut ui.selected).await.expect("view");
    for ch in "yes!".chars() {
        on_key(
            &mut bob,
            &view,
            &mut ui,
            KeyEvent::new(KeyCode::Char(ch), KeyModifiers::NONE),
        )
        .await;
    }
    assert!(screen(&view, &ui).contains("yes!"), "the input line");
    on_key(
        &mut bob,
        &view,
        &mut ui,
        KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE),
    )
    .await;
    assert!(ui.input.is_empty() && ui.status.is_empty(), "{}", ui.status);
    alice.sync().await.expect("synced");
    let at_alice = screen(
        &View::of(&mut alice, &mut None).await.expect("view"),
        &Ui::default(),
    );
    assert!(at_alice.contains("bob: yes!"), "{at_alice}");
    assert!(
        at_alice.contains("you: at noon ✓ delivered"),
        "delivery receipts in a 1:1\n{at_alice}"
    );

    // Verified: Alice checks Bob's device; the shield shows.
    for d in alice.peer_devices(bob.user()).await.expect("devices") {
        alice
            .verify_device(bob.user(), d.client, &d.fingerprint.expect("known"))
            .await
            .expect("verified");
    }
    let at_alice = screen(
        &View::of(&mut alice, &mut None).await.expect("view"),
        &Ui::default(),
    );
    assert!(at_alice.contains("✔ bob"), "{at_alice}");
    assert!(at_alice.contains("bob — verified"), "{at_alice}");
}

/// The selection is a conversation, not a row: Ben reads Ann, a message in
/// another conversation moves that one to the top of the list, and what Ben
/// types still goes to Ann (a row number would have sent it to the group).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_elsewhere_never_moves_the_send_target() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ann = register(&s, dir.path(), "ann").await;
    let mut ben = register(&s, dir.path(), "ben").await;
    let mut cat = register(&s, dir.path(), "cat").await;
    let me = |a: &Account| parley_api::Qualified {
        id: a.user(),
        domain: "localhost".into(),
    };
    ann.connect_to(&me(&ben)).await.expect("requested");
    let with_ann = ben.accept(&me(&ann)).await.expect("accepted");
    cat.connect_to(&me(&ben)).await.expect("requested");
    ben.accept(&me(&cat)).await.expect("accepted");
    cat.sync().await.expect("synced");
    let team = cat
        .create_group("team", vec![me(&ben)], false)
        .await
        .expect("group");
    ann.sync().await.expect("synced");
    ann.send_text(&with_ann, "hi ben", false)
        .await
        .expect("sent");
    ben.sync().await.expect("synced");

    // Ben moves down the list to Ann's conversation and starts typing.
    let mut ui = Ui::default();
    let mut view = View::of(&mut ben, &mut ui.selected).await.expect("view");
    for _ in 0..view.conversations.len() {
        if ui.selected.as_ref() == Some(&with_ann) {
            break;
        }
        on_key(
            &mut ben,
            &view,
            &mut ui,
            KeyEvent::new(KeyCode::Down, KeyModifiers::NONE),
        )
        .await;
        view = View::of(&mut ben, &mut ui.selected).await.expect("view");
    }
    assert_eq!(ui.selected.as_ref(), Some(&with_ann));
    for ch in "private answer for ann".chars() {
        on_key(
            &mut ben,
            &view,
            &mut ui,
            KeyEvent::new(KeyCode::Char(ch), KeyModifiers::NONE),
        )
        .await;
    }
    // Meanwhile Cat writes in the group: it becomes the most recent (a few
    // seconds later, by the server's clock), and the list re-sorts under
    // Ben's cursor.
    s.running.clock.advance(5);
    cat.send_text(&team, "team news", false)
        .await
        .expect("sent");
    ben.sync().await.expect("synced");
    let view = View::of(&mut ben, &mut ui.selected).await.expect("view");
    assert_eq!(view.conversations[0].id, team, "the group moved to the top");
    let shown = screen(&view, &ui);
    assert!(shown.contains("┌ann"), "still showing Ann\n{shown}");
    on_key(
        &mut ben,
        &view,
        &mut ui,
        KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE),
    )
    .await;
    assert!(ui.status.is_empty(), "{}", ui.status);

    ann.sync().await.expect("synced");
    let at_ann: Vec<String> = ann
        .history(&with_ann)
        .await
        .expect("history")
        .iter()
        .map(|m| m.body())
        .collect();
    assert!(
        at_ann.iter().any(|t| t == "private answer for ann"),
        "{at_ann:?}"
    );
    cat.sync().await.expect("synced");
    let at_cat: Vec<String> = cat
        .history(&team)
        .await
        .expect("history")
        .iter()
        .map(|m| m.body())
        .collect();
    assert!(
        !at_cat.iter().any(|t| t.contains("private answer")),
        "nothing went to the group: {at_cat:?}"
    );
}
