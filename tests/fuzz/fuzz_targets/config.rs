//! devloop.toml parsing and validation never panics: any text is a config or an error naming a place.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = devloop::config::parse(std::path::Path::new("/fuzz/devloop.toml"), text) {
            let _ = e.to_string();
        }
    }
});
