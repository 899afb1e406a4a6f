//! The JSON form of the known-answer vectors, shared by the vectors test and the
//! `vectors` example (included with `#[path]`).

// Each includer uses a different half of this file.
#![allow(dead_code, unreachable_pub)]

use parley_proteus::kat::{Case, Party};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct File {
    pub cases: Vec<JsonCase>,
}

#[derive(Serialize, Deserialize)]
pub struct JsonMessage {
    pub from: String,
    pub plaintext: String,
    pub envelope: String,
}

#[derive(Serialize, Deserialize)]
pub struct JsonCase {
    pub name: String,
    pub alice_identity_seed: String,
    pub bob_identity_seed: String,
    pub bob_prekey_id: u16,
    pub bob_prekey_seed: String,
    pub alice_base_seed: String,
    pub alice_ratchet_seeds: Vec<String>,
    pub bob_ratchet_seeds: Vec<String>,
    pub session_tag: String,
    pub master_secret: String,
    pub messages: Vec<JsonMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_order: Option<Vec<usize>>,
}

fn fixed<const N: usize>(s: &str) -> [u8; N] {
    hex::decode(s)
        .expect("vector fields are hex")
        .try_into()
        .expect("vector field has the documented length")
}

impl JsonCase {
    pub fn to_case(&self) -> Case {
        Case {
            alice_identity_seed: fixed(&self.alice_identity_seed),
            bob_identity_seed: fixed(&self.bob_identity_seed),
            bob_prekey_id: self.bob_prekey_id,
            bob_prekey_seed: fixed(&self.bob_prekey_seed),
            alice_base_seed: fixed(&self.alice_base_seed),
            alice_ratchet_seeds: self.alice_ratchet_seeds.iter().map(|s| fixed(s)).collect(),
            bob_ratchet_seeds: self.bob_ratchet_seeds.iter().map(|s| fixed(s)).collect(),
            session_tag: fixed(&self.session_tag),
            messages: self
                .messages
                .iter()
                .map(|m| {
                    let party = match m.from.as_str() {
                        "alice" => Party::Alice,
                        "bob" => Party::Bob,
                        other => panic!("unknown sender {other:?}"),
                    };
                    (party, hex::decode(&m.plaintext).expect("plaintext is hex"))
                })
                .collect(),
            deliver_order: self.deliver_order.clone(),
        }
    }
}
