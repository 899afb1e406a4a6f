//! Notification cursors (`since` on `/v1/notifications` and `/v1/await`)
//! against any queue state: the "lost" rule never overflows or panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_store::QueuePosition;

fuzz_target!(|input: (Option<u64>, i64, i64)| {
    let (since, purged_before, next) = input;
    let _ = QueuePosition::of(since, purged_before, next);
});
