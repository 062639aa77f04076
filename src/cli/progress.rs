//! Progress bars for long work, drawn on stderr only when it is a terminal (nothing at all when
//! stderr is piped or redirected, so scripts and logs stay clean).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// True when progress should be drawn: stderr is an interactive terminal.
fn enabled() -> bool {
    std::io::stderr().is_terminal()
}

/// A bar over `len` steps of `what` (hidden when stderr is not a terminal).
pub fn bar(len: u64, what: &str) -> ProgressBar {
    if !enabled() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
        .expect("valid progress template")
        .progress_chars("=> ");
    ProgressBar::new(len)
        .with_style(style)
        .with_prefix(what.to_string())
}

/// A spinner for one long step without intermediate progress (hidden when stderr is not a
/// terminal).
pub fn spinner(msg: String) -> ProgressBar {
    if !enabled() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
        .expect("valid progress template");
    let pb = ProgressBar::new_spinner()
        .with_style(style)
        .with_message(msg);
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}
