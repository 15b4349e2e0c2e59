//! A gateway host for system tests and the benchmark: a real sshd on loopback (root logs in
//! with the master's key, students with theirs) and, on demand, a real Apache, with all their
//! files in one root-owned folder that is removed, with the accounts made in it, on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::netns::in_ns;
use super::system::*;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The gateway host's parts: sshd and Apache, with their files in one root-owned folder.
pub struct Lab {
    pub dir: PathBuf,
    sshd: Child,
    apache_conf: PathBuf,
    pub ssh_port: u16,
    pub web_port: u16,
    /// The sshd's host key fingerprint (SHA256:...).
    pub host_key: String,
    /// Where sshd and Apache listen, and the namespace they run in (None: this host).
    pub ip: String,
    pub ns: Option<String>,
    /// The account the master logs in as: shell /bin/sh, allowed by sudo to run the helper
    /// and nothing else (as docs/gateway.md asks of a real gateway).
    pub admin: String,
    sudoers: PathBuf,
}

impl Lab {
    /// On this host's loopback.
    pub fn start() -> Lab {
        Lab::start_at("127.0.0.1", None)
    }

    /// Listening on `ip`, inside network namespace `ns` when given (a host of its own).
    pub fn start_at(ip: &str, ns: Option<&str>) -> Lab {
        // Under /var/lib, not /tmp: sshd refuses keys under a world-writable folder.
        let dir = PathBuf::from(format!("/var/lib/slices-gw-test-{}", std::process::id()));
        quiet("rm", &["-rf", dir.to_str().unwrap()]);
        sh("install", &["-d", "-m", "755", dir.to_str().unwrap()]);
        for sub in ["root_keys", "run"] {
            sh(
                "install",
                &["-d", "-m", "755", dir.join(sub).to_str().unwrap()],
            );
        }
        let hk = dir.join("host_key");
        sh(
            "ssh-keygen",
            &["-q", "-t", "ed25519", "-N", "", "-f", hk.to_str().unwrap()],
        );
        let host_key = sh("ssh-keygen", &["-lf", &format!("{}.pub", hk.display())])
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string();
        let ssh_port = free_port();
        let d = dir.display();
        let conf = format!(
            "Port {ssh_port}\nListenAddress {ip}\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             AuthorizedKeysFile .ssh/authorized_keys {d}/root_keys/%u\n\
             Subsystem sftp /usr/lib/openssh/sftp-server\n"
        );
        std::fs::write(dir.join("sshd_config"), conf).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let mut sshd_cmd = match ns {
            Some(ns) => in_ns(ns, "/usr/sbin/sshd", &[]),
            None => Command::new("/usr/sbin/sshd"),
        };
        let sshd = sshd_cmd
            .args(["-D", "-f"])
            .arg(dir.join("sshd_config"))
            .arg("-E")
            .arg(dir.join("sshd.log"))
            .spawn()
            .expect("sshd");
        wait_for_port(&format!("{ip}:{ssh_port}"), 10);
        let admin = format!("slgw-adm-{}", std::process::id() % 1_000_000);
        quiet("userdel", &["-f", &admin]);
        let admin_home = dir.join("admin");
        sh(
            "install",
            &["-d", "-m", "755", admin_home.to_str().unwrap()],
        );
        sh(
            "useradd",
            &[
                "-M",
                "-d",
                admin_home.to_str().unwrap(),
                "-s",
                "/bin/sh",
                "-p",
                "*",
                &admin,
            ],
        );
        let helper = dir.join("slices-gateway");
        std::fs::write(&helper, Lab::helper_text(&dir)).unwrap();
        sh("chmod", &["755", helper.to_str().unwrap()]);
        let sudoers = PathBuf::from(format!(
            "/etc/sudoers.d/slices-gw-test-{}",
            std::process::id()
        ));
        std::fs::write(
            &sudoers,
            format!(
                "{}\n",
                slices::gateway::sudoers_line(
                    &admin,
                    &slices::gateway::RemotePath::parse(helper.to_str().unwrap()).unwrap()
                )
            ),
        )
        .unwrap();
        sh("chmod", &["440", sudoers.to_str().unwrap()]);
        sh("visudo", &["-cqf", sudoers.to_str().unwrap()]);
        Lab {
            ip: ip.to_string(),
            ns: ns.map(str::to_string),
            admin,
            sudoers,
            apache_conf: dir.join("httpd.conf"),
            dir,
            sshd,
            ssh_port,
            web_port: free_port(),
            host_key,
        }
    }

    pub fn start_apache(&self, site: &str) {
        let d = self.dir.display();
        let m = "/usr/lib/apache2/modules";
        let conf = format!(
            "ServerRoot {d}\nServerName localhost\nListen {ip}:{port}\nPidFile {d}/run/apache.pid\n\
             DefaultRuntimeDir {d}/run\nMutex file:{d}/run default\nErrorLog {d}/apache-error.log\n\
             LogLevel warn\nUser www-data\nGroup www-data\n\
             LoadModule mpm_event_module {m}/mod_mpm_event.so\n\
             LoadModule authz_core_module {m}/mod_authz_core.so\n\
             LoadModule rewrite_module {m}/mod_rewrite.so\n\
             LoadModule proxy_module {m}/mod_proxy.so\n\
             LoadModule proxy_http_module {m}/mod_proxy_http.so\n\
             ProxyTimeout 10\n{site}",
            port = self.web_port,
            ip = self.ip
        );
        std::fs::write(&self.apache_conf, conf).unwrap();
        let args = ["-f", self.apache_conf.to_str().unwrap(), "-k", "start"];
        match &self.ns {
            Some(ns) => {
                let out = in_ns(ns, "apache2", &args).output().unwrap();
                assert!(
                    out.status.success(),
                    "apache2: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => {
                sh("apache2", &args);
            }
        }
        wait_for_port(&format!("{}:{}", self.ip, self.web_port), 10);
    }

    /// The helper made for this gateway's users folder and map file.
    pub fn helper_text(dir: &Path) -> String {
        let path = |p: PathBuf| slices::gateway::RemotePath::parse(p.to_str().unwrap()).unwrap();
        slices::gateway::helper(
            &path(dir.join("users")),
            &path(dir.join("openvz.map")),
            &path(dir.join("sshd_config")),
        )
    }

    /// The master's settings for this gateway: (key, value) pairs.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "gateway_target",
                format!("ssh://{}@{}:{}", self.admin, self.ip, self.ssh_port),
            ),
            ("gateway_host_key", self.host_key.clone()),
            ("gateway_users_dir", self.users().display().to_string()),
            ("gateway_map_file", self.map().display().to_string()),
            (
                "gateway_sshd_config",
                self.dir.join("sshd_config").display().to_string(),
            ),
            (
                "gateway_helper",
                self.dir.join("slices-gateway").display().to_string(),
            ),
        ]
    }

    /// Lets `key` (a public key line) log in as `account` (the admin, or root).
    pub fn authorize(&self, account: &str, key: &str) {
        std::fs::write(self.dir.join("root_keys").join(account), format!("{key}\n")).unwrap();
    }

    pub fn users(&self) -> PathBuf {
        self.dir.join("users")
    }

    pub fn map(&self) -> PathBuf {
        self.dir.join("openvz.map")
    }

    /// `ssh -p PORT -i KEY USER@127.0.0.1 ARGS...` through the gateway: (exit code, stdout).
    pub fn ssh(&self, key: &Path, user: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
        let port = self.ssh_port.to_string();
        let mut cmd = Command::new("ssh");
        cmd.args(SSH_OPTS)
            .args(["-p", &port, "-i"])
            .arg(key)
            .arg(format!("{user}@{}", self.ip))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
        if self.apache_conf.exists() {
            quiet(
                "apache2",
                &["-f", self.apache_conf.to_str().unwrap(), "-k", "stop"],
            );
        }
        // Accounts the test's gateway made (their shell is in its users folder).
        let users = self.users();
        if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
            for line in passwd.lines() {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() == 7 && f[6].starts_with(users.to_str().unwrap()) {
                    quiet("userdel", &["-f", f[0]]);
                }
            }
        }
        quiet("userdel", &["-f", &self.admin]);
        quiet("groupdel", &["slices-users"]);
        quiet("rm", &["-f", self.sudoers.to_str().unwrap()]);
        quiet("rm", &["-rf", self.dir.to_str().unwrap()]);
    }
}
