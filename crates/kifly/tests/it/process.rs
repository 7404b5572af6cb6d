//! Running the real `kifly` binary: one-shot commands ([`kifly`]) and servers ([`Server`]), each with
//! a clean `KIFLY_*` environment, plus small HTTP helpers for talking to them.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_kifly");

/// The output of one finished `kifly` run.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(output: Output) -> Run {
        Run {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert!(
            self.status.success(),
            "expected success, got {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts a failure and returns stderr.
    #[track_caller]
    pub fn fails(self) -> String {
        assert!(
            !self.status.success(),
            "expected failure, got success\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self.stderr
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// A `kifly` command on `dir`: `--data-dir dir`, working directory `dir`, clean `KIFLY_*` environment.
pub fn kifly_command(dir: &Path) -> Command {
    let mut cmd = bare_command(dir);
    cmd.arg("--data-dir").arg(dir);
    cmd
}

/// A `kifly` command run in `dir` with a clean `KIFLY_*` environment, but no `--data-dir`.
pub fn bare_command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KIFLY_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("KIFLY_LOG", "warn");
    cmd
}

/// Runs `kifly --data-dir dir ARGS…` to completion.
pub fn kifly(dir: &Path, args: &[&str]) -> Run {
    kifly_with_env(dir, args, &[])
}

pub fn kifly_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = kifly_command(dir);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().expect("run kifly"))
}

/// A running `kifly serve`; killed (and reaped) on drop so a failing test leaves no process behind.
pub struct Server {
    pub child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Stdout lines printed before the listening line.
    pub banner: Vec<String>,
    pub base: String,
}

impl Server {
    /// Starts `kifly --data-dir dir serve ARGS…` and waits (≤ 30 s) for the listening line.
    pub fn start(dir: &Path, args: &[&str]) -> Server {
        Server::start_with_env(dir, args, &[])
    }

    pub fn start_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = kifly_command(dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.arg("serve").args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn kifly serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr_pipe = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut server = Server { child, lines, stderr, banner: Vec::new(), base: String::new() };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match server.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("kifly listening on ") {
                        server.base = url.trim().to_string();
                        break;
                    }
                    server.banner.push(line);
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no listening line within 30 s; stdout so far: {:?}; stderr: {}",
                        server.banner,
                        server.stderr()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(100));
                    panic!(
                        "kifly serve exited before listening ({:?}); stdout: {:?}; stderr: {}",
                        server.child.try_wait(),
                        server.banner,
                        server.stderr()
                    )
                }
            }
        }
        server
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `limit` for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let killed =
            Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("run kill");
        assert!(killed.success(), "kill -TERM failed");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "kifly serve did not exit within {limit:?} of SIGTERM; stderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
}

pub async fn get_json(client: &reqwest::Client, url: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = client.get(url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {text}"));
    (status, body)
}

/// Polls `check` every 100 ms until it holds; returns how long it took, or `None` after `limit`.
pub async fn poll_until<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
