//! The one place that draws progress: indicatif bars on stderr when stderr is a terminal and
//! neither `-q` nor `--json` was given; otherwise nothing at all. Lines a person should see
//! as they happen (what a bake step prints) go to stderr through [`ProgressMode::line`],
//! unless `-q`.

use std::io::IsTerminal;
use std::time::Duration;

use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Every bar of the process, drawn together: several at once (an OCI image's layers download
/// in parallel) stay on lines of their own.
fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Whether bars may be drawn, decided once from the global options.
#[derive(Debug, Clone, Copy)]
pub struct ProgressMode {
    enabled: bool,
    quiet: bool,
}

impl ProgressMode {
    pub fn new(quiet: bool, json: bool) -> Self {
        ProgressMode {
            enabled: !quiet && !json && std::io::stderr().is_terminal(),
            quiet,
        }
    }

    pub fn hidden() -> Self {
        ProgressMode {
            enabled: false,
            quiet: true,
        }
    }

    /// One line on stderr, as it happens, unless `-q`.
    pub fn line(&self, text: &str) {
        if !self.quiet {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }

    /// A phase of a longer command (`build`: pull, unpack, layering, bake, publish, export),
    /// as one line on stderr when bars are drawn (a terminal, no `-q`, no `--json`).
    pub fn phase(&self, text: &str) {
        if self.enabled {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr().lock(), "==> {text}");
        }
    }

    /// A bar for one task, labelled `label` (e.g. "Downloading image.tar.xz").
    pub fn task(&self, label: &str) -> Progress {
        let bar = if self.enabled {
            let bar = bars().add(ProgressBar::no_length());
            bar.set_message(label.to_string());
            Some(bar)
        } else {
            None
        };
        Progress { bar }
    }
}

/// One task's bar; every method does nothing when bars are off. Clones share the bar.
#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn hidden() -> Self {
        Progress { bar: None }
    }

    /// Switches to a byte counter with a known or unknown total, starting at `position`.
    pub fn start_bytes(&self, total: Option<u64>, position: u64) {
        if let Some(bar) = &self.bar {
            let style = match total {
                Some(t) => {
                    bar.set_length(t);
                    ProgressStyle::with_template(
                        "{msg:30!} {wide_bar} {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12} {eta:>4}",
                    )
                }
                None => ProgressStyle::with_template(
                    "{msg:30!} {spinner} {binary_bytes:>10} {binary_bytes_per_sec:>12}",
                ),
            };
            if let Ok(style) = style {
                bar.set_style(style);
            }
            bar.set_position(position);
            bar.enable_steady_tick(Duration::from_millis(200));
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A reader that advances a progress bar by the bytes read through it.
pub struct ProgressReader<R> {
    pub inner: R,
    pub progress: Progress,
}

impl<R: std::io::Read> std::io::Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}
