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
    let shown = screen(&View::of(&mut bob, 0).await.expect("view"), &ui);
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
    let shown = screen(&View::of(&mut bob, 0).await.expect("view"), &typing);
    assert!(shown.contains("alice is typing…"), "{shown}");

    // Bob types and presses Enter: the message really goes out.
    let mut ui = Ui::default();
    let view = View::of(&mut bob, 0).await.expect("view");
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
        &View::of(&mut alice, 0).await.expect("view"),
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
        &View::of(&mut alice, 0).await.expect("view"),
        &Ui::default(),
    );
    assert!(at_alice.contains("✔ bob"), "{at_alice}");
    assert!(at_alice.contains("bob — verified"), "{at_alice}");
}
