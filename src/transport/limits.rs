//! How long and how much a download may take, configurable from the environment: a server that
//! stalls (sends a byte now and then), sends forever, or announces a body beyond any image ends
//! the pull within these bounds, with a message that names the bound and how to raise it.
//!
//! - `SANDBOX_MIN_RATE` bytes/s averaged over each `SANDBOX_RATE_WINDOW` seconds (defaults
//!   1024 and 60): slower is a stalled server. Total silence ends sooner, by the client's read
//!   timeout.
//! - `SANDBOX_DOWNLOAD_DEADLINE` seconds for one body (default 21600: six hours).
//! - `SANDBOX_MAX_DOWNLOAD` bytes for a body whose size nothing verified gave (default
//!   68719476736: 64 GiB); a known size is always the cap.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The bounds of one download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub min_rate: u64,
    pub window: Duration,
    pub deadline: Duration,
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            min_rate: 1024,
            window: Duration::from_secs(60),
            deadline: Duration::from_secs(6 * 3600),
            max_bytes: 64 << 30,
        }
    }
}

impl Limits {
    /// From the process environment.
    pub fn from_env() -> Result<Limits> {
        Limits::parse(|k| std::env::var(k).ok())
    }

    /// From `get` (a variable's value by name); unset or empty means the default. Pure.
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Limits> {
        let d = Limits::default();
        let num = |name: &str, default: u64| -> Result<u64> {
            match get(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .with_context(|| format!("${name}=`{v}` is not a whole number")),
            }
        };
        let window = num("SANDBOX_RATE_WINDOW", d.window.as_secs())?;
        if window == 0 {
            bail!("$SANDBOX_RATE_WINDOW must be at least 1 second");
        }
        Ok(Limits {
            min_rate: num("SANDBOX_MIN_RATE", d.min_rate)?,
            window: Duration::from_secs(window),
            deadline: Duration::from_secs(num("SANDBOX_DOWNLOAD_DEADLINE", d.deadline.as_secs())?),
            max_bytes: num("SANDBOX_MAX_DOWNLOAD", d.max_bytes)?,
        })
    }
}

/// Watches one body as it arrives: the minimum rate per window and the deadline.
#[derive(Debug)]
pub struct Watch {
    limits: Limits,
    started: Instant,
    window_start: Instant,
    window_bytes: u64,
}

impl Watch {
    pub fn new(limits: Limits, now: Instant) -> Watch {
        Watch {
            limits,
            started: now,
            window_start: now,
            window_bytes: 0,
        }
    }

    /// Counts `n` bytes that arrived at `now`; the error says which bound was broken. Pure
    /// (the clock is passed in).
    pub fn arrived(&mut self, n: u64, now: Instant) -> Result<(), String> {
        let l = &self.limits;
        if now.duration_since(self.started) > l.deadline {
            return Err(format!(
                "the download took longer than {} s (raise $SANDBOX_DOWNLOAD_DEADLINE)",
                l.deadline.as_secs()
            ));
        }
        let in_window = now.duration_since(self.window_start);
        if in_window >= l.window {
            let floor = l.min_rate.saturating_mul(in_window.as_secs());
            if self.window_bytes < floor {
                return Err(format!(
                    "the server sent only {} bytes in {} s, less than {} bytes/s: it stalls \
                     (lower $SANDBOX_MIN_RATE or raise $SANDBOX_RATE_WINDOW)",
                    self.window_bytes,
                    in_window.as_secs(),
                    l.min_rate
                ));
            }
            self.window_start = now;
            self.window_bytes = 0;
        }
        self.window_bytes += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_set_the_bounds_and_bad_values_are_named() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Limits::parse(vars(&[])).unwrap(), Limits::default());
        let l = Limits::parse(vars(&[
            ("SANDBOX_MIN_RATE", "10"),
            ("SANDBOX_RATE_WINDOW", "2"),
            ("SANDBOX_DOWNLOAD_DEADLINE", "5"),
            ("SANDBOX_MAX_DOWNLOAD", "1000"),
            ("UNRELATED", "x"),
        ]))
        .unwrap();
        assert_eq!(
            (
                l.min_rate,
                l.window.as_secs(),
                l.deadline.as_secs(),
                l.max_bytes
            ),
            (10, 2, 5, 1000)
        );
        let e = Limits::parse(vars(&[("SANDBOX_MAX_DOWNLOAD", "1G")])).unwrap_err();
        assert!(
            format!("{e:#}").contains("$SANDBOX_MAX_DOWNLOAD=`1G`"),
            "{e:#}"
        );
        assert!(Limits::parse(vars(&[("SANDBOX_RATE_WINDOW", "0")])).is_err());
    }

    #[test]
    fn a_dripping_server_is_stopped_and_a_steady_one_is_not() {
        let limits = Limits {
            min_rate: 100,
            window: Duration::from_secs(10),
            deadline: Duration::from_secs(100),
            max_bytes: u64::MAX,
        };
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut steady = Watch::new(limits, t0);
        for s in 0..=50 {
            steady.arrived(200, at(s)).unwrap();
        }
        let mut drip = Watch::new(limits, t0);
        let mut stopped = None;
        for s in (0..=40).step_by(5) {
            if let Err(e) = drip.arrived(1, at(s)) {
                stopped = Some((s, e));
                break;
            }
        }
        let (s, e) = stopped.expect("a drip of 1 byte every 5 s was not stopped");
        assert_eq!(s, 10, "{e}");
        assert!(
            e.contains("stalls") && e.contains("SANDBOX_MIN_RATE"),
            "{e}"
        );
        let mut slow_forever = Watch::new(limits, t0);
        let e = (0..)
            .find_map(|s| slow_forever.arrived(5000, at(s)).err())
            .unwrap();
        assert!(e.contains("SANDBOX_DOWNLOAD_DEADLINE"), "{e}");
    }
}
