//! The `dsb` command: see `dsb --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    match dsb::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

// candle allocates a fresh buffer for every intermediate tensor; glibc's allocator maps and unmaps
// each multi-megabyte one, which cost a third of the training time in page faults. mimalloc
// reuses them.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
