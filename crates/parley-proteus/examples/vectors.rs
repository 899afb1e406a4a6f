//! Writes Parley's own Proteus known-answer vectors as JSON on standard output:
//!
//! ```sh
//! cargo run -p parley-proteus --example vectors > crates/parley-proteus/tests/vectors/sessions.json
//! ```
//!
//! Every seed comes from ChaCha20 keyed with the case's number, so the output is the
//! same on every run; `tests/vectors.rs` replays the file byte for byte.

#![allow(clippy::print_stdout)]

#[path = "../tests/support/vectors.rs"]
mod support;

use chacha20::ChaCha20Rng;
use parley_proteus::kat::{self, Case, Party};
use rand_core::{Rng, SeedableRng};

use support::{File, JsonCase, JsonMessage};

const A: Party = Party::Alice;
const B: Party = Party::Bob;

fn text(i: usize, from: Party) -> Vec<u8> {
    format!(
        "message {i} from {}",
        if from == A { "alice" } else { "bob" }
    )
    .into_bytes()
}

fn texts(senders: &[Party]) -> Vec<(Party, Vec<u8>)> {
    senders
        .iter()
        .enumerate()
        .map(|(i, &p)| (p, text(i, p)))
        .collect()
}

fn seed32(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut s = [0; 32];
    rng.fill_bytes(&mut s);
    s
}

fn make(
    number: u8, name: &str, prekey_id: u16, messages: Vec<(Party, Vec<u8>)>,
    deliver_order: Option<Vec<usize>>,
) -> JsonCase {
    let mut rng = ChaCha20Rng::from_seed([number; 32]);
    let mut tag = [0; 16];
    let mut case = Case {
        alice_identity_seed: seed32(&mut rng),
        bob_identity_seed: seed32(&mut rng),
        bob_prekey_id: prekey_id,
        bob_prekey_seed: seed32(&mut rng),
        alice_base_seed: seed32(&mut rng),
        alice_ratchet_seeds: (0..messages.len() + 1).map(|_| seed32(&mut rng)).collect(),
        bob_ratchet_seeds: (0..messages.len() + 1).map(|_| seed32(&mut rng)).collect(),
        session_tag: {
            rng.fill_bytes(&mut tag);
            tag
        },
        messages,
        deliver_order,
    };
    // Keep exactly the ratchet seeds the replay uses.
    let first = kat::replay(&case).expect("generated case replays");
    case.alice_ratchet_seeds
        .truncate(first.alice_ratchet_seeds_used);
    case.bob_ratchet_seeds
        .truncate(first.bob_ratchet_seeds_used);
    let transcript = kat::replay(&case).expect("trimmed case replays");

    JsonCase {
        name: name.to_owned(),
        alice_identity_seed: hex::encode(case.alice_identity_seed),
        bob_identity_seed: hex::encode(case.bob_identity_seed),
        bob_prekey_id: case.bob_prekey_id,
        bob_prekey_seed: hex::encode(case.bob_prekey_seed),
        alice_base_seed: hex::encode(case.alice_base_seed),
        alice_ratchet_seeds: case.alice_ratchet_seeds.iter().map(hex::encode).collect(),
        bob_ratchet_seeds: case.bob_ratchet_seeds.iter().map(hex::encode).collect(),
        session_tag: hex::encode(case.session_tag),
        master_secret: hex::encode(transcript.master_secret.as_ref()),
        messages: case
            .messages
            .iter()
            .zip(&transcript.envelopes)
            .map(|((from, plaintext), envelope)| JsonMessage {
                from: if *from == A { "alice" } else { "bob" }.to_owned(),
                plaintext: hex::encode(plaintext),
                envelope: hex::encode(envelope),
            })
            .collect(),
        deliver_order: case.deliver_order,
    }
}

fn main() {
    let ping_pong: Vec<Party> = (0..24).map(|i| if i % 2 == 0 { A } else { B }).collect();
    let mut thirty = vec![A; 30];
    thirty.extend([B, B, B, A, B, A]);
    let mut big = vec![0u8; 64 * 1024];
    ChaCha20Rng::from_seed([99; 32]).fill_bytes(&mut big);

    let cases = vec![
        make(1, "single-message", 1, texts(&[A]), None),
        make(2, "ping-pong-24", 17, texts(&ping_pong), None),
        make(3, "thirty-then-replies", 300, texts(&thirty), None),
        // Out of order within a chain (1 before 0, 7 before 6, 9 before 8) and across
        // chains (3, from Bob's first chain, after 7 from his second).
        make(
            4,
            "out-of-order-within-and-across-chains",
            2,
            texts(&[A, A, A, B, B, A, B, B, A, A]),
            Some(vec![1, 0, 4, 2, 5, 7, 3, 6, 9, 8]),
        ),
        make(5, "last-resort-prekey", 65535, texts(&[A, B, A]), None),
        make(
            6,
            "empty-plaintexts",
            42,
            vec![(A, vec![]), (B, vec![]), (A, vec![])],
            None,
        ),
        make(
            7,
            "64KiB-plaintext",
            43,
            vec![(A, big.clone()), (B, big), (A, b"ok".to_vec())],
            None,
        ),
        make(
            8,
            "gap-of-exactly-1000-is-allowed",
            44,
            {
                let mut m = texts(&[A; 1002]);
                m.push((B, b"done".to_vec()));
                m
            },
            Some((1..1002).chain([0, 1002]).collect()),
        ),
    ];
    let json = serde_json::to_string_pretty(&File { cases }).expect("vectors serialize");
    println!("{json}");
}
