//! Any bytes as a request line: parsing never panics, and whatever parses survives a round
//! trip unchanged (so every value in it passed its check).
//!   cargo fuzz run parse_request      (see docs/protocol.md)
#![no_main]

use libfuzzer_sys::fuzz_target;
use slices::slave_link::Command;

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = Command::parse_line(data) {
        let line = serde_json::to_vec(&cmd.to_request()).expect("serializable");
        assert_eq!(Command::parse_line(&line).expect("re-parses"), cmd);
    }
});
