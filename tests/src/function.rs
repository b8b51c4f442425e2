//! The real function binaries, started as Lambda starts them: with `AWS_LAMBDA_RUNTIME_API`
//! and the usual Lambda variables, kept warm between invocations, killed where a test needs it.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use crate::runtime_api::{RuntimeApi, SandboxEndpoint};

static BINARIES: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();

/// Path of a workspace binary, built (debug) by cargo if needed.
pub fn binary(name: &str) -> PathBuf {
    let binaries = BINARIES.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let output = Command::new(cargo)
            .args(["build", "--quiet", "--message-format=json", "-p", "xdr-sync", "-p", "xdr-backfill"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .stderr(Stdio::inherit())
            .output()
            .expect("cargo build runs");
        assert!(output.status.success(), "building the function binaries failed");
        let mut found = HashMap::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            if let (Some(name), Some(path)) =
                (message["target"]["name"].as_str(), message["executable"].as_str())
            {
                found.insert(name.to_owned(), PathBuf::from(path));
            }
        }
        found
    });
    binaries.get(name).cloned().unwrap_or_else(|| panic!("no binary named {name}"))
}

/// One running function sandbox.
pub struct FunctionProcess {
    child: Child,
    output: Arc<Mutex<String>>,
    endpoint: SandboxEndpoint,
}

impl FunctionProcess {
    pub fn start(name: &str, api: &RuntimeApi, env: &[(String, String)]) -> Self {
        let endpoint = api.endpoint();
        let runtime_api = endpoint.address.as_str();
        let mut command = Command::new(binary(name));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("function starts");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = output.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buffer = [0u8; 8192];
                while let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
                }
            });
        }
        Self { child, output, endpoint }
    }

    /// Everything the process printed so far (logs).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
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
