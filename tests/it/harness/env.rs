//! A throw-away host for one test and a runner for the real `sandbox` binary.
//!
//! Every invocation gets `--root <tempdir>`, so the binary's host paths (machines dir,
//! sandboxes dir, importd keyrings) all land inside the test's temp dir and nothing on the
//! real host is read or written. `SANDBOXES_DIR` is removed from the environment for the same
//! reason. Output goes to files (not pipes) so a chatty binary can never block on a full pipe.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Long enough for a debug build pulling a few hundred KiB; short enough that a hang is noticed.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// Set (to anything) to keep every test's temp root for inspection.
pub const KEEP_VAR: &str = "SANDBOX_IT_KEEP";

pub struct TestEnv {
    temp: tempfile::TempDir,
    runs: AtomicUsize,
}

/// What one `sandbox` invocation did.
pub struct Outcome {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let mut temp = tempfile::Builder::new()
            .prefix("sandbox-it-")
            .tempdir()
            .expect("creating the test's temp dir");
        // For debugging a failure: keep the root (with runs/N.stderr of every invocation).
        if std::env::var_os(KEEP_VAR).is_some() {
            temp.disable_cleanup(true);
            eprintln!("{KEEP_VAR}: keeping {}", temp.path().display());
        }
        let env = TestEnv {
            temp,
            runs: AtomicUsize::new(0),
        };
        // A real host has /var/lib/machines; the sandboxes dir is left for the binary to create.
        std::fs::create_dir_all(env.machines_dir()).expect("creating var/lib/machines");
        env
    }

    /// The directory given as `--root`.
    pub fn root(&self) -> &Path {
        self.temp.path()
    }

    pub fn machines_dir(&self) -> PathBuf {
        self.root().join("var/lib/machines")
    }

    pub fn sandboxes_dir(&self) -> PathBuf {
        self.root().join("var/lib/sandboxes")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.sandboxes_dir().join("cache")
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.cache_dir().join("v1/blobs/sha256")
    }

    pub fn cache_tmp_dir(&self) -> PathBuf {
        self.cache_dir().join("v1/tmp")
    }

    pub fn machine(&self, name: &str) -> PathBuf {
        self.machines_dir().join(name)
    }

    /// Hex names of the blobs in the cache.
    pub fn blobs(&self) -> Vec<String> {
        super::dir_names(&self.blobs_dir())
    }

    /// A scratch directory inside the temp root but outside every path the binary owns.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.root().join("scratch").join(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        dir
    }

    fn command(&self, binary: &str, args: &[&str]) -> (Command, Vec<String>, PathBuf, PathBuf) {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        let logs = self.root().join("runs");
        std::fs::create_dir_all(&logs).expect("creating the runs log dir");
        let out_path = logs.join(format!("{n}.stdout"));
        let err_path = logs.join(format!("{n}.stderr"));
        let mut full: Vec<String> = vec!["--root".into(), self.root().display().to_string()];
        full.extend(args.iter().map(|a| a.to_string()));
        let mut cmd = Command::new(binary);
        cmd.args(&full)
            .env_remove("SANDBOXES_DIR")
            .env_remove("GNUPGHOME")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).expect("creating stdout file"))
            .stderr(std::fs::File::create(&err_path).expect("creating stderr file"));
        (cmd, full, out_path, err_path)
    }

    /// Runs `sandbox --root ROOT args...` to completion (or kills it after a timeout).
    pub fn sandbox(&self, args: &[&str]) -> Outcome {
        let running = self.spawn(args);
        running.wait()
    }

    /// Starts `sandbox --root ROOT args...` without waiting, for kill and concurrency tests.
    pub fn spawn(&self, args: &[&str]) -> Running {
        self.spawn_with(env!("CARGO_BIN_EXE_sandbox"), &[], args)
    }

    /// Starts `sandbox --root ROOT args...` with extra environment variables, not waiting.
    pub fn spawn_with_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Running {
        self.spawn_with(env!("CARGO_BIN_EXE_sandbox"), vars, args)
    }

    /// Starts `sandbox args…` and returns once it has stopped itself at the fault point
    /// `point` (`SANDBOX_FAULT_STOP`, `POINT[@N]`); panics if it ends without reaching it.
    pub fn spawn_stopped_at(&self, args: &[&str], vars: &[(&str, &str)], point: &str) -> Running {
        let mut all = vars.to_vec();
        all.push(("SANDBOX_FAULT_STOP", point));
        let mut running = self.spawn_with_env(args, &all);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !running.is_stopped() {
            if !running.is_running() {
                panic!(
                    "fault point {point} was never reached:\n{}",
                    running.wait().stderr
                );
            }
            assert!(Instant::now() < deadline, "{point}: not stopped in 120 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        running
    }

    /// Every blob hashes to its name, and `cache fsck` finds nothing corrupt or missing.
    #[track_caller]
    pub fn assert_cache_consistent(&self, when: &str) {
        for hex in self.blobs() {
            let bytes = std::fs::read(self.blobs_dir().join(&hex)).expect("reading a blob");
            assert_eq!(
                super::sha256_hex(&bytes),
                hex,
                "{when}: an unverified blob {hex}"
            );
        }
        let fsck = self.sandbox(&["--json", "cache", "fsck"]).success().json();
        assert_eq!(fsck["corrupt"], serde_json::json!([]), "{when}: {fsck}");
        assert_eq!(fsck["missing"], serde_json::json!([]), "{when}: {fsck}");
    }

    /// Runs `binary --root ROOT args...` with extra environment variables.
    pub fn run_with(&self, binary: &str, vars: &[(&str, &str)], args: &[&str]) -> Outcome {
        self.spawn_with(binary, vars, args).wait()
    }

    fn spawn_with(&self, binary: &str, vars: &[(&str, &str)], args: &[&str]) -> Running {
        let (mut cmd, full, out_path, err_path) = self.command(binary, args);
        cmd.envs(vars.iter().copied());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {binary}: {e}"));
        Running {
            child,
            args: full,
            out_path,
            err_path,
        }
    }

    /// Asserts the machines dir holds nothing but `expected` (no staging `.#…` leftovers).
    pub fn assert_machines(&self, expected: &[&str]) {
        let names = super::dir_names(&self.machines_dir());
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(
            names,
            want,
            "unexpected contents of the machines dir {}",
            self.machines_dir().display()
        );
    }
}

pub struct Running {
    child: Child,
    args: Vec<String>,
    out_path: PathBuf,
    err_path: PathBuf,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Whether the process is stopped (state `T` in `/proc/PID/stat`).
    pub fn is_stopped(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, r)| r.trim_start().chars().next())
            })
            == Some('T')
    }

    /// SIGCONT: a process stopped at a fault point goes on.
    pub fn resume(&self) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).expect("a pid");
        rustix::process::kill_process(pid, rustix::process::Signal::CONT).expect("SIGCONT");
    }

    /// SIGKILL, as a crash or an OOM kill would do: no destructor or cleanup runs.
    pub fn kill(mut self) -> Outcome {
        // An already exited process makes kill fail with InvalidInput; the wait below tells.
        let _ = self.child.kill();
        self.wait()
    }

    pub fn wait(mut self) -> Outcome {
        let started = Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() > RUN_TIMEOUT => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "sandbox {:?} did not finish within {RUN_TIMEOUT:?}; stderr so far:\n{}",
                        self.args,
                        std::fs::read_to_string(&self.err_path).unwrap_or_default()
                    );
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("waiting for sandbox {:?}: {e}", self.args),
            }
        };
        Outcome {
            args: self.args.clone(),
            status,
            stdout: std::fs::read_to_string(&self.out_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.err_path).unwrap_or_default(),
        }
    }
}

impl Outcome {
    fn describe(&self) -> String {
        format!(
            "sandbox {:?}\nexit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args, self.status, self.stdout, self.stderr
        )
    }

    /// Panics with the whole transcript unless the command exited 0.
    #[track_caller]
    pub fn success(self) -> Outcome {
        assert!(
            self.status.success(),
            "expected success:\n{}",
            self.describe()
        );
        self
    }

    /// Panics unless the command refused cleanly: a non-zero exit that is neither a signal
    /// death nor a Rust panic (exit 101), which are crashes and prove nothing about the input.
    #[track_caller]
    pub fn failure(self) -> Outcome {
        let crashed = self.stderr.contains("panicked at") || self.status.code() == Some(101);
        assert!(
            self.status.code().is_some_and(|c| c != 0) && !crashed,
            "expected a clean non-zero exit (an error, not a crash):\n{}",
            self.describe()
        );
        self
    }

    /// Panics unless stderr mentions every one of `needles` (case-insensitive).
    #[track_caller]
    pub fn stderr_mentions(self, needles: &[&str]) -> Outcome {
        let haystack = self.stderr.to_lowercase();
        for needle in needles {
            assert!(
                haystack.contains(&needle.to_lowercase()),
                "expected stderr to mention {needle:?}:\n{}",
                self.describe()
            );
        }
        self
    }

    /// stdout parsed as one JSON value.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}):\n{}", self.describe()))
    }
}

impl TestEnv {
    /// Like `sandbox`, with extra environment variables (e.g. `SANDBOX_IMAGES_SERVER`).
    pub fn sandbox_with_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Outcome {
        self.run_with(env!("CARGO_BIN_EXE_sandbox"), vars, args)
    }
}
