//! Every decoder refuses truncations of valid input, survives every single-bit flip
//! without panicking, and refuses trailing bytes; where the bytes are authenticated
//! (envelopes, signed bundles, key pairs with their public half) a flip is refused.

#[path = "support/device.rs"]
mod device;

use device::Device;
use parley_proteus::{
    BundleSignature, Envelope, IdentityKeyPair, PreKey, PreKeyBundle, PreKeyId, Session,
};

/// A valid encoding's name, its bytes, and whether its decoder accepts some bytes.
type Sample = (&'static str, Vec<u8>, fn(&[u8]) -> bool);

/// Each valid encoding with the decoder that reads it.
fn samples() -> Vec<Sample> {
    let mut alice = Device::new(1);
    let mut bob = Device::new(2);
    let mut a = alice.init(&bob.bundle(1));
    let prekey_msg = a.encrypt(b"hello there");
    let (mut b, _) = bob.accept(&prekey_msg).expect("opens");
    let cipher_msg = b.encrypt(b"general kenobi");
    alice.decrypt(&mut a, &cipher_msg).expect("reply");
    vec![
        ("prekey envelope", prekey_msg, |b| {
            Envelope::decode(b).is_ok()
        }),
        ("cipher envelope", cipher_msg, |b| {
            Envelope::decode(b).is_ok()
        }),
        ("signed bundle", bob.signed_bundle(2).serialize(), |b| {
            PreKeyBundle::deserialize(b).is_ok()
        }),
        (
            "identity",
            IdentityKeyPair::from_seed(&[3; 32]).serialize().to_vec(),
            |b| IdentityKeyPair::deserialize(b).is_ok(),
        ),
        (
            "prekey",
            PreKey::from_seed(PreKeyId(9), &[4; 32])
                .serialize()
                .to_vec(),
            |b| PreKey::deserialize(b).is_ok(),
        ),
        ("session", a.serialize().to_vec(), |b| {
            Session::deserialize(b).is_ok()
        }),
    ]
}

#[test]
fn valid_samples_decode() {
    for (name, bytes, decodes) in samples() {
        assert!(decodes(&bytes), "{name}");
    }
}

#[test]
fn every_truncation_is_refused() {
    for (name, bytes, decodes) in samples() {
        for len in 0..bytes.len() {
            assert!(
                !decodes(&bytes[..len]),
                "{name} truncated to {len} bytes was accepted"
            );
        }
    }
}

#[test]
fn trailing_bytes_are_refused() {
    for (name, bytes, decodes) in samples() {
        for extra in [&[0u8][..], &[0xf6], &[0xa0], &[1, 2, 3]] {
            let mut long = bytes.clone();
            long.extend_from_slice(extra);
            assert!(
                !decodes(&long),
                "{name} with trailing {extra:?} was accepted"
            );
        }
    }
}

#[test]
fn every_bit_flip_decodes_or_fails_without_panicking() {
    for (_, bytes, decodes) in samples() {
        for i in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[i / 8] ^= 1 << (i % 8);
            let _ = decodes(&flipped);
        }
    }
}

#[test]
fn authenticated_encodings_refuse_every_bit_flip() {
    // Envelopes: a session refuses any flipped envelope and stays as it was.
    let mut alice = Device::new(1);
    let mut bob = Device::new(2);
    let mut a = alice.init(&bob.bundle(1));
    let (mut b, _) = bob.accept(&a.encrypt(b"open")).expect("opens");
    let m = a.encrypt(b"bits");
    let before = b.serialize();
    for i in 0..m.len() * 8 {
        let mut flipped = m.clone();
        flipped[i / 8] ^= 1 << (i % 8);
        assert!(
            bob.decrypt(&mut b, &flipped).is_err(),
            "bit {i} of an envelope"
        );
    }
    assert_eq!(b.serialize(), before);

    // Signed bundles: the signature binds the identity to the prekey's public key
    // (not its id), so a flip either fails, no longer verifies, or left both intact.
    let original = bob.signed_bundle(2);
    let bundle = original.serialize();
    for i in 0..bundle.len() * 8 {
        let mut flipped = bundle.clone();
        flipped[i / 8] ^= 1 << (i % 8);
        if let Ok(decoded) = PreKeyBundle::deserialize(&flipped)
            && decoded.verify() == BundleSignature::Valid
        {
            assert_eq!(decoded.public_key(), original.public_key(), "bit {i}");
            assert_eq!(decoded.identity_key(), original.identity_key(), "bit {i}");
        }
    }

    // Key pairs carry their public half: a flip anywhere is caught.
    let identity = IdentityKeyPair::from_seed(&[3; 32]).serialize();
    for i in 0..identity.len() * 8 {
        let mut flipped = identity.to_vec();
        flipped[i / 8] ^= 1 << (i % 8);
        assert!(
            IdentityKeyPair::deserialize(&flipped).is_err(),
            "bit {i} of an identity"
        );
    }
}

#[test]
fn hostile_shapes_are_refused() {
    // A map claiming more entries than any structure may have.
    assert!(Envelope::decode(&[0xb9, 0xff, 0xff]).is_err());
    // Indefinite-length map and byte string.
    assert!(Envelope::decode(&[0xbf, 0x00, 0x01, 0xff]).is_err());
    assert!(PreKeyBundle::deserialize(&[0x5f, 0x41, 0x00, 0xff]).is_err());
    // Duplicate key 0.
    assert!(Envelope::decode(&[0xa2, 0x00, 0x01, 0x00, 0x01]).is_err());
    // Deeply nested arrays under an unknown key are skipped without recursion.
    let mut deep = vec![0xa1, 0x18, 0x63];
    deep.extend(std::iter::repeat_n(0x81, 100_000));
    deep.push(0x00);
    assert!(
        Envelope::decode(&deep).is_err(),
        "missing fields after skipping"
    );
    // A byte string claiming 2^64-1 bytes.
    assert!(
        Envelope::decode(&[
            0xa1, 0x02, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
        ])
        .is_err()
    );
}

#[test]
fn wider_integer_forms_are_read() {
    // A prekey id written as a 4-byte integer instead of 1 byte still decodes, and is
    // written back in the shortest form.
    let bob = Device::new(2);
    let bundle = bob.bundle(1).serialize();
    // `1: 1` (01 01) → `1: 1` as u32 (01 1a 00 00 00 01)
    let at = bundle
        .windows(2)
        .position(|w| w == [0x01, 0x01])
        .expect("prekey id field");
    let mut wide = bundle[..at + 1].to_vec();
    wide.extend_from_slice(&[0x1a, 0, 0, 0, 1]);
    wide.extend_from_slice(&bundle[at + 2..]);
    let decoded = PreKeyBundle::deserialize(&wide).expect("wider integer accepted");
    assert_eq!(decoded.prekey_id(), PreKeyId(1));
    assert_eq!(
        decoded.serialize(),
        bundle,
        "written back in the shortest form"
    );
}
