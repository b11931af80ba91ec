//! Progress bars for long jobs: drawn on stderr when it is a terminal, hidden otherwise (logs,
//! CI, `--quiet`).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A progress bar on stderr when it is a terminal and `quiet` is off; hidden otherwise, so logs
/// and CI output stay clean.
pub fn progress_bar(length: Option<u64>, quiet: bool, template: &str) -> ProgressBar {
    let bar = match length {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    if quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}
