//! The REPL's command parser: any line is a command or a one-line error.
#![no_main]

use annals_example_domain::repl_cmd;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = std::str::from_utf8(data) {
        let _ = repl_cmd::parse(line);
    }
});
