//! Progress bars for long work (paging a long log, rendering a large diff), drawn on stderr
//! and only when stderr is a terminal, so pipes and scripts never see them.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps (a spinner when the length is unknown), or a hidden one when `show` is
/// false.
pub fn bar(show: bool, len: Option<u64>, message: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = if let Some(len) = len {
        let bar = ProgressBar::new(len);
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>12} [{bar:40}] {human_pos}/{human_len} ({eta})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    } else {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {human_pos}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    };
    bar.set_message(message);
    bar
}
