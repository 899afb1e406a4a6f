//! The database's layout: the keyring and origin tables, and one table of the
//! common row shape (`seq`, `key_h`, `grp`, `value`) per [`Table`], created
//! when missing.
//!
//! This module never knows a key or a value: it only makes the tables.

use super::{Table, db};
use crate::ClientError;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS keyring (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        salt BLOB NOT NULL, m_kib INTEGER NOT NULL, t INTEGER NOT NULL, p INTEGER NOT NULL,
        wrapped BLOB NOT NULL)",
    // Which file this database was made in (device and inode), to notice a copy.
    "CREATE TABLE IF NOT EXISTS origin (
        id INTEGER PRIMARY KEY CHECK (id = 1), file BLOB NOT NULL)",
];

fn table_sql(table: &str) -> [String; 2] {
    [
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                key_h BLOB NOT NULL UNIQUE,
                grp BLOB,
                value BLOB NOT NULL)"
        ),
        format!("CREATE INDEX IF NOT EXISTS {table}_grp ON {table} (grp, seq)"),
    ]
}

/// Creates whatever table is missing (a database made by an earlier version
/// gains the tables added since).
pub(super) async fn schema(conn: &mut sqlx::SqliteConnection) -> Result<(), ClientError> {
    let mut statements: Vec<String> = SCHEMA.iter().map(|s| (*s).to_owned()).collect();
    for t in Table::ALL {
        statements.extend(table_sql(t.name()));
    }
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(s))
            .execute(&mut *conn)
            .await
            .map_err(|e| db("cannot set up the database", e))?;
    }
    Ok(())
}
