//! Test harness: a real SMTP server (Python aiosmtpd) on a free loopback port, writing every message it
//! accepts to a Maildir that the tests read back. `KIFLY_TEST_SMTPD_PYTHON` names a python with
//! aiosmtpd installed (`scripts/smtpd.sh` installs one and prints its path). The server is killed when
//! the [`Smtpd`] is dropped; if that happens because a test panicked, the server's debug log (the SMTP
//! dialog) is printed first.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

const PYTHON_VAR: &str = "KIFLY_TEST_SMTPD_PYTHON";

/// aiosmtpd with AUTH required (its command line has no option for that): argv is
/// HOST PORT MAILDIR USER PASSWORD. Plain-text AUTH is allowed since the test server has no TLS.
const AUTH_SERVER: &str = r#"
import asyncio, logging, sys
logging.basicConfig(level=logging.DEBUG)
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

host, port, maildir, user, password = sys.argv[1:6]

def authenticator(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == user.encode() and data.password == password.encode()
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Mailbox(maildir), authenticator=authenticator, auth_required=True, auth_require_tls=False),
        host, int(port))
    await server.serve_forever()

asyncio.run(main())
"#;

/// Prints the Maildir's messages as JSON, decoded by Python's own mail parser (RFC 2047 headers,
/// quoted-printable or base64 bodies, charsets), so the tests compare plain text.
const READ_MAILDIR: &str = r#"
import email.policy, json, mailbox, sys

out = []
for msg in mailbox.Maildir(sys.argv[1], factory=None, create=False):
    m = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    out.append({
        "to": str(m["To"]), "from": str(m["From"]), "subject": str(m["Subject"]),
        "content_type": m.get_content_type(), "body": m.get_content(),
        "rcpt_to": str(m["X-RcptTo"]), "mail_from": str(m["X-MailFrom"]),
    })
print(json.dumps(out))
"#;

/// One message as the server stored it. `rcpt_to`/`mail_from` are the SMTP envelope (aiosmtpd's
/// Mailbox handler records them as `X-RcptTo`/`X-MailFrom` headers).
#[derive(Debug, serde::Deserialize)]
pub struct Received {
    pub to: String,
    pub from: String,
    pub subject: String,
    pub content_type: String,
    pub body: String,
    pub rcpt_to: String,
    pub mail_from: String,
}

pub struct Smtpd {
    child: Child,
    port: u16,
    python: PathBuf,
    dir: tempfile::TempDir,
}

fn python() -> PathBuf {
    match std::env::var_os(PYTHON_VAR) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "{PYTHON_VAR} is not set: it must name a python with aiosmtpd installed. \
             Run `export {PYTHON_VAR}=$(scripts/smtpd.sh)` from the repository root, then \
             `cargo test -p kifly --lib mail -- --include-ignored`."
        ),
    }
}

/// TLS for a test server, with a fresh self-signed certificate for 127.0.0.1 that no client trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTls {
    /// Plain connect, STARTTLS offered and required (`--tlscert`/`--tlskey`).
    StartTls,
    /// TLS from the first byte (`--smtpscert`/`--smtpskey`).
    Implicit,
}

impl Smtpd {
    /// `python -m aiosmtpd -n -l 127.0.0.1:PORT -c aiosmtpd.handlers.Mailbox MAILDIR`.
    pub async fn start() -> Smtpd {
        Smtpd::spawn(true, |python, port, dir| cli(python, port, dir, &[])).await
    }

    /// The same server with TLS on a self-signed certificate (made with the `openssl` command).
    pub async fn start_tls(tls: ServerTls) -> Smtpd {
        Smtpd::spawn(tls == ServerTls::StartTls, |python, port, dir| {
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            let status = Command::new("openssl")
                .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"])
                .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run openssl to make a test certificate");
            assert!(status.success(), "openssl req failed: {status}");
            let (cert_flag, key_flag) = match tls {
                ServerTls::StartTls => ("--tlscert", "--tlskey"),
                ServerTls::Implicit => ("--smtpscert", "--smtpskey"),
            };
            cli(python, port, dir, &[cert_flag.as_ref(), cert.as_ref(), key_flag.as_ref(), key.as_ref()])
        })
        .await
    }

    /// An aiosmtpd that refuses mail until the client authenticates as `user`/`password`.
    pub async fn start_with_auth(user: &str, password: &str) -> Smtpd {
        Smtpd::spawn(true, |python, port, dir| {
            let mut cmd = Command::new(python);
            cmd.args(["-c", AUTH_SERVER, "127.0.0.1", &port.to_string()])
                .arg(dir.join("Maildir"))
                .args([user, password]);
            cmd
        })
        .await
    }

    /// Runs `command(python, port, dir)` (the Maildir is `dir/Maildir`) and waits until it listens.
    async fn spawn(greets_in_clear: bool, command: impl FnOnce(&Path, u16, &Path) -> Command) -> Smtpd {
        let python = python();
        let dir = tempfile::tempdir().expect("temp dir");
        let log_path = dir.path().join("smtpd.log");
        // A free port: bind, note it, release it for the server (a small race, fine on a test box).
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
            listener.local_addr().expect("local addr").port()
        };
        let log = std::fs::File::create(&log_path).expect("smtpd log");
        let child = command(&python, port, dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({PYTHON_VAR}): {e}", python.display()));
        let mut smtpd = Smtpd { child, port, python, dir };
        smtpd.wait_ready(greets_in_clear, &log_path).await;
        smtpd
    }

    /// Waits until the server answers a connection with its 220 greeting.
    /// (A server speaking TLS from the first byte is ready once it accepts the connection.)
    async fn wait_ready(&mut self, greets_in_clear: bool, log_path: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "aiosmtpd exited ({status}): {}",
                    std::fs::read_to_string(log_path).unwrap_or_default()
                );
            }
            if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await {
                if !greets_in_clear {
                    return;
                }
                let mut greeting = [0u8; 3];
                let read =
                    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut greeting)).await;
                if matches!(read, Ok(Ok(_))) && &greeting == b"220" {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "aiosmtpd did not greet on 127.0.0.1:{} within 20 s: {}",
                    self.port,
                    std::fs::read_to_string(log_path).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message in the Maildir, decoded.
    pub fn messages(&self) -> Vec<Received> {
        let maildir = self.dir.path().join("Maildir");
        let out =
            Command::new(&self.python).args(["-c", READ_MAILDIR]).arg(&maildir).output().expect("run python");
        assert!(out.status.success(), "reading the Maildir failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("maildir JSON")
    }
}

/// The aiosmtpd command line with the Maildir handler, debug log on (printed if a test fails).
/// `options` go before the handler and its Maildir argument.
fn cli(python: &Path, port: u16, dir: &Path, options: &[&OsStr]) -> Command {
    let mut cmd = Command::new(python);
    cmd.args(["-m", "aiosmtpd", "-n", "-dd", "-l", &format!("127.0.0.1:{port}")])
        .args(options)
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(dir.join("Maildir"));
    cmd
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("smtpd.log")).unwrap_or_default();
            eprintln!("--- aiosmtpd log (127.0.0.1:{}) ---\n{log}--- end of aiosmtpd log ---", self.port);
        }
    }
}
