//! The real function binaries, started as Lambda starts them: with `AWS_LAMBDA_RUNTIME_API`
//! and the usual Lambda variables, kept warm between invocations, killed where a test needs it.

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use crate::runtime_api::{RuntimeApi, SandboxEndpoint};

static DEBUG_BINARIES: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
static RELEASE_BINARIES: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();

/// Path of a workspace binary, built (debug) by cargo if needed.
pub fn binary(name: &str) -> PathBuf {
    find(DEBUG_BINARIES.get_or_init(|| build(false)), name)
}

/// Path of a workspace binary built with the release profile (what Lambda runs), for benchmarks.
/// `BENCH_BINARIES=<dir>` takes `<dir>/<name>` instead: a build with symbols for `BENCH_PROFILE`
/// (`CARGO_PROFILE_RELEASE_STRIP=none cargo build --release --no-default-features --target-dir ..`).
pub fn release_binary(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("BENCH_BINARIES") {
        return PathBuf::from(dir).join(name);
    }
    find(RELEASE_BINARIES.get_or_init(|| build(true)), name)
}

fn find(binaries: &HashMap<String, PathBuf>, name: &str) -> PathBuf {
    binaries.get(name).cloned().unwrap_or_else(|| panic!("no binary named {name}"))
}

fn build(release: bool) -> HashMap<String, PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(["build", "--quiet", "--message-format=json", "-p", "xdr-sync", "-p", "xdr-backfill"]);
    if release {
        // As the Lambda build makes them: without the local-only features (the demo, Glue).
        command.args(["--release", "--no-default-features"]);
    }
    let output = command
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo build runs");
    assert!(output.status.success(), "building the function binaries failed");
    let mut found = HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if let (Some(name), Some(path)) = (message["target"]["name"].as_str(), message["executable"].as_str())
        {
            found.insert(name.to_owned(), PathBuf::from(path));
        }
    }
    found
}

/// One running function sandbox.
pub struct FunctionProcess {
    child: Child,
    output: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    endpoint: SandboxEndpoint,
    spawned: std::time::Instant,
}

impl FunctionProcess {
    pub fn start(name: &str, api: &RuntimeApi, env: &[(String, String)]) -> Self {
        Self::start_binary(&binary(name), name, api, env)
    }

    /// Starts `path` as the function `name` (e.g. a release build).
    pub fn start_binary(
        path: &std::path::Path,
        name: &str,
        api: &RuntimeApi,
        env: &[(String, String)],
    ) -> Self {
        let endpoint = api.endpoint();
        let runtime_api = endpoint.address.as_str();
        let mut command = Command::new(path);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            // Every level, so a secret printed only by a debug or trace line is caught too (see
            // `Deployment::assert_no_secrets`); a test or benchmark may set its own.
            .env("RUST_LOG", "trace")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned = std::time::Instant::now();
        let mut child = command.spawn().expect("function starts");
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = output.clone();
            // Whole lines only: stdout (metrics) and stderr (logs) share one transcript, and a
            // pipe read can end mid-line, which would splice one stream's line into the other's.
            readers.push(std::thread::spawn(move || {
                let mut stream = std::io::BufReader::new(stream);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match stream.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => sink.lock().unwrap().push_str(&String::from_utf8_lossy(&line)),
                    }
                }
            }));
        }
        Self { child, output, readers, endpoint, spawned }
    }

    /// From spawning the process to its first `GET /runtime/invocation/next` (its cold start).
    pub fn time_to_first_poll(&self) -> Option<std::time::Duration> {
        self.endpoint.first_poll().map(|at| at.duration_since(self.spawned))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU seconds the process used so far (Linux `/proc`).
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
            + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
        ticks / 100.0
    }

    /// The process's peak resident memory so far, in bytes (`VmHWM`).
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// Everything the process printed so far (logs).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Kills the sandbox and returns everything it printed, to the last byte.
    pub fn finish(mut self) -> String {
        self.kill();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.output()
    }

    /// Kills the sandbox (a crash, or Lambda ending a timed-out invocation).
    pub fn kill(&mut self) {
        self.endpoint.close();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself (start-up failures).
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let started = std::time::Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if started.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
