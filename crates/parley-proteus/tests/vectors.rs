//! Known-answer vectors: every case replays byte for byte — ours (made by
//! `cargo run -p parley-proteus --example vectors`) and, when the shared folder is
//! beside the checkout, the independent ones checked against Wire's implementations.

#![allow(clippy::print_stderr)]

#[path = "support/vectors.rs"]
mod support;

use std::path::{Path, PathBuf};

use parley_proteus::kat;

fn check_file(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).expect("vector file is readable");
    let file: support::File = serde_json::from_str(&text).expect("vector file is valid JSON");
    assert!(!file.cases.is_empty(), "{} has no cases", path.display());
    for json in &file.cases {
        let case = json.to_case();
        let transcript = kat::replay(&case)
            .unwrap_or_else(|e| panic!("{}: case {:?}: {e}", path.display(), json.name));
        assert_eq!(
            hex::encode(transcript.master_secret.as_ref()),
            json.master_secret,
            "case {:?}: master secret",
            json.name
        );
        for (i, (got, want)) in transcript.envelopes.iter().zip(&json.messages).enumerate() {
            assert_eq!(
                hex::encode(got),
                want.envelope,
                "case {:?}: envelope {i}",
                json.name
            );
        }
        assert_eq!(transcript.envelopes.len(), json.messages.len());
        assert_eq!(
            transcript.alice_ratchet_seeds_used,
            case.alice_ratchet_seeds.len(),
            "case {:?}: Alice's ratchet steps",
            json.name
        );
        assert_eq!(
            transcript.bob_ratchet_seeds_used,
            case.bob_ratchet_seeds.len(),
            "case {:?}: Bob's ratchet steps",
            json.name
        );
    }
    file.cases.len()
}

#[test]
fn own_vectors_replay_byte_for_byte() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/sessions.json");
    assert!(check_file(&path) >= 6);
}

#[test]
fn shared_independent_vectors_replay_byte_for_byte() {
    let path: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/proteus-sessions.json");
    if !path.exists() {
        eprintln!(
            "NOTICE: {} not found; the independent Proteus vectors were not checked",
            path.display()
        );
        return;
    }
    let cases = check_file(&path);
    eprintln!("checked {cases} independent Proteus vector cases");
}
