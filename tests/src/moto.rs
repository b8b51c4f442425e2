//! The local AWS stand-in: moto's server mode (real S3, DynamoDB and Secrets Manager wire
//! protocols), started once per test process on a free loopback port. A tiny Python watchdog
//! owns the server and kills it when our end of its stdin closes, i.e. when the tests exit.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const WATCHDOG: &str = r#"
import os, subprocess, sys
server = os.path.join(os.path.dirname(sys.executable), "moto_server")
child = subprocess.Popen([server, "-H", "127.0.0.1", "-p", sys.argv[1]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    sys.stdin.read()
finally:
    child.kill()
"#;

struct Moto {
    endpoint: String,
    // Held open for the life of the process; dropping it (at exit) stops the server.
    _watchdog: Mutex<Child>,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

fn python() -> PathBuf {
    if let Ok(path) = std::env::var("MOTO_PYTHON") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv-moto/bin/python")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A moto server of a test's own (for settings that apply to the whole server, such as IAM
/// enforcement); stopped when dropped.
pub struct OwnMoto {
    pub endpoint: String,
    _watchdog: Child,
}

impl Drop for OwnMoto {
    fn drop(&mut self) {
        // Closing its stdin makes the watchdog stop the server.
        drop(self._watchdog.stdin.take());
        let _ = self._watchdog.wait();
    }
}

pub fn start_own() -> OwnMoto {
    let (endpoint, watchdog) = spawn();
    OwnMoto { endpoint, _watchdog: watchdog }
}

/// `http://127.0.0.1:<port>` of a running moto server.
pub fn endpoint() -> &'static str {
    &MOTO
        .get_or_init(|| {
            let (endpoint, child) = spawn();
            Moto { endpoint, _watchdog: Mutex::new(child) }
        })
        .endpoint
}

fn missing_message(python: &std::path::Path) -> String {
    format!(
        "moto is not installed at {}: run `bash .ci/run`, or `python3 -m venv .venv-moto && .venv-moto/bin/pip install 'moto[server]'`",
        python.display()
    )
}

/// Whether a test that needs the AWS stand-in must be skipped: moto is not installed and this is
/// not CI. Outside CI the test is skipped with a line `SKIPPED <test>: <why>` on the real stderr
/// (past the test harness's capture, so it shows and `.ci/run` counts it); in CI (`CI=true`) a
/// missing stand-in fails the test instead.
pub fn unavailable(test: &str) -> bool {
    let python = python();
    if python.exists() {
        return false;
    }
    let message = missing_message(&python);
    assert!(!std::env::var("CI").is_ok_and(|value| value == "true"), "{message}");
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {message}");
    true
}

fn spawn() -> (String, Child) {
    let python = python();
    assert!(python.exists(), "{}", missing_message(&python));
    let port = free_port();
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(WATCHDOG)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto watchdog starts");
    // Keep stdin open: the watchdog waits on it.
    if let Some(stdin) = child.stdin.as_mut() {
        let _ = stdin.flush();
    }
    let endpoint = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "moto did not start on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (endpoint, child)
}
