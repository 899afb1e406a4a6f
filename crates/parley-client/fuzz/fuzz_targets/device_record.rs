//! `Device::import` (a record from the local store) on arbitrary bytes: never
//! panics, and what imports exports and imports again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use parley_client::device::Device;

fuzz_target!(|data: &[u8]| {
    if let Ok(device) = Device::import(data) {
        Device::import(&device.export()).expect("an exported device imports");
    }
});
