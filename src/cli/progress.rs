//! Progress bars for long work; where stderr is not a terminal (a log file, CI), a plain line
//! with the elapsed time when a stage starts and then every [`LINE_EVERY`].

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a stage that is not on a terminal prints its progress line.
pub const LINE_EVERY: Duration = Duration::from_secs(30);

/// A [`TermLike`] that turns indicatif's redraws into one stderr line per [`LINE_EVERY`] (and
/// the first draw), with no cursor movement: readable in a log.
#[derive(Debug)]
struct Lines {
    state: Mutex<(String, Option<Instant>)>,
}

impl TermLike for Lines {
    fn width(&self) -> u16 {
        120
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write_str(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        let mut st = self.state.lock().expect("progress lock");
        st.0.push_str(s.trim_start_matches('\r'));
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.state.lock().expect("progress lock").0.clear();
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        let mut st = self.state.lock().expect("progress lock");
        let line = st.0.trim().to_string();
        st.0.clear();
        let due = st.1.is_none_or(|t| t.elapsed() >= LINE_EVERY);
        if !line.is_empty() && due {
            eprintln!("{line}");
            st.1 = Some(Instant::now());
        }
        Ok(())
    }
}

/// Where a bar draws: nowhere when `quiet`, the terminal when stderr is one, lines otherwise.
fn target(quiet: bool) -> ProgressDrawTarget {
    if quiet {
        ProgressDrawTarget::hidden()
    } else if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::term_like_with_hz(
            Box::new(Lines {
                state: Mutex::new((String::new(), None)),
            }),
            1,
        )
    }
}

/// A bar of `len` steps on stderr, hidden when `quiet` (plain lines when stderr is not a
/// terminal).
pub fn bar(len: u64, prefix: &str, quiet: bool) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), target(quiet));
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

/// A spinner with `message` and the elapsed time on stderr for work of unknown length, hidden
/// when `quiet` (plain lines when stderr is not a terminal).
pub fn spinner(message: &str, quiet: bool) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, target(quiet));
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"),
    );
    pb.set_message(format!("{message} …"));
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}
