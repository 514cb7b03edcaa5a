//! Progress bars for long work.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar of `len` steps on stderr, hidden when `quiet` (or when stderr is not a terminal).
pub fn bar(len: u64, prefix: &str, quiet: bool) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if quiet {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>8} [{bar:30}] {pos}/{len} {msg} ({elapsed} < {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_prefix(prefix.to_string());
    pb
}

/// A spinner with `message` on stderr for work of unknown length, hidden when `quiet`.
pub fn spinner(message: &str, quiet: bool) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    if quiet {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_message(format!("{message} …"));
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}
