//! The `taxinbox` binary: telemetry, the command line, the exit code. Everything else is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    tune_allocator();
    let cli = match taxinbox::cli::Cli::try_parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    taxinbox::telemetry::init(cli.verbosity());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("taxinbox: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(taxinbox::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => match taxinbox::cli::exit::of(&e) {
            // A closed standard output (`taxinbox calendar | head`): the reader has what it wanted.
            None => ExitCode::SUCCESS,
            Some(code) => {
                eprintln!("taxinbox: {e:#}");
                ExitCode::from(code)
            }
        },
    }
}

/// glibc's allocator, tuned for a daemon that allocates and frees mail-sized buffers (100 KB and more) on several
/// threads. By default each thread may get an arena of its own (up to 8 per core) and the mmap threshold rises to the
/// largest block freed, so a mail's buffer lands in an arena and its memory stays resident after it is freed: the
/// load benchmark's VmHWM was 292 MB that way (bench/README.md). Here: two arenas, blocks of 64 KiB and more mapped
/// on their own (returned to the system when freed), free memory over 1 MiB at the top of a heap given back.
/// mimalloc and jemalloc did worse on the same benchmark (344 and 195 MB).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: `mallopt` only sets the allocator's parameters, and this runs first in `main`, before any other thread
    // exists; a parameter it refuses (returns 0) leaves glibc's default, which is only slower to give memory back.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
    }
}

/// Other platforms keep their allocator's defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
