//! Benchmarks only: Parley's Proteus next to vodozemac's Olm, Matrix's double
//! ratchet, doing the same work (`benches/olm.rs`). Apart from `parley-proteus` so
//! that none of its builds or tests compile vodozemac.
//!
//! `cargo bench -p parley-bench-compare`
