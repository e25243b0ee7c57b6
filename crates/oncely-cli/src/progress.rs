//! Progress of long admin work (replaying or purging thousands of dead letters, collecting
//! expired inbox records): a bar on a terminal, plain lines when stderr is not one (a log, a
//! pipe, CI), so a script's output stays readable. Progress goes to stderr; results to stdout.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain progress line is written, in items.
const LINE_EVERY: u64 = 1000;

/// The progress of one piece of work: `what` items done out of `total` (when known).
pub struct Progress {
    what: &'static str,
    total: Option<u64>,
    done: u64,
    next_line: u64,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts showing progress of `what` ("replaying dead letters") over `total` items, if known.
    pub fn new(what: &'static str, total: Option<u64>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()).with_style(
                    ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left)")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                ),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                    ProgressStyle::with_template("{msg} {spinner} {pos} ({per_sec})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            };
            bar.set_message(what);
            bar
        });
        Progress { what, total, done: 0, next_line: LINE_EVERY, bar }
    }

    /// `n` more items done.
    pub fn inc(&mut self, n: u64) {
        self.done += n;
        match &self.bar {
            Some(bar) => bar.inc(n),
            None => {
                while self.done >= self.next_line {
                    self.line();
                    self.next_line += LINE_EVERY;
                }
            }
        }
    }

    fn line(&self) {
        match self.total {
            Some(total) => eprintln!("{}: {}/{total}", self.what, self.done),
            None => eprintln!("{}: {}", self.what, self.done),
        }
    }

    /// Runs `f` (which prints a result line) without the bar drawn over it.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// The work is over: the bar is cleared, or a last plain line says where it ended.
    pub fn finish(self) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None if self.done % LINE_EVERY != 0 || self.done == 0 => match self.total {
                Some(total) => eprintln!("{}: {}/{total}", self.what, self.done),
                None => eprintln!("{}: {}", self.what, self.done),
            },
            None => {}
        }
    }
}
