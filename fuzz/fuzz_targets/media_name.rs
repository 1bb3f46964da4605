//! Any request path segment: an accepted media name never leaves its folder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nonstop::hls::classify_media_file;

fuzz_target!(|data: &[u8]| {
    if let Ok(name) = std::str::from_utf8(data) {
        if classify_media_file(name).is_some() {
            assert!(!name.contains('/') && !name.contains('\\') && !name.contains(".."));
        }
    }
});
