//! The command line: the input split at NUL bytes into arguments. Must never panic (bad
//! arguments are an error naming the flag). `--config` is left out: it reads a file, and the
//! file's text is the `config` target's.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::cli(data));
