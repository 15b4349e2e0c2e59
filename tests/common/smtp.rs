//! A real SMTP server for tests: Debian's python3-aiosmtpd on loopback, storing each message
//! in a Maildir. Stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Smtp {
    child: Child,
    dir: PathBuf,
}

impl Smtp {
    pub fn start(port: u16, dir: &Path) -> Smtp {
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let child = Command::new("/usr/bin/python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3-aiosmtpd (apt-get install python3-aiosmtpd)");
        super::system::wait_for_port(&format!("127.0.0.1:{port}"), 10);
        Smtp {
            child,
            dir: dir.to_path_buf(),
        }
    }

    /// The messages received so far, decoded enough to read.
    pub fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.join("new")) {
            for e in entries.flatten() {
                out.push(decode_qp(&std::fs::read_to_string(e.path()).unwrap()));
            }
        }
        out
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Undoes quoted-printable soft line breaks and escapes.
pub fn decode_qp(s: &str) -> String {
    let joined = s.replace("=\r\n", "").replace("=\n", "");
    let b = joined.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
