//! The `key = value` config file: any text as `--config FILE`. Must never panic; an error
//! names a line of the file; an accepted file leaves every setting inside its documented range.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::config(data));
