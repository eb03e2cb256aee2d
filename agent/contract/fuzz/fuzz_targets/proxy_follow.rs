//! A worker following its proxy stream (`checks::proxy_follow`): the fuzzer's bytes choose
//! the content, the changes and what is lost, repeated or late.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::proxy_follow(data));
