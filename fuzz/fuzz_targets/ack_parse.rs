#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| framewire_fuzz::targets::ack_parse(data));
