//! The few CBOR habits every Proteus structure shares.
//!
//! Owns: writing maps with exactly the listed keys in ascending order and shortest
//! lengths (other implementations re-encode before checking a MAC, so this must be
//! exact), and reading generously but within bounds: unknown keys skipped, duplicate
//! keys refused, missing keys refused, definite lengths only, no trailing bytes.
//! Knows nothing about keys or sessions.

use std::convert::Infallible;

use minicbor::{Decoder, Encoder, data::Type, encode};

use crate::error::DecodeError;

/// Most entries a decoded map may claim.
pub(crate) const MAX_MAP_ENTRIES: u64 = 1000;
/// Largest byte string a decoder accepts (ciphertexts included).
pub(crate) const MAX_BYTES: usize = 8 << 20;

pub(crate) type Enc<'a> = Encoder<&'a mut Vec<u8>>;
pub(crate) type EncResult = Result<(), encode::Error<Infallible>>;

/// Encodes into a fresh buffer. Writing to a `Vec` cannot fail.
pub(crate) fn encode_to_vec(capacity: usize, f: impl FnOnce(&mut Enc<'_>) -> EncResult) -> Vec<u8> {
    let mut buf = Vec::with_capacity(capacity);
    encode_into(&mut buf, f);
    buf
}

/// Appends an encoding to `buf`.
pub(crate) fn encode_into(buf: &mut Vec<u8>, f: impl FnOnce(&mut Enc<'_>) -> EncResult) {
    let mut e = Encoder::new(buf);
    f(&mut e).expect("writing CBOR into a Vec cannot fail");
}

/// Decodes one whole value from `bytes`, refusing anything after it.
pub(crate) fn decode_all<'b, T>(
    bytes: &'b [u8], f: impl FnOnce(&mut Decoder<'b>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let mut d = Decoder::new(bytes);
    let value = f(&mut d)?;
    let rest = bytes.len() - d.position();
    if rest != 0 {
        return Err(DecodeError::TrailingBytes(rest));
    }
    Ok(value)
}

/// Reads a definite-length map, calling `field` for each key. `field` returns `false`
/// for keys it does not know, which are then skipped.
pub(crate) fn read_map<'b>(
    d: &mut Decoder<'b>, structure: &'static str,
    mut field: impl FnMut(u64, &mut Decoder<'b>) -> Result<bool, DecodeError>,
) -> Result<(), DecodeError> {
    let n = d.map()?.ok_or(DecodeError::IndefiniteLength(structure))?;
    if n > MAX_MAP_ENTRIES {
        return Err(DecodeError::TooLarge(structure));
    }
    // Known keys are small; remember every key so duplicates of unknown ones are
    // refused too. At most 1000 entries, so a linear scan is fine.
    let mut seen: Vec<u64> = Vec::with_capacity(n.min(8) as usize);
    for _ in 0..n {
        let key = d.u64()?;
        if seen.contains(&key) {
            return Err(DecodeError::DuplicateField { structure, key });
        }
        seen.push(key);
        if !field(key, d)? {
            d.skip()?;
        }
    }
    Ok(())
}

/// Reads a definite-length array of at most `max` items.
pub(crate) fn read_array<'b, T>(
    d: &mut Decoder<'b>, structure: &'static str, max: u64,
    mut item: impl FnMut(&mut Decoder<'b>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let n = d.array()?.ok_or(DecodeError::IndefiniteLength(structure))?;
    if n > max {
        return Err(DecodeError::TooLarge(structure));
    }
    let mut out = Vec::with_capacity(n.min(64) as usize);
    for _ in 0..n {
        out.push(item(d)?);
    }
    Ok(out)
}

/// A required field.
pub(crate) fn required<T>(
    value: Option<T>, structure: &'static str, key: u8,
) -> Result<T, DecodeError> {
    value.ok_or(DecodeError::MissingField { structure, key })
}

/// A byte string within [`MAX_BYTES`].
pub(crate) fn bytes<'b>(
    d: &mut Decoder<'b>, structure: &'static str,
) -> Result<&'b [u8], DecodeError> {
    if d.datatype()? == Type::BytesIndef {
        return Err(DecodeError::IndefiniteLength(structure));
    }
    let b = d.bytes()?;
    if b.len() > MAX_BYTES {
        return Err(DecodeError::TooLarge(structure));
    }
    Ok(b)
}

/// A byte string of exactly `N` bytes.
pub(crate) fn array<const N: usize>(
    d: &mut Decoder<'_>, structure: &'static str,
) -> Result<[u8; N], DecodeError> {
    let b = bytes(d, structure)?;
    b.try_into().map_err(|_| DecodeError::InvalidLength {
        structure,
        expected: N,
        found: b.len(),
    })
}

/// A version field that must equal `expected`.
pub(crate) fn version(
    d: &mut Decoder<'_>, structure: &'static str, expected: u64,
) -> Result<(), DecodeError> {
    let version = d.u64()?;
    if version != expected {
        return Err(DecodeError::UnsupportedVersion { structure, version });
    }
    Ok(())
}

/// `{0: bytes(N)}`: the shape of Proteus's `PublicKey`, `Mac`, `Signature`, `SecretKey`.
pub(crate) fn wrapped_array<const N: usize>(
    d: &mut Decoder<'_>, structure: &'static str,
) -> Result<[u8; N], DecodeError> {
    let mut value = None;
    read_map(d, structure, |key, d| {
        Ok(match key {
            0 => {
                value = Some(array::<N>(d, structure)?);
                true
            }
            _ => false,
        })
    })?;
    required(value, structure, 0)
}

/// Writes `{0: bytes}`.
pub(crate) fn write_wrapped(e: &mut Enc<'_>, bytes: &[u8]) -> EncResult {
    e.map(1)?.u8(0)?.bytes(bytes)?;
    Ok(())
}
