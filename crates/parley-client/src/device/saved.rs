//! The rows this device is stored as: its own record (ids, cursor, next prekey
//! id, identity, send generation) in the meta table, one row per prekey, per
//! session and per pinned identity, and loading them back.
//!
//! This module never decides anything: it writes down and reads back what the
//! other parts hold, and never knows what a message means.

use std::collections::HashMap;

use getrandom::SysRng;
use parley_api::{ClientId, UserId};
use parley_proteus::{IdentityKeyPair, PreKey, Session};
use rand_core::UnwrapErr;
use zeroize::Zeroizing;

use super::{Device, b64, unb64};
use crate::ClientError;
use crate::store::{Table, Tx};

/// This device's own record (row `device` of the meta table).
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedDevice {
    user: UserId,
    client: ClientId,
    cursor: Option<u64>,
    next_prekey: u16,
    identity: String,
    #[serde(default)]
    generation: u64,
}

/// A session row: whose, and the session (base64 of its Proteus encoding).
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedSession {
    user: UserId,
    client: ClientId,
    session: String,
}

/// A pinned identity row.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedPin {
    user: UserId,
    client: ClientId,
    identity: String,
}

/// The meta row holding this device.
const DEVICE_ROW: &[u8] = b"device";

/// One row the device wants in the database: table, name, value.
pub(crate) type DeviceRow = (Table, Vec<u8>, Zeroizing<Vec<u8>>);

fn pair_name(user: UserId, client: ClientId) -> Vec<u8> {
    let mut name = user.as_bytes().to_vec();
    name.extend_from_slice(&client.0.to_be_bytes());
    name
}

fn json<T: serde::Serialize>(value: &T) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(serde_json::to_vec(value).expect("a saved row serializes"))
}

fn damaged(what: &str) -> ClientError {
    ClientError::Storage(format!("the saved device's {what} is damaged"))
}

impl Device {
    /// The rows this device is stored as (see the module doc of the account).
    pub(crate) fn rows(&self) -> Vec<DeviceRow> {
        let saved = SavedDevice {
            user: self.user,
            client: self.client,
            cursor: self.cursor,
            next_prekey: self.next_prekey,
            identity: b64(&self.identity.serialize()),
            generation: self.generation,
        };
        let mut rows = vec![(Table::Meta, DEVICE_ROW.to_vec(), json(&saved))];
        for p in self.prekeys.values() {
            rows.push((
                Table::Prekeys,
                p.id().0.to_be_bytes().to_vec(),
                Zeroizing::new(p.serialize().to_vec()),
            ));
        }
        for ((user, client), session) in &self.sessions {
            let saved = SavedSession {
                user: *user,
                client: *client,
                session: b64(&session.serialize()),
            };
            rows.push((Table::Sessions, pair_name(*user, *client), json(&saved)));
        }
        for ((user, client), key) in &self.pins {
            let saved = SavedPin {
                user: *user,
                client: *client,
                identity: b64(key),
            };
            rows.push((Table::Identities, pair_name(*user, *client), json(&saved)));
        }
        rows.extend(self.mls.rows());
        rows
    }

    /// The device stored in the database, if there is one.
    pub(crate) async fn load(tx: &mut Tx) -> Result<Option<Self>, ClientError> {
        let Some(bytes) = tx.get(Table::Meta, DEVICE_ROW).await? else {
            return Ok(None);
        };
        let mut saved: SavedDevice =
            serde_json::from_slice(&bytes).map_err(|_| damaged("record"))?;
        let identity_bytes = Zeroizing::new(unb64(&saved.identity)?);
        zeroize::Zeroize::zeroize(&mut saved.identity);
        let identity =
            IdentityKeyPair::deserialize(&identity_bytes).map_err(|_| damaged("identity"))?;
        let mut prekeys = HashMap::new();
        for (_, bytes) in tx.all(Table::Prekeys).await? {
            let prekey = PreKey::deserialize(&bytes).map_err(|_| damaged("prekey"))?;
            prekeys.insert(prekey.id(), prekey);
        }
        let mut sessions = HashMap::new();
        for (_, bytes) in tx.all(Table::Sessions).await? {
            let mut saved: SavedSession =
                serde_json::from_slice(&bytes).map_err(|_| damaged("session"))?;
            let raw = Zeroizing::new(unb64(&saved.session)?);
            zeroize::Zeroize::zeroize(&mut saved.session);
            let session = Session::deserialize(&raw).map_err(|_| damaged("session"))?;
            sessions.insert((saved.user, saved.client), session);
        }
        let mut pins = HashMap::new();
        for (_, bytes) in tx.all(Table::Identities).await? {
            let saved: SavedPin =
                serde_json::from_slice(&bytes).map_err(|_| damaged("pinned identity"))?;
            let key: [u8; 32] = unb64(&saved.identity)?
                .try_into()
                .map_err(|_| damaged("pinned identity"))?;
            pins.insert((saved.user, saved.client), key);
        }
        Ok(Some(Self {
            user: saved.user,
            client: saved.client,
            identity,
            prekeys,
            sessions,
            pins,
            cursor: saved.cursor,
            next_prekey: saved.next_prekey,
            generation: saved.generation,
            mls: super::mls::MlsSide::load(tx, saved.user, saved.client).await?,
            rng: UnwrapErr(SysRng),
        }))
    }
}
