//! The store's tests: rows round-trip and stay sealed and nameless on disk,
//! moved rows and wrong passphrases are refused, deleted rows leave no trace,
//! and the directory is the owner's alone.

use std::path::Path;

use super::*;

fn files(dir: &Path) -> Vec<Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| std::fs::read(e.expect("entry").path()).unwrap_or_default())
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(unix)]
#[tokio::test]
async fn only_the_owner_can_read_the_directory_and_its_files() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = tempfile::tempdir().expect("dir");
    let dir = root.path().join("device");
    std::fs::create_dir_all(&dir).expect("a directory made with the default mode");
    let store = Store::open(&dir, "a passphrase").await.expect("open");
    let mut tx = store.begin().await.expect("begin");
    tx.put(Table::Messages, b"m1", None, b"words")
        .await
        .expect("put");
    tx.commit().await.expect("commit");
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for entry in std::fs::read_dir(&dir).expect("read") {
        let path = entry.expect("entry").path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

#[tokio::test]
async fn rows_round_trip_reopen_and_refuse_a_wrong_passphrase() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path(), "a passphrase").await.expect("open");
    let mut tx = store.begin().await.expect("begin");
    tx.put(
        Table::Messages,
        b"m1",
        Some(b"zebra chat"),
        b"first secret words",
    )
    .await
    .expect("put");
    tx.put(Table::Messages, b"m2", Some(b"zebra chat"), b"second")
        .await
        .expect("put");
    tx.put(Table::Messages, b"m3", Some(b"other"), b"third")
        .await
        .expect("put");
    tx.commit().await.expect("commit");
    store.close().await;

    let store = Store::open(dir.path(), "a passphrase")
        .await
        .expect("reopen");
    let mut tx = store.read().await.expect("read");
    let group = tx
        .group(Table::Messages, b"zebra chat")
        .await
        .expect("group");
    assert_eq!(
        group.iter().map(|(_, v)| v.to_vec()).collect::<Vec<_>>(),
        vec![b"first secret words".to_vec(), b"second".to_vec()]
    );
    assert_eq!(
        tx.get(Table::Messages, b"m3")
            .await
            .expect("get")
            .map(|v| v.to_vec()),
        Some(b"third".to_vec())
    );
    assert!(tx.get(Table::Meta, b"m3").await.expect("get").is_none());
    drop(tx);
    store.close().await;
    assert!(matches!(
        Store::open(dir.path(), "another passphrase").await,
        Err(ClientError::WrongPassphrase)
    ));
    for file in files(dir.path()) {
        assert!(!contains(&file, b"secret words"), "no plaintext at rest");
        assert!(!contains(&file, b"zebra"), "no names at rest");
    }
}

#[tokio::test]
async fn swapped_rows_are_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path(), "a passphrase").await.expect("open");
    let mut tx = store.begin().await.expect("begin");
    tx.put(Table::Meta, b"a", None, b"one").await.expect("put");
    tx.put(Table::Meta, b"b", None, b"two").await.expect("put");
    tx.commit().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    let (a, b) = (tx.key(Table::Meta, b"a"), tx.key(Table::Meta, b"b"));
    sqlx::query("UPDATE meta SET value = (SELECT value FROM meta WHERE key_h = ?) WHERE key_h = ?")
        .bind(b.as_slice())
        .bind(a.as_slice())
        .execute(&mut *tx.tx)
        .await
        .expect("swap");
    assert!(
        tx.get(Table::Meta, b"a").await.is_err(),
        "moved value refused"
    );
    assert!(tx.get(Table::Meta, b"b").await.is_ok());
}

#[tokio::test]
async fn a_new_passphrase_rewraps_the_key_and_the_data_stays() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path(), "old passphrase")
        .await
        .expect("open");
    let mut tx = store.begin().await.expect("begin");
    tx.put(Table::Meta, b"a", None, b"kept").await.expect("put");
    tx.commit().await.expect("commit");
    assert!(matches!(
        store.change_passphrase("wrong", "new passphrase").await,
        Err(ClientError::WrongPassphrase)
    ));
    store
        .change_passphrase("old passphrase", "new passphrase")
        .await
        .expect("change");
    store.close().await;
    assert!(matches!(
        Store::open(dir.path(), "old passphrase").await,
        Err(ClientError::WrongPassphrase)
    ));
    let store = Store::open(dir.path(), "new passphrase")
        .await
        .expect("open");
    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.get(Table::Meta, b"a")
            .await
            .expect("get")
            .map(|v| v.to_vec()),
        Some(b"kept".to_vec())
    );
}

#[tokio::test]
async fn a_deleted_row_leaves_no_trace_in_any_file() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path(), "a passphrase").await.expect("open");
    let mut tx = store.begin().await.expect("begin");
    tx.put(Table::Messages, b"gone", Some(b"c"), b"shred me")
        .await
        .expect("put");
    tx.put(Table::Messages, b"kept", Some(b"c"), b"keep me")
        .await
        .expect("put");
    tx.commit().await.expect("commit");
    store.shred().await.expect("checkpoint");
    let mut tx = store.read().await.expect("read");
    let key = tx.key(Table::Messages, b"gone");
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT value FROM messages WHERE key_h = ?")
        .bind(key.as_slice())
        .fetch_one(&mut *tx.tx)
        .await
        .expect("sealed row");
    drop(tx);
    assert!(
        files(dir.path())
            .iter()
            .any(|f| contains(f, &sealed[1..40])),
        "the sealed row is on disk before the delete (the check can fail)"
    );
    let mut tx = store.begin().await.expect("begin");
    assert!(tx.delete(Table::Messages, b"gone").await.expect("delete"));
    tx.commit().await.expect("commit");
    store.shred().await.expect("shred");
    for file in files(dir.path()) {
        assert!(!contains(&file, &sealed[1..40]), "the sealed row is gone");
    }
}

#[tokio::test]
async fn a_directory_of_the_previous_format_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join(OLD_FORMAT), b"{}").expect("old");
    let e = Store::open(dir.path(), "p").await.expect_err("refused");
    assert!(e.to_string().contains("Log in again"), "{e}");
}

#[tokio::test]
async fn hostile_key_derivation_settings_are_refused() {
    let e = passphrase_key("p", vec![0; 16], 4 * 1024 * 1024, 3, 1)
        .await
        .expect_err("4 GiB refused");
    assert!(matches!(e, ClientError::Storage(_)));
}
