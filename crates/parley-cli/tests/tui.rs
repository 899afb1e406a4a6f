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
    screen_of_size(view, ui, 90, 16)
}

/// The window drawn on a `width` × `height` terminal, as text.
fn screen_of_size(view: &View, ui: &Ui, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
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

/// Reads the account and presses one key, as the event loop does.
async fn press(account: &mut Account, ui: &mut Ui, code: KeyCode, modifiers: KeyModifiers) {
    let view = View::of(account, &mut ui.selected).await.expect("view");
    on_key(account, &view, ui, KeyEvent::new(code, modifiers)).await;
}

async fn type_in(account: &mut Account, ui: &mut Ui, text: &str) {
    for ch in text.chars() {
        press(account, ui, KeyCode::Char(ch), KeyModifiers::NONE).await;
    }
}

async fn enter(account: &mut Account, ui: &mut Ui) {
    press(account, ui, KeyCode::Enter, KeyModifiers::NONE).await;
}

/// The window as it is now, on a larger terminal.
async fn now(account: &mut Account, ui: &mut Ui) -> String {
    let view = View::of(account, &mut ui.selected).await.expect("view");
    screen_of_size(&view, ui, 110, 30)
}

/// What the keyboard does to messages and conversations: help, times and
/// days, the unread marker, multi-line input, picking a message to reply to,
/// edit, react to and delete, scrollback, search, and the typed commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyboard_replies_edits_reacts_deletes_searches_and_runs_commands() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut alice = register(&s, dir.path(), "alice").await;
    let mut bob = register(&s, dir.path(), "bob").await;
    let alice_id = parley_api::Qualified {
        id: alice.user(),
        domain: "localhost".into(),
    };
    let bob_id = alice.find("bob").await.expect("found");
    alice.connect_to(&bob_id).await.expect("requested");
    let conv = bob.accept(&alice_id).await.expect("accepted");
    alice.sync().await.expect("synced");
    let lunch = alice.send_text(&conv, "lunch?", false).await.expect("sent");
    bob.sync().await.expect("synced");
    // Bob quits and comes back: what he has not read is still marked.
    bob.close().await;
    let mut bob = Account::open(&dir.path().join("bob"), "passphrase")
        .await
        .expect("reopened");

    // Help on `?` (nothing typed); any key closes it.
    let mut ui = Ui::default();
    press(&mut bob, &mut ui, KeyCode::Char('?'), KeyModifiers::NONE).await;
    let shown = now(&mut bob, &mut ui).await;
    assert!(shown.contains("Help (any key closes)"), "{shown}");
    assert!(
        shown.contains("/group [--mls] <name> <handles…>"),
        "{shown}"
    );
    press(&mut bob, &mut ui, KeyCode::Char('x'), KeyModifiers::NONE).await;
    assert!(
        !ui.help && ui.input.is_empty(),
        "the key only closed the help"
    );

    // The message has its time and day; the unread one is marked.
    let view = View::of(&mut bob, &mut ui.selected).await.expect("view");
    let sent_at =
        time::OffsetDateTime::from_unix_timestamp(view.messages[0].1.time).expect("a time");
    let day = sent_at
        .format(time::macros::format_description!(
            "[weekday], [day padding:none] [month repr:long] [year]"
        ))
        .expect("a day");
    let clock = sent_at
        .format(time::macros::format_description!("[hour]:[minute]"))
        .expect("a clock");
    let shown = now(&mut bob, &mut ui).await;
    assert!(shown.contains(&format!("──── {day} ────")), "{shown}");
    assert!(shown.contains("──── new ────"), "{shown}");
    assert!(shown.contains(&format!("{clock} alice: lunch?")), "{shown}");

    // Alt+↑ picks the newest message; r replies to it, with two lines.
    press(&mut bob, &mut ui, KeyCode::Up, KeyModifiers::ALT).await;
    assert_eq!(ui.picked.as_deref(), Some(lunch.as_str()));
    press(&mut bob, &mut ui, KeyCode::Char('r'), KeyModifiers::NONE).await;
    assert!(
        now(&mut bob, &mut ui)
            .await
            .contains("Reply to alice: lunch?")
    );
    type_in(&mut bob, &mut ui, "yes").await;
    press(&mut bob, &mut ui, KeyCode::Enter, KeyModifiers::ALT).await;
    type_in(&mut bob, &mut ui, "at noon?").await;
    enter(&mut bob, &mut ui).await;
    assert!(ui.status.is_empty(), "{}", ui.status);
    alice.sync().await.expect("synced");
    let at_alice = alice.history(&conv).await.expect("history");
    let reply = at_alice
        .iter()
        .find(|m| m.text == "yes\nat noon?")
        .expect("the two-line reply arrived");
    assert_eq!(reply.reply_to.as_deref(), Some(lunch.as_str()));
    let shown = now(&mut alice, &mut Ui::default()).await;
    assert!(shown.contains("↱ you: lunch?"), "{shown}");
    assert!(shown.contains("bob: yes"), "{shown}");

    // e edits the picked message (his own), 1 reacts, d then e deletes.
    press(&mut bob, &mut ui, KeyCode::Up, KeyModifiers::ALT).await;
    press(&mut bob, &mut ui, KeyCode::Char('e'), KeyModifiers::NONE).await;
    assert_eq!(ui.input, "yes\nat noon?", "the text to edit");
    for _ in 0.."at noon?".len() {
        press(&mut bob, &mut ui, KeyCode::Backspace, KeyModifiers::NONE).await;
    }
    type_in(&mut bob, &mut ui, "at one?").await;
    enter(&mut bob, &mut ui).await;
    assert!(ui.status.is_empty(), "{}", ui.status);
    // ↑ again picks Alice's message: a thumbs-up.
    press(&mut bob, &mut ui, KeyCode::Up, KeyModifiers::ALT).await;
    press(&mut bob, &mut ui, KeyCode::Up, KeyModifiers::NONE).await;
    assert_eq!(ui.picked.as_deref(), Some(lunch.as_str()));
    press(&mut bob, &mut ui, KeyCode::Char('e'), KeyModifiers::NONE).await;
    assert!(ui.status.contains("Only your own"), "{}", ui.status);
    press(&mut bob, &mut ui, KeyCode::Char('1'), KeyModifiers::NONE).await;
    assert!(ui.status.is_empty(), "{}", ui.status);
    alice.sync().await.expect("synced");
    let at_alice = alice.history(&conv).await.expect("history");
    assert!(
        at_alice
            .iter()
            .any(|m| m.text == "yes\nat one?" && m.edited)
    );
    let lunch_at_alice = at_alice.iter().find(|m| m.id == lunch).expect("lunch");
    assert_eq!(
        lunch_at_alice
            .reactions
            .get(&bob.user())
            .map(String::as_str),
        Some("👍")
    );
    press(&mut bob, &mut ui, KeyCode::Down, KeyModifiers::NONE).await;
    press(&mut bob, &mut ui, KeyCode::Char('d'), KeyModifiers::NONE).await;
    assert!(ui.status.contains("for everyone"), "{}", ui.status);
    press(&mut bob, &mut ui, KeyCode::Char('e'), KeyModifiers::NONE).await;
    assert_eq!(ui.status, "Deleted.");
    alice.sync().await.expect("synced");
    let at_alice = alice.history(&conv).await.expect("history");
    assert!(at_alice.iter().any(|m| m.deleted), "deleted for everyone");

    // Scrollback: Home shows the oldest, End the newest.
    for i in 0..30 {
        alice
            .send_text(&conv, &format!("filler {i}"), false)
            .await
            .expect("sent");
    }
    bob.sync().await.expect("synced");
    let shown = now(&mut bob, &mut ui).await;
    assert!(
        shown.contains("filler 29") && !shown.contains("lunch?"),
        "{shown}"
    );
    press(&mut bob, &mut ui, KeyCode::Home, KeyModifiers::NONE).await;
    let shown = now(&mut bob, &mut ui).await;
    assert!(
        shown.contains("alice: lunch?") && !shown.contains("filler 29"),
        "{shown}"
    );
    assert!(shown.contains("scrolled back"), "{shown}");
    press(&mut bob, &mut ui, KeyCode::PageDown, KeyModifiers::NONE).await;
    assert!(!now(&mut bob, &mut ui).await.contains("alice: lunch?"));
    press(&mut bob, &mut ui, KeyCode::End, KeyModifiers::NONE).await;
    assert!(now(&mut bob, &mut ui).await.contains("filler 29"));

    // Search: Ctrl-F, the words, Enter; Enter again goes to the message.
    press(&mut bob, &mut ui, KeyCode::Char('f'), KeyModifiers::CONTROL).await;
    type_in(&mut bob, &mut ui, "LUNCH").await;
    enter(&mut bob, &mut ui).await;
    let shown = now(&mut bob, &mut ui).await;
    assert!(shown.contains("1 found for \"LUNCH\""), "{shown}");
    assert!(shown.contains("alice: lunch?"), "{shown}");
    enter(&mut bob, &mut ui).await;
    assert!(ui.search.is_none());
    assert_eq!(ui.picked.as_deref(), Some(lunch.as_str()));
    assert!(
        now(&mut bob, &mut ui).await.contains("alice: lunch?"),
        "picked, so shown"
    );
    press(&mut bob, &mut ui, KeyCode::Esc, KeyModifiers::NONE).await;

    // Commands: a group, mute, leave; an unknown one says so.
    type_in(&mut bob, &mut ui, "/bogus").await;
    enter(&mut bob, &mut ui).await;
    assert!(ui.status.contains("no command /bogus"), "{}", ui.status);
    assert_eq!(ui.input, "/bogus", "kept, to mend");
    ui.input.clear();
    type_in(&mut bob, &mut ui, "/group crew alice").await;
    enter(&mut bob, &mut ui).await;
    assert_eq!(ui.status, "Created crew.");
    assert!(
        now(&mut bob, &mut ui).await.contains("┌crew"),
        "the new group is selected"
    );
    // Tab completes a member's name after @, and the text mentions them.
    type_in(&mut bob, &mut ui, "@al").await;
    press(&mut bob, &mut ui, KeyCode::Tab, KeyModifiers::NONE).await;
    assert_eq!(ui.input, "@alice ");
    type_in(&mut bob, &mut ui, "look").await;
    enter(&mut bob, &mut ui).await;
    assert!(ui.status.is_empty(), "{}", ui.status);
    alice.sync().await.expect("synced");
    let crew = ui.selected.clone().expect("crew");
    let at_alice = alice.history(&crew).await.expect("history");
    let mention = at_alice
        .iter()
        .find(|m| m.text == "@alice look")
        .expect("the mention arrived");
    assert_eq!(mention.mentions, vec![alice.user()]);
    // An MLS group the same way; its messages go the same way.
    type_in(&mut bob, &mut ui, "/group --mls vault alice").await;
    enter(&mut bob, &mut ui).await;
    assert_eq!(ui.status, "Created vault (MLS).");
    assert!(
        now(&mut bob, &mut ui).await.contains("vault mls"),
        "the list says which protocol"
    );
    type_in(&mut bob, &mut ui, "sealed once").await;
    enter(&mut bob, &mut ui).await;
    assert!(ui.status.is_empty(), "{}", ui.status);
    alice.sync().await.expect("synced");
    let vault = ui.selected.clone().expect("vault");
    assert!(
        alice
            .history(&vault)
            .await
            .expect("history")
            .iter()
            .any(|m| m.text == "sealed once"),
        "the MLS message arrived"
    );
    ui.selected = Some(crew.clone());
    // Its Proteus group moves to MLS, and says so.
    type_in(&mut bob, &mut ui, "/migrate").await;
    enter(&mut bob, &mut ui).await;
    assert_eq!(ui.status, "crew is an MLS conversation now.");
    type_in(&mut bob, &mut ui, "/mute").await;
    enter(&mut bob, &mut ui).await;
    assert!(now(&mut bob, &mut ui).await.contains("crew mls muted"));
    type_in(&mut bob, &mut ui, "/leave").await;
    enter(&mut bob, &mut ui).await;
    assert!(ui.status.starts_with("You left crew"), "{}", ui.status);
    type_in(&mut bob, &mut ui, "anyone?").await;
    enter(&mut bob, &mut ui).await;
    assert!(ui.status.contains("no longer a member"), "{}", ui.status);
    ui.input.clear();

    // /block in the 1:1 blocks the other person.
    ui.selected = Some(conv.clone());
    type_in(&mut bob, &mut ui, "/block").await;
    enter(&mut bob, &mut ui).await;
    assert!(ui.status.starts_with("Blocked alice"), "{}", ui.status);
    let refused = alice.send_text(&conv, "still there?", false).await;
    assert_eq!(refused.expect_err("blocked").code(), "blocked");
}

/// The app lock: after a while without a key the window shows nothing of the
/// conversations; a wrong passphrase keeps it locked, the device's local
/// passphrase opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_locks_when_idle_and_opens_with_the_local_passphrase() {
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
    alice
        .send_text(&conv, "secret plans", false)
        .await
        .expect("sent");
    bob.sync().await.expect("synced");

    let mut ui = Ui::default();
    ui.lock_after = Some(std::time::Duration::from_secs(60));
    let start = std::time::Instant::now();
    ui.lock_if_idle(start);
    ui.lock_if_idle(start + std::time::Duration::from_secs(59));
    assert!(!ui.locked, "not yet");
    assert!(now(&mut bob, &mut ui).await.contains("secret plans"));
    ui.lock_if_idle(start + std::time::Duration::from_secs(61));
    assert!(ui.locked);
    // Locked, what arrives is not shown, so it stays unread.
    alice
        .send_text(&conv, "while you were away", false)
        .await
        .expect("sent");
    bob.sync().await.expect("synced");
    let view = parley_cli::tui::shown(&mut bob, &mut ui)
        .await
        .expect("view");
    assert_eq!(view.conversations[0].unread, 2, "nothing read while locked");
    let shown = now(&mut bob, &mut ui).await;
    assert!(shown.contains("Parley is locked"), "{shown}");
    assert!(
        !shown.contains("secret plans") && !shown.contains("alice"),
        "{shown}"
    );

    type_in(&mut bob, &mut ui, "not it").await;
    assert!(
        !format!("{ui:?}").contains("not it"),
        "no passphrase in Debug"
    );
    let shown = now(&mut bob, &mut ui).await;
    assert!(
        shown.contains("Passphrase: ••••••") && !shown.contains("not it"),
        "{shown}"
    );
    enter(&mut bob, &mut ui).await;
    assert!(ui.locked, "a wrong passphrase keeps it locked");
    assert!(ui.status.contains("Wrong passphrase"), "{}", ui.status);
    type_in(&mut bob, &mut ui, "passphrase").await;
    enter(&mut bob, &mut ui).await;
    assert!(!ui.locked, "{}", ui.status);
    // Open again: shown, read, and the new ones still marked.
    let view = parley_cli::tui::shown(&mut bob, &mut ui)
        .await
        .expect("view");
    assert_eq!(view.conversations[0].unread, 0);
    let shown = now(&mut bob, &mut ui).await;
    assert!(shown.contains("secret plans"), "{shown}");
    assert!(shown.contains("──── new ────"), "{shown}");
}

/// Desktop notifications say where a message arrived, never what it says;
/// not for a muted conversation or the one on screen (unless locked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_say_where_not_what() {
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
    let team = alice
        .create_group("team", vec![bob_id.clone()], false)
        .await
        .expect("group");
    bob.sync().await.expect("synced");
    let mut ui = Ui::default();
    ui.selected = Some(conv.clone());

    alice
        .send_text(&team, "secret plans", false)
        .await
        .expect("sent");
    alice
        .send_text(&conv, "on screen", false)
        .await
        .expect("sent");
    let updates = bob.sync().await.expect("synced");
    let lines = parley_cli::tui::notify::notifications(&mut bob, &ui, &updates).await;
    assert_eq!(lines, vec!["New message in team".to_owned()]);

    bob.set_muted(&team, true).await.expect("muted");
    alice
        .send_text(&team, "more plans", false)
        .await
        .expect("sent");
    let updates = bob.sync().await.expect("synced");
    let lines = parley_cli::tui::notify::notifications(&mut bob, &ui, &updates).await;
    assert!(lines.is_empty(), "muted: {lines:?}");

    ui.locked = true;
    alice
        .send_text(&conv, "while locked", false)
        .await
        .expect("sent");
    let updates = bob.sync().await.expect("synced");
    let lines = parley_cli::tui::notify::notifications(&mut bob, &ui, &updates).await;
    assert_eq!(
        lines,
        vec!["New message in alice".to_owned()],
        "locked: nothing is on screen"
    );
}
