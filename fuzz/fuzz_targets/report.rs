//! Any body POSTed to the reporter: decoding and validation never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nonstop::api::Report;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = serde_json::from_slice::<Report>(data) {
        let _ = report.validate(&["http://localhost:8080".to_string()]);
    }
});
