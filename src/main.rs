//! The `dsb` command: see `dsb --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    pin_thread_count();
    match dsb::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Sets `RAYON_NUM_THREADS`, when the user has not, to the thread count candle works out for
/// itself. Without it, candle 0.11 works that count out again on every matrix product (it reads
/// `/proc/cpuinfo` and the CPU masks): 5–8% of a CPU UNet training step (issue 13). rayon's
/// pool, which dsb's fast paths use, then has the same count as candle's.
fn pin_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = candle_core::utils::get_num_threads();
        // SAFETY: the first thing main does, before any other thread exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
}

// candle allocates a fresh buffer for every intermediate tensor; glibc's allocator maps and unmaps
// each multi-megabyte one, which cost a third of the training time in page faults. mimalloc
// reuses them.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
