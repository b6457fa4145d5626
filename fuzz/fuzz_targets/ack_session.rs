#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| framewire_fuzz::session_targets::ack_session(data));
