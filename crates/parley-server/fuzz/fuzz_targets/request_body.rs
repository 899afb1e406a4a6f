//! Request bodies as the API decodes them (JSON objects into the shared
//! types): any bytes are a value or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_api::{
    AddMembers, NewClient, NewConversation, NewProteusMessage, PrekeyRequest, Register,
    UploadPrekeys,
};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<NewProteusMessage>(data);
    let _ = serde_json::from_slice::<NewClient>(data);
    let _ = serde_json::from_slice::<NewConversation>(data);
    let _ = serde_json::from_slice::<AddMembers>(data);
    let _ = serde_json::from_slice::<Register>(data);
    let _ = serde_json::from_slice::<UploadPrekeys>(data);
    let _ = serde_json::from_slice::<PrekeyRequest>(data);
});
