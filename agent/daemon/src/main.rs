//! `sdwan-agent` binary: parse the command line, set up logging, run [`sdwan_agent::run`].
//! Exit status: 0 for --help/--version (also into a closed pipe), 2 for a bad command line or
//! config file, 1 for any other error (settings that do not fit together, such as
//! `--gateway-id` without `--broker`; zone file rejected; state directory not writable; address
//! in use, ...).
//!
//! The binary also chooses the global allocator ([`alloc::Alloc`]): the C library's, except
//! that large blocks are anonymous mappings of their own, so a zeroed one stays untouched.
#![deny(unsafe_code)]

use std::io::Write as _;
use std::process::ExitCode;

use sdwan_agent::cli::{self, Command};

#[cfg(unix)]
#[global_allocator]
static GLOBAL: alloc::Alloc = alloc::Alloc;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sdwan-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match command {
        Command::Help => return print_out(&cli::help()),
        Command::Version => {
            return print_out(&format!("sdwan-agent {}\n", sdwan_agent::VERSION));
        }
        Command::Run(config) => config,
    };
    if let Some(why) = cli::mqtt_settings_without_broker(&config) {
        eprintln!("sdwan-agent: {why}");
        return ExitCode::from(1);
    }
    logger::init();
    match sdwan_agent::run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
    }
}

/// Writes `text` to stdout. A reader that went away (`sdwan-agent --help | head`) is no error:
/// exit 0 with nothing on stderr; any other write error is reported, exit 1.
fn print_out(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sdwan-agent: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

/// The logger: one line per record on stderr, `[LEVEL] message` (the level padded to five
/// characters, as env_logger printed it with the target left out), at the level `RUST_LOG`
/// names (default info). A few lines instead of env_logger and env_filter (issue 15):
/// per-module directives (`warn,sdwan_agent::mqtt=debug`) set the most verbose level they
/// name for every module.
mod logger {
    use std::io::Write as _;

    use log::{LevelFilter, Log, Metadata, Record};

    struct Stderr;

    static LOGGER: Stderr = Stderr;

    impl Log for Stderr {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            metadata.level() <= log::max_level()
        }

        fn log(&self, record: &Record<'_>) {
            if self.enabled(record.metadata()) {
                // One write per line: stderr is unbuffered, and a reader (procd) must not see
                // a line in pieces.
                let line = format!("[{:<5}] {}\n", record.level(), record.args());
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }

        fn flush(&self) {}
    }

    /// The level of a `RUST_LOG` value: the most verbose level any directive names
    /// (`debug`, `sdwan_agent=debug`, `warn,sdwan_agent::mqtt=debug` -> debug); info when it
    /// is unset or names none.
    pub fn level_of(spec: Option<&str>) -> LevelFilter {
        spec.into_iter()
            .flat_map(|s| s.split(','))
            .filter_map(|d| d.rsplit('=').next()?.trim().parse::<LevelFilter>().ok())
            .max()
            .unwrap_or(LevelFilter::Info)
    }

    /// Installs the logger at `RUST_LOG`'s level.
    pub fn init() {
        log::set_max_level(level_of(std::env::var("RUST_LOG").ok().as_deref()));
        let _ = log::set_logger(&LOGGER);
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn rust_log_sets_the_most_verbose_level_it_names() {
            let cases = [
                (None, LevelFilter::Info),
                (Some(""), LevelFilter::Info),
                (Some("debug"), LevelFilter::Debug),
                (Some("WARN"), LevelFilter::Warn),
                (Some("off"), LevelFilter::Off),
                (Some("sdwan_agent=trace"), LevelFilter::Trace),
                (Some("warn,sdwan_agent::mqtt=debug"), LevelFilter::Debug),
                (Some("nonsense"), LevelFilter::Info),
            ];
            for (spec, want) in cases {
                assert_eq!(level_of(spec), want, "{spec:?}");
            }
        }
    }
}

#[cfg(unix)]
#[allow(unsafe_code)]
mod alloc {
    //! The global allocator. Blocks of [`LARGE`] bytes or more (page-aligned at most) are
    //! private anonymous mappings, one each, unmapped when freed; smaller ones come from the C
    //! library's `malloc`.
    //!
    //! Why: a v2 zone's record heap is an 8 MiB zeroed block of which a 5,000-service zone
    //! uses ~0.4 MB (`gateway::ZONE_HEAP_BYTES`), and only the pages written may become
    //! resident. The kernel gives a fresh mapping as zero pages that cost nothing until
    //! written, but whether `calloc` leaves them so is the C library's choice: musl's and
    //! glibc's do for a fresh mapping, zig's libc (the cross builds of `cross/build.sh`)
    //! writes zeros over the whole block, which made every zone 8 MiB resident (10.4 MiB
    //! RSS, 18.8 MiB peak while a delta was applied into a spare zone). With this allocator
    //! the block is untouched whatever the C library. The same holds for each TCP
    //! connection's 64 KiB answer buffer (`server::tcp`, sized for the largest answer, most
    //! of which only a 500-target SRV set ever writes).
    //!
    //! Which path a block took is known from its layout alone (size and alignment), in
    //! `alloc` and `dealloc` alike, so nothing is recorded per block.

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::ptr::null_mut;

    /// Blocks from this size up are mappings of their own: the TCP answer buffer (64 KiB and
    /// the length prefix) is one. Half the C libraries' usual mmap threshold; nothing is
    /// allocated per query, so the extra `mmap`/`munmap` is per connection at most.
    pub const LARGE: usize = 64 * 1024;

    /// Alignment a mapping always has (pages are at least 4 KiB on every target).
    const MAP_ALIGN: usize = 4096;

    /// True when a block of `layout` is a mapping of its own.
    fn mapped(layout: &Layout) -> bool {
        layout.size() >= LARGE && layout.align() <= MAP_ALIGN
    }

    /// The C library's allocator, with blocks of [`LARGE`] bytes and more mapped.
    #[derive(Debug)]
    pub struct Alloc;

    // SAFETY: mapped blocks are `size` bytes (rounded up to pages), page-aligned (so every
    // alignment `mapped` admits), unmapped only by `dealloc` with the same layout; all others
    // are forwarded to `System` with the layout they were allocated with.
    unsafe impl GlobalAlloc for Alloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if mapped(&layout) {
                map(layout.size())
            } else {
                // SAFETY: forwarded with the caller's guarantees.
                unsafe { System.alloc(layout) }
            }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if mapped(&layout) {
                // A new anonymous mapping reads as zeros; left untouched, it is not resident.
                map(layout.size())
            } else {
                // SAFETY: forwarded with the caller's guarantees.
                unsafe { System.alloc_zeroed(layout) }
            }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if mapped(&layout) {
                // SAFETY: `ptr` is a mapping of `layout.size()` bytes made by `map` (the same
                // layout chose the same path), no longer used by the caller.
                unsafe { libc::munmap(ptr.cast(), layout.size()) };
            } else {
                // SAFETY: forwarded with the caller's guarantees.
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: the caller guarantees `new_size`, rounded up to the alignment, does not
            // overflow, and the alignment is that of a valid layout.
            let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            if !mapped(&layout) && !mapped(&new) {
                // SAFETY: forwarded with the caller's guarantees.
                return unsafe { System.realloc(ptr, layout, new_size) };
            }
            // SAFETY: `new` is a valid non-zero layout (the caller's guarantees).
            let out = unsafe { self.alloc(new) };
            if !out.is_null() {
                // SAFETY: both blocks are valid for the smaller size, distinct, and the old
                // one is freed with the layout it was allocated with.
                unsafe {
                    std::ptr::copy_nonoverlapping(ptr, out, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
            }
            out
        }
    }

    /// A new private anonymous read-write mapping of `size` bytes, or null.
    fn map(size: usize) -> *mut u8 {
        // SAFETY: a new mapping at an address the kernel chooses; no memory in use changes.
        let p = unsafe {
            libc::mmap(
                null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            null_mut()
        } else {
            p.cast()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Pages of `block` that are resident (`mincore`).
        fn resident_pages(block: &[u8]) -> usize {
            let page = 4096;
            let mut vec = vec![0u8; block.len().div_ceil(page)];
            // SAFETY: `block` starts a mapping (page-aligned, asserted by the caller) of
            // `block.len()` bytes; `vec` has one byte per page.
            let r =
                unsafe { libc::mincore(block.as_ptr() as *mut _, block.len(), vec.as_mut_ptr()) };
            assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
            vec.iter().filter(|&&b| b & 1 != 0).count()
        }

        fn vm_rss_kib() -> u64 {
            let s = std::fs::read_to_string("/proc/self/status").unwrap();
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap()
        }

        /// Zeroed blocks the agent allocates once and writes only in part: only the written
        /// pages become resident, whatever the C library's `calloc` does.
        #[test]
        fn a_zeroed_zone_heap_or_tcp_buffer_is_resident_only_where_written() {
            for (what, size) in [
                ("zone heap (gateway::heap)", 8 << 20),
                (
                    "TCP answer buffer",
                    2 + sdwan_agent::server::tcp::ANSWER_MAX,
                ),
            ] {
                let before = vm_rss_kib();
                let mut block = vec![0u8; size].into_boxed_slice();
                assert_eq!(
                    block.as_ptr() as usize % MAP_ALIGN,
                    0,
                    "{what}: not a mapping"
                );
                assert_eq!(resident_pages(&block), 0, "{what}");
                block[0] = 1;
                block[size - 1] = 2;
                assert_eq!(resident_pages(&block), 2, "{what}");
                let grown = vm_rss_kib().saturating_sub(before);
                assert!(
                    grown < 32,
                    "{what}: VmRSS grew {grown} KiB for 2 written pages"
                );
                assert_eq!(
                    (block[0], block[1], block[size - 2], block[size - 1]),
                    (1, 0, 0, 2)
                );
            }
        }

        /// Blocks keep their bytes when they grow or shrink across [`LARGE`], in both
        /// directions and within each kind (old size, new size).
        #[test]
        fn realloc_keeps_the_bytes_across_the_large_threshold() {
            for (from, to) in [
                (1_000, 200_000),
                (200_000, 400_000),
                (400_000, 1_000),
                (400_000, 150_000),
                (LARGE - 1, LARGE),
                (LARGE, LARGE - 1),
                (100, 1_000),
            ] {
                let mut v: Vec<u8> = (0..from).map(|i| (i % 251) as u8).collect();
                if to > from {
                    v.reserve_exact(to - from);
                    v.extend((from..to).map(|i| (i % 251) as u8));
                } else {
                    v.truncate(to);
                    v.shrink_to_fit();
                }
                assert_eq!(v.len(), to, "{from} -> {to}");
                assert!(
                    v.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8),
                    "{from} -> {to}: bytes changed"
                );
            }
        }
    }
}
