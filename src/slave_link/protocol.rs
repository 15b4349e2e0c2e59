//! The seed's message shapes, `{"command", "arguments"}` and `{"code", "returned"}`, and the
//! typed commands they carry. Every argument is parsed into a domain type here, before any
//! handler sees it; what does not parse gets a non-zero code and runs nothing.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use base64::Engine as _;

use crate::domain::{
    DnsName, Limits, PrivateIp, SnapshotName, SshPublicKey, TemplateName, Username, VeId,
};
use crate::templates::{Sha256Hex, TemplateInfo};

/// The largest template accepted.
pub const MAX_TEMPLATE_BYTES: u64 = 64 << 30;

/// A request, exactly as the seed specifies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub command: String,
    #[serde(default)]
    pub arguments: Vec<Value>,
}

/// A reply: `code` 0 for success; on failure `returned` holds the lines of standard error (or
/// one clear message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub code: i32,
    #[serde(default)]
    pub returned: Vec<Value>,
    /// Raw bytes that follow the reply's line on the wire (`returned` is then
    /// `[{"bytes": N}]`): a piece of an archive read with `read_export [..., "raw"]`.
    #[serde(skip)]
    pub raw: Option<Vec<u8>>,
}

/// The reply codes. 0 is success; every other code is a failure of a documented kind.
pub mod code {
    /// The command ran and succeeded.
    pub const OK: i32 = 0;
    /// The command ran and failed on the host; `returned` has its standard error.
    pub const FAILED: i32 = 1;
    /// The line was not a JSON request object.
    pub const MALFORMED: i32 = 2;
    /// No such command.
    pub const UNKNOWN_COMMAND: i32 = 3;
    /// Wrong number or type of arguments, or a value that does not pass its check.
    pub const BAD_ARGUMENTS: i32 = 4;
    /// The request contradicts the host's state (an id that exists with another spec).
    pub const CONFLICT: i32 = 5;
    /// The container does not exist.
    pub const NOT_FOUND: i32 = 6;
    /// The line was longer than the limit; the connection is closed after this reply.
    pub const TOO_LARGE: i32 = 7;
    /// The command did not finish in time.
    pub const TIMEOUT: i32 = 8;
    /// The template is not in the host's template folder.
    pub const NO_TEMPLATE: i32 = 9;
}

impl Reply {
    pub fn ok(returned: Vec<Value>) -> Reply {
        Reply {
            code: code::OK,
            returned,
            raw: None,
        }
    }

    pub fn error(code: i32, message: impl Into<String>) -> Reply {
        Reply {
            code,
            returned: vec![Value::String(message.into())],
            raw: None,
        }
    }

    pub fn is_ok(&self) -> bool {
        self.code == code::OK
    }

    /// A piece of an archive as raw bytes after the line.
    pub fn piece(data: Vec<u8>) -> Reply {
        Reply {
            code: code::OK,
            returned: vec![json!({ "bytes": data.len() })],
            raw: Some(data),
        }
    }

    /// The number of raw bytes a reply's line says follow it (`[{"bytes": N}]`, N at most
    /// 512 KiB); None for any other reply.
    pub fn raw_len(&self) -> Option<usize> {
        match self.returned.as_slice() {
            [Value::Object(o)] if o.len() == 1 => o
                .get("bytes")
                .and_then(Value::as_u64)
                .filter(|n| *n as usize <= crate::templates::CHUNK)
                .map(|n| n as usize),
            _ => None,
        }
    }

    /// The reply as it goes on the wire: its line, newline, and its raw bytes if any.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut w = self.to_line();
        w.push(b'\n');
        if let Some(raw) = &self.raw {
            w.extend_from_slice(raw);
        }
        w
    }

    /// The reply as one line of the wire (without its newline). A piece of an archive (one
    /// long base64 string) is written straight into the line; anything else through serde.
    pub fn to_line(&self) -> Vec<u8> {
        if let [Value::String(b64)] = self.returned.as_slice() {
            let plain = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
            if b64.len() > 4096 && b64.as_bytes().iter().all(plain) {
                let mut line = Vec::with_capacity(b64.len() + 40);
                line.extend_from_slice(
                    format!("{{\"code\":{},\"returned\":[\"", self.code).as_bytes(),
                );
                line.extend_from_slice(b64.as_bytes());
                line.extend_from_slice(b"\"]}");
                return line;
            }
        }
        serde_json::to_vec(self).expect("a reply serializes")
    }

    /// `text`, cut to 300 characters with the length of the rest said (for logs: a piece of
    /// an archive is 700 KB of base64).
    pub fn summary(&self) -> String {
        cut(self.text(), 300)
    }

    /// The text of `returned`, one line per element (for logs and errors).
    pub fn text(&self) -> String {
        self.returned
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `s` cut to at most `max` characters, saying how much was left out.
fn cut(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let total = s.len();
    let at = (0..=max)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    s.truncate(at);
    s.push_str(&format!("... ({total} bytes)"));
    s
}

/// Everything a slave host needs to make a slice: the seed's `create_env` steps, typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSpec {
    pub id: VeId,
    pub template: TemplateName,
    pub username: Username,
    pub ip: PrivateIp,
    pub hostname: DnsName,
    pub nameservers: Vec<PrivateOrPublicIp>,
    pub search_domain: Option<DnsName>,
    pub limits: Limits,
    /// Public keys to put in the user's `authorized_keys` inside the slice (the gateway's hop
    /// key, and any the student added).
    pub keys: Vec<SshPublicKey>,
    /// Whether the user is root in the slice (passwordless sudo): the plan's setting.
    #[serde(default = "yes")]
    pub root: bool,
}

fn yes() -> bool {
    true
}

/// A name server address (any IPv4).
pub type PrivateOrPublicIp = std::net::Ipv4Addr;

/// The part of `create_env`'s arguments after id, template and username.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvOptions {
    ip: PrivateIp,
    hostname: DnsName,
    #[serde(default)]
    nameservers: Vec<PrivateOrPublicIp>,
    #[serde(default)]
    search_domain: Option<DnsName>,
    limits: Limits,
    #[serde(default)]
    keys: Vec<SshPublicKey>,
    #[serde(default = "yes")]
    root: bool,
}

/// The commands an agent answers. There is no generic exec, and there never will be.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Ping,
    NodeInfo,
    /// The node is being removed: take away the network policy and forwarding (containers
    /// stay), and say what was done and left.
    Retire,
    CreateEnv(Box<EnvSpec>),
    /// The seed's own `create_env [id, template, username]`: the agent chooses the rest the
    /// way the seed's daemon would have (the next free address, hostname = username, the
    /// node's default limits, no keys), creates it and starts it, and says what it chose.
    CreateEnvAsSeed {
        id: VeId,
        template: TemplateName,
        username: Username,
    },
    StartEnv(VeId),
    StopEnv(VeId),
    RestartEnv(VeId),
    DestroyEnv(VeId),
    EnvStatus(VeId),
    ListEnvs,
    SetLimits(VeId, Limits),
    /// Replaces the keys in the user's `authorized_keys` inside the slice (now if it runs,
    /// else at its next start).
    SetKeys(VeId, Vec<SshPublicKey>),
    Usage(Option<VeId>),
    /// The master's templates: the node says which it lacks or has another version of.
    SyncTemplates(Vec<TemplateInfo>),
    /// The seed's own `sync_templates []`: the node checks its templates against the master's
    /// manifest it last received (or, having none, reports the ones it has).
    SyncTemplatesAsSeed,
    /// One piece of a template, in order; the last one installs it after checking its hash.
    PutTemplate {
        info: TemplateInfo,
        offset: u64,
        data: Vec<u8>,
    },
    /// Packs the slice's /home into an archive kept on the node (`.tar.gz`, owners as the
    /// slice sees them), replacing any earlier one, and says its size and SHA-256.
    ExportHome(VeId),
    /// A piece of the slice's archive: at most `len` bytes from `offset`, if the archive is
    /// still the one with this SHA-256 (a newer export answers `CONFLICT`).
    ReadExport {
        id: VeId,
        sha256: Sha256Hex,
        offset: u64,
        len: u32,
        /// Answer with the bytes raw after the reply's line (else base64 in it).
        raw: bool,
    },
    /// Removes the slice's archive from the node.
    DropExport(VeId),
    /// One piece of an archive for the slice's /home, in order (as `put_template`); the last
    /// one checks the SHA-256 and unpacks it into the running slice's /home.
    ImportHome {
        id: VeId,
        sha256: Sha256Hex,
        size: u64,
        offset: u64,
        data: Vec<u8>,
    },
    /// Takes a snapshot of the slice's disk, running (its file system frozen for the copy)
    /// or stopped; says its name, size and when.
    Snapshot(VeId, SnapshotName),
    /// The slice's snapshots on the node.
    ListSnapshots(VeId),
    /// Puts the slice's disk back as the snapshot has it (stopped for it, and started again
    /// if it ran); the snapshot stays.
    RestoreSnapshot(VeId, SnapshotName),
    /// Removes a snapshot.
    DropSnapshot(VeId, SnapshotName),
}

/// The largest archive of a home accepted or made.
pub const MAX_ARCHIVE_BYTES: u64 = 256 << 30;

/// Why a request was refused before anything ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: i32,
    pub message: String,
}

impl Refusal {
    fn args(command: &str, message: impl std::fmt::Display) -> Refusal {
        Refusal {
            code: code::BAD_ARGUMENTS,
            message: format!("{command}: {message}"),
        }
    }
}

impl From<Refusal> for Reply {
    fn from(r: Refusal) -> Reply {
        Reply::error(r.code, r.message)
    }
}

/// The names of all commands, for `unknown command` messages and the docs.
pub const COMMANDS: &[&str] = &[
    "ping",
    "node_info",
    "retire",
    "create_env",
    "start_env",
    "stop_env",
    "restart_env",
    "destroy_env",
    "env_status",
    "list_envs",
    "set_limits",
    "set_keys",
    "usage",
    "sync_templates",
    "put_template",
    "export_home",
    "read_export",
    "drop_export",
    "import_home",
    "snapshot",
    "list_snapshots",
    "restore_snapshot",
    "drop_snapshot",
];

fn arity(req: &Request, n: usize, shape: &str) -> Result<(), Refusal> {
    if req.arguments.len() == n {
        Ok(())
    } else {
        Err(Refusal::args(
            &req.command,
            format!("takes {n} argument(s) {shape}, got {}", req.arguments.len()),
        ))
    }
}

fn typed<T: serde::de::DeserializeOwned>(
    req: &Request,
    i: usize,
    what: &str,
) -> Result<T, Refusal> {
    serde_json::from_value(req.arguments[i].clone())
        .map_err(|e| Refusal::args(&req.command, format!("argument {} ({what}): {e}", i + 1)))
}

/// The base64 piece of a file at argument `i`: at most 512 KiB, inside the file's `size`,
/// which is at most `max`.
fn piece(req: &Request, i: usize, size: u64, offset: u64, max: u64) -> Result<Vec<u8>, Refusal> {
    // Borrowed, not copied: a piece is 700 KB.
    let b64 = req.arguments[i].as_str().ok_or_else(|| {
        Refusal::args(
            &req.command,
            format!("argument {} (data): a base64 string", i + 1),
        )
    })?;
    if size > max {
        return Err(Refusal::args(
            &req.command,
            format!("a file is at most {} GiB", max >> 30),
        ));
    }
    if b64.len() > (crate::templates::CHUNK * 4).div_ceil(3) + 4 {
        return Err(Refusal::args(&req.command, "a piece is at most 512 KiB"));
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| {
            Refusal::args(
                &req.command,
                format!("argument {} (data): not base64: {e}", i + 1),
            )
        })?;
    if offset
        .checked_add(data.len() as u64)
        .is_none_or(|end| end > size)
    {
        return Err(Refusal::args(
            &req.command,
            "the piece ends past the file's size",
        ));
    }
    Ok(data)
}

/// Whether a reply is an older agent's refusal of `import_home`'s raw form (it takes the data
/// only as a base64 string): the sender then goes on in base64.
pub fn refuses_raw_pieces(reply: &Reply) -> bool {
    reply.code == code::BAD_ARGUMENTS
        && reply
            .text()
            .contains("import_home: argument 5 (data): a base64 string")
        && !reply.text().contains("{\"bytes\": N}")
}

/// Whether a reply is an older agent's refusal of `read_export`'s raw form (it takes exactly
/// four arguments): the reader then asks in base64.
pub fn refuses_raw_reads(reply: &Reply) -> bool {
    reply.code == code::BAD_ARGUMENTS
        && reply
            .text()
            .starts_with("read_export: takes 4 argument(s) [id, sha256, offset, length], got 5")
}

/// A request line as read: the command (or why it is refused), and how many raw bytes follow
/// the line on the wire (the data of an `import_home` sent as `{"bytes": N}`), which the
/// reader takes before the next line whatever the command's fate.
pub struct Head {
    pub command: Result<Command, Refusal>,
    pub tail: usize,
}

/// The raw bytes announced by `import_home`'s data argument `{"bytes": N}` (1 to 512 KiB);
/// 0 for any other request. An announcement that cannot be sized is an error: the rest of the
/// stream cannot be read as lines.
fn tail_len(req: &Request) -> Result<usize, Refusal> {
    if req.command != "import_home" || req.arguments.len() != 5 {
        return Ok(0);
    }
    let Value::Object(o) = &req.arguments[4] else {
        return Ok(0);
    };
    o.get("bytes")
        .and_then(Value::as_u64)
        .filter(|n| o.len() == 1 && *n >= 1 && *n as usize <= crate::templates::CHUNK)
        .map(|n| n as usize)
        .ok_or_else(|| {
            Refusal::args(
                &req.command,
                "argument 5 (data): a base64 string, or {\"bytes\": N} with N from 1 to 512 KiB",
            )
        })
}

impl Command {
    /// Parses a request line; `Err` when it announces raw bytes that cannot be sized (the
    /// connection is then closed).
    pub fn parse_head(line: &[u8]) -> Result<Head, Refusal> {
        let req: Request = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                return Ok(Head {
                    command: Err(Refusal {
                        code: code::MALFORMED,
                        message: format!(
                            "not a request object {{\"command\": ..., \"arguments\": [...]}}: {e}"
                        ),
                    }),
                    tail: 0,
                })
            }
        };
        let tail = tail_len(&req)?;
        Ok(Head {
            command: Command::from_request(&req),
            tail,
        })
    }

    /// Parses a line of the wire into a typed command (one whose data follows it as raw
    /// bytes is refused here: only a connection's reader can take them).
    pub fn parse_line(line: &[u8]) -> Result<Command, Refusal> {
        let head = Command::parse_head(line)?;
        if head.tail > 0 {
            return Err(Refusal {
                code: code::MALFORMED,
                message: "raw bytes follow this request: only a connection reads them".into(),
            });
        }
        head.command
    }

    /// The command as it goes on the wire, newline included. `import_home`'s data follows its
    /// line as raw bytes (`{"bytes": N}`): no base64 to make and to read, a quarter less to
    /// encrypt and decrypt.
    pub fn to_wire(&self) -> Vec<u8> {
        if let Command::ImportHome {
            id,
            sha256,
            size,
            offset,
            data,
        } = self
        {
            if !data.is_empty() {
                let mut w = Vec::with_capacity(data.len() + 200);
                w.extend_from_slice(
                    format!(
                        "{{\"command\":\"import_home\",\"arguments\":[{id},\"{sha256}\",{size},{offset},{{\"bytes\":{}}}]}}\n",
                        data.len()
                    )
                    .as_bytes(),
                );
                w.extend_from_slice(data);
                return w;
            }
        }
        let mut line = self.to_line();
        line.push(b'\n');
        line
    }

    pub fn from_request(req: &Request) -> Result<Command, Refusal> {
        let id = |req: &Request| -> Result<VeId, Refusal> {
            arity(req, 1, "[id]")?;
            typed(req, 0, "id")
        };
        Ok(match req.command.as_str() {
            "ping" => {
                arity(req, 0, "[]")?;
                Command::Ping
            }
            "node_info" => {
                arity(req, 0, "[]")?;
                Command::NodeInfo
            }
            "retire" => {
                arity(req, 0, "[]")?;
                Command::Retire
            }
            "list_envs" => {
                arity(req, 0, "[]")?;
                Command::ListEnvs
            }
            "create_env" => {
                if req.arguments.len() != 3 {
                    arity(req, 4, "[id, template, username, {ip, hostname, nameservers, search_domain, limits, keys, root}] (or the seed's 3: [id, template, username])")?;
                }
                let id: VeId = typed(req, 0, "id")?;
                let template: TemplateName = typed(req, 1, "template")?;
                let username: Username = typed::<String>(req, 2, "username").and_then(|s| {
                    Username::parse(&s).map_err(|e| {
                        Refusal::args(
                            &req.command,
                            format!("argument 3 (username): {}", e.message),
                        )
                    })
                })?;
                if req.arguments.len() == 3 {
                    return Ok(Command::CreateEnvAsSeed {
                        id,
                        template,
                        username,
                    });
                }
                let o: EnvOptions = typed(req, 3, "options")?;
                let limits = o
                    .limits
                    .check()
                    .map_err(|e| Refusal::args(&req.command, e.message))?;
                if o.nameservers.len() > 3 {
                    return Err(Refusal::args(&req.command, "at most 3 name servers"));
                }
                if o.keys.len() > 64 {
                    return Err(Refusal::args(&req.command, "at most 64 keys"));
                }
                Command::CreateEnv(Box::new(EnvSpec {
                    id,
                    template,
                    username,
                    ip: o.ip,
                    hostname: o.hostname,
                    nameservers: o.nameservers,
                    search_domain: o.search_domain,
                    limits,
                    keys: o.keys,
                    root: o.root,
                }))
            }
            "start_env" => Command::StartEnv(id(req)?),
            "stop_env" => Command::StopEnv(id(req)?),
            "restart_env" => Command::RestartEnv(id(req)?),
            "destroy_env" => Command::DestroyEnv(id(req)?),
            "env_status" => Command::EnvStatus(id(req)?),
            "set_limits" => {
                arity(req, 2, "[id, limits]")?;
                let id: VeId = typed(req, 0, "id")?;
                let limits: Limits = typed(req, 1, "limits")?;
                Command::SetLimits(
                    id,
                    limits
                        .check()
                        .map_err(|e| Refusal::args(&req.command, e.message))?,
                )
            }
            "set_keys" => {
                arity(req, 2, "[id, [key, ...]]")?;
                let id: VeId = typed(req, 0, "id")?;
                let keys: Vec<SshPublicKey> = typed(req, 1, "keys")?;
                if keys.len() > 100 {
                    return Err(Refusal::args(&req.command, "at most 100 keys"));
                }
                Command::SetKeys(id, keys)
            }
            "sync_templates" => {
                if req.arguments.is_empty() {
                    return Ok(Command::SyncTemplatesAsSeed);
                }
                arity(
                    req,
                    1,
                    "[[{name, sha256, size}, ...]] (or the seed's none: [])",
                )?;
                let manifest: Vec<TemplateInfo> = typed(req, 0, "manifest")?;
                if manifest.len() > 1000 {
                    return Err(Refusal::args(&req.command, "at most 1000 templates"));
                }
                Command::SyncTemplates(manifest)
            }
            "put_template" => {
                arity(req, 5, "[name, sha256, size, offset, data_base64]")?;
                let name: TemplateName = typed(req, 0, "name")?;
                let sha256: Sha256Hex = typed(req, 1, "sha256")?;
                let size: u64 = typed(req, 2, "size")?;
                let offset: u64 = typed(req, 3, "offset")?;
                let data = piece(req, 4, size, offset, MAX_TEMPLATE_BYTES)?;
                Command::PutTemplate {
                    info: TemplateInfo { name, sha256, size },
                    offset,
                    data,
                }
            }
            "export_home" => Command::ExportHome(id(req)?),
            "drop_export" => Command::DropExport(id(req)?),
            "read_export" => {
                let raw = req.arguments.len() == 5;
                if raw && req.arguments[4] != json!("raw") {
                    return Err(Refusal::args(
                        &req.command,
                        "argument 5: \"raw\" or nothing",
                    ));
                }
                if !raw {
                    arity(req, 4, "[id, sha256, offset, length] (or with \"raw\")")?;
                }
                let len: u32 = typed(req, 3, "length")?;
                if len == 0 || len as usize > crate::templates::CHUNK {
                    return Err(Refusal::args(
                        &req.command,
                        "a piece is 1 byte to 512 KiB long",
                    ));
                }
                Command::ReadExport {
                    id: typed(req, 0, "id")?,
                    sha256: typed(req, 1, "sha256")?,
                    offset: typed(req, 2, "offset")?,
                    len,
                    raw,
                }
            }
            "import_home" => {
                arity(req, 5, "[id, sha256, size, offset, data_base64]")?;
                let id: VeId = typed(req, 0, "id")?;
                let sha256: Sha256Hex = typed(req, 1, "sha256")?;
                let size: u64 = typed(req, 2, "size")?;
                let offset: u64 = typed(req, 3, "offset")?;
                let data = match tail_len(req)? {
                    // Raw bytes follow the line: the connection's reader puts them in.
                    0 => piece(req, 4, size, offset, MAX_ARCHIVE_BYTES)?,
                    n => {
                        if size > MAX_ARCHIVE_BYTES || offset + n as u64 > size {
                            return Err(Refusal::args(
                                &req.command,
                                "the piece goes past the archive's size",
                            ));
                        }
                        Vec::new()
                    }
                };
                Command::ImportHome {
                    id,
                    sha256,
                    size,
                    offset,
                    data,
                }
            }
            "snapshot" | "restore_snapshot" | "drop_snapshot" => {
                arity(req, 2, "[id, name]")?;
                let id: VeId = typed(req, 0, "id")?;
                let name: SnapshotName = typed(req, 1, "name")?;
                match req.command.as_str() {
                    "snapshot" => Command::Snapshot(id, name),
                    "restore_snapshot" => Command::RestoreSnapshot(id, name),
                    _ => Command::DropSnapshot(id, name),
                }
            }
            "list_snapshots" => Command::ListSnapshots(id(req)?),
            "usage" => match req.arguments.len() {
                0 => Command::Usage(None),
                _ => Command::Usage(Some(id(req)?)),
            },
            other => {
                let shown: String = other.chars().take(40).filter(|c| !c.is_control()).collect();
                return Err(Refusal {
                    code: code::UNKNOWN_COMMAND,
                    message: format!(
                        "unknown command `{shown}`; the commands are: {}",
                        COMMANDS.join(", ")
                    ),
                });
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Command::Ping => "ping",
            Command::NodeInfo => "node_info",
            Command::Retire => "retire",
            Command::CreateEnv(_) | Command::CreateEnvAsSeed { .. } => "create_env",
            Command::StartEnv(_) => "start_env",
            Command::StopEnv(_) => "stop_env",
            Command::RestartEnv(_) => "restart_env",
            Command::DestroyEnv(_) => "destroy_env",
            Command::EnvStatus(_) => "env_status",
            Command::ListEnvs => "list_envs",
            Command::SetLimits(..) => "set_limits",
            Command::SetKeys(..) => "set_keys",
            Command::Usage(_) => "usage",
            Command::SyncTemplates(_) | Command::SyncTemplatesAsSeed => "sync_templates",
            Command::PutTemplate { .. } => "put_template",
            Command::ExportHome(_) => "export_home",
            Command::ReadExport { .. } => "read_export",
            Command::DropExport(_) => "drop_export",
            Command::ImportHome { .. } => "import_home",
            Command::Snapshot(..) => "snapshot",
            Command::ListSnapshots(_) => "list_snapshots",
            Command::RestoreSnapshot(..) => "restore_snapshot",
            Command::DropSnapshot(..) => "drop_snapshot",
        }
    }

    /// The container the command acts on, if any.
    pub fn target(&self) -> Option<VeId> {
        match self {
            Command::CreateEnv(s) => Some(s.id),
            Command::CreateEnvAsSeed { id, .. } => Some(*id),
            Command::StartEnv(id)
            | Command::StopEnv(id)
            | Command::RestartEnv(id)
            | Command::DestroyEnv(id)
            | Command::EnvStatus(id)
            | Command::SetLimits(id, _)
            | Command::SetKeys(id, _)
            | Command::Usage(Some(id))
            | Command::ExportHome(id)
            | Command::DropExport(id)
            | Command::ImportHome { id, .. }
            | Command::Snapshot(id, _)
            | Command::ListSnapshots(id)
            | Command::RestoreSnapshot(id, _)
            | Command::DropSnapshot(id, _) => Some(*id),
            // Reads of a finished archive need no lock: a long download must not hold up the
            // slice's other commands.
            _ => None,
        }
    }

    /// How the command appears in logs: its arguments, bulk data (a piece of a template or
    /// an archive) as its length, at most about 300 characters.
    pub fn describe(&self) -> String {
        let text = match self {
            Command::PutTemplate { info, offset, data } => format!(
                "[\"{}\", \"{}\", {}, {offset}, ({} bytes)]",
                info.name,
                info.sha256,
                info.size,
                data.len()
            ),
            Command::ImportHome {
                id,
                sha256,
                size,
                offset,
                data,
            } => format!(
                "[{id}, \"{sha256}\", {size}, {offset}, ({} bytes)]",
                data.len()
            ),
            other => serde_json::to_string(&other.to_request().arguments).unwrap_or_default(),
        };
        cut(text, 300)
    }

    /// The request as one line of the wire (without its newline). A piece of an archive is
    /// written straight into the line (base64 needs no JSON escapes): going through a JSON
    /// value would copy and scan its 700 KB three times more.
    pub fn to_line(&self) -> Vec<u8> {
        use std::fmt::Write as _;
        match self {
            Command::ImportHome {
                id,
                sha256,
                size,
                offset,
                data,
            } => {
                let mut s = String::with_capacity(data.len() / 3 * 4 + 200);
                let _ = write!(
                    s,
                    "{{\"command\":\"import_home\",\"arguments\":[{id},\"{sha256}\",{size},{offset},\""
                );
                base64::engine::general_purpose::STANDARD.encode_string(data, &mut s);
                s.push_str("\"]}");
                s.into_bytes()
            }
            other => serde_json::to_vec(&other.to_request()).expect("a request serializes"),
        }
    }

    /// The request that carries this command.
    pub fn to_request(&self) -> Request {
        let args = match self {
            Command::Ping
            | Command::NodeInfo
            | Command::Retire
            | Command::ListEnvs
            | Command::SyncTemplatesAsSeed
            | Command::Usage(None) => vec![],
            Command::CreateEnvAsSeed {
                id,
                template,
                username,
            } => vec![json!(id), json!(template), json!(username)],
            Command::CreateEnv(s) => vec![
                json!(s.id),
                json!(s.template),
                json!(s.username),
                json!({
                    "ip": s.ip,
                    "hostname": s.hostname,
                    "nameservers": s.nameservers,
                    "search_domain": s.search_domain,
                    "limits": s.limits,
                    "keys": s.keys,
                    "root": s.root,
                }),
            ],
            Command::StartEnv(id)
            | Command::StopEnv(id)
            | Command::RestartEnv(id)
            | Command::DestroyEnv(id)
            | Command::EnvStatus(id)
            | Command::Usage(Some(id))
            | Command::ExportHome(id)
            | Command::DropExport(id)
            | Command::ListSnapshots(id) => vec![json!(id)],
            Command::Snapshot(id, n)
            | Command::RestoreSnapshot(id, n)
            | Command::DropSnapshot(id, n) => vec![json!(id), json!(n)],
            Command::ReadExport {
                id,
                sha256,
                offset,
                len,
                raw,
            } => {
                let mut a = vec![json!(id), json!(sha256), json!(offset), json!(len)];
                if *raw {
                    a.push(json!("raw"));
                }
                a
            }
            Command::ImportHome {
                id,
                sha256,
                size,
                offset,
                data,
            } => vec![
                json!(id),
                json!(sha256),
                json!(size),
                json!(offset),
                json!(base64::engine::general_purpose::STANDARD.encode(data)),
            ],
            Command::SetLimits(id, l) => vec![json!(id), json!(l)],
            Command::SetKeys(id, k) => vec![json!(id), json!(k)],
            Command::SyncTemplates(m) => vec![json!(m)],
            Command::PutTemplate { info, offset, data } => vec![
                json!(info.name),
                json!(info.sha256),
                json!(info.size),
                json!(offset),
                json!(base64::engine::general_purpose::STANDARD.encode(data)),
            ],
        };
        Request {
            command: self.name().to_string(),
            arguments: args,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec() -> EnvSpec {
        EnvSpec {
            id: VeId::new(101).unwrap(),
            template: TemplateName::parse("debian-12-ssh_amd64").unwrap(),
            username: Username::parse("alice").unwrap(),
            ip: PrivateIp::parse("10.77.0.11").unwrap(),
            hostname: DnsName::parse("alice").unwrap(),
            nameservers: vec!["10.77.0.1".parse().unwrap()],
            search_domain: Some(DnsName::parse("example.edu").unwrap()),
            limits: Limits::default(),
            keys: vec![],
            root: true,
        }
    }

    #[test]
    fn an_older_agents_refusal_of_raw_reads_is_known() {
        // What agents before raw pieces answered to a fifth argument (their `arity`).
        let old = Reply::error(
            code::BAD_ARGUMENTS,
            "read_export: takes 4 argument(s) [id, sha256, offset, length], got 5",
        );
        assert!(refuses_raw_reads(&old));
        let req: Request =
            serde_json::from_str(r#"{"command":"read_export","arguments":[101,"x",0,10,"fast"]}"#)
                .unwrap();
        let now = Reply::from(Command::from_request(&req).unwrap_err());
        assert!(!refuses_raw_reads(&now), "{}", now.text());
        // A raw reply's wire form: the line says how many bytes follow, and they do.
        let r = Reply::piece(vec![7u8; 1000]);
        assert_eq!(r.raw_len(), Some(1000));
        let wire = r.to_wire();
        let end = wire.iter().position(|b| *b == b'\n').unwrap();
        let back: Reply = serde_json::from_slice(&wire[..end]).unwrap();
        assert_eq!(back.raw_len(), Some(1000));
        assert_eq!(&wire[end + 1..], &[7u8; 1000][..]);
        assert_eq!(Reply::ok(vec!["imported".into()]).raw_len(), None);
    }

    #[test]
    fn an_older_agents_refusal_of_raw_pieces_is_known() {
        // What agents before raw pieces answered to `{"bytes": N}` (their `piece()`).
        let old = Reply::error(
            code::BAD_ARGUMENTS,
            "import_home: argument 5 (data): a base64 string",
        );
        assert!(refuses_raw_pieces(&old));
        // Today's refusal of a bad size is not that: nothing is sent again.
        let req: Request = serde_json::from_str(
            r#"{"command":"import_home","arguments":[101,"x",1,0,{"bytes":"many"}]}"#,
        )
        .unwrap();
        let now = Reply::from(tail_len(&req).unwrap_err());
        assert!(!refuses_raw_pieces(&now), "{}", now.text());
        assert!(!refuses_raw_pieces(&Reply::ok(vec![
            "partial".into(),
            5.into()
        ])));
    }

    #[test]
    fn an_import_piece_goes_as_raw_bytes_after_its_line() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 256) as u8).collect();
        let cmd = Command::ImportHome {
            id: VeId::new(101).unwrap(),
            sha256: Sha256Hex::parse(&"ab".repeat(32)).unwrap(),
            size: 100_000,
            offset: 30_000,
            data: data.clone(),
        };
        let wire = cmd.to_wire();
        let end = wire.iter().position(|b| *b == b'\n').unwrap();
        assert!(end < 200, "the line is short: the data is not in it");
        assert_eq!(&wire[end + 1..], &data[..]);
        let head = Command::parse_head(&wire[..end]).unwrap();
        assert_eq!(head.tail, data.len());
        let Ok(Command::ImportHome {
            data: empty,
            offset,
            ..
        }) = head.command
        else {
            panic!("not an import");
        };
        assert!(empty.is_empty());
        assert_eq!(offset, 30_000);
        // parse_line refuses it: it cannot read the bytes.
        assert!(Command::parse_line(&wire[..end]).is_err());
        // Past the archive's size, or a size that is not a piece's: refused.
        let past = br#"{"command":"import_home","arguments":[101,"abababababababababababababababababababababababababababababababab",100,90,{"bytes":20}]}"#;
        let head = Command::parse_head(past).unwrap();
        assert_eq!(head.tail, 20, "still read off the wire");
        assert!(head.command.is_err());
        let huge = br#"{"command":"import_home","arguments":[101,"abababababababababababababababababababababababababababababababab",100,0,{"bytes":600000}]}"#;
        assert!(Command::parse_head(huge).is_err());
        // Other commands have no tail.
        let other = Command::StartEnv(VeId::new(101).unwrap()).to_wire();
        assert_eq!(other.last(), Some(&b'\n'));
        let head = Command::parse_head(&other[..other.len() - 1]).unwrap();
        assert_eq!(head.tail, 0);
    }

    #[test]
    fn every_command_round_trips() {
        let id = VeId::new(4242).unwrap();
        for c in [
            Command::Ping,
            Command::NodeInfo,
            Command::Retire,
            Command::CreateEnv(Box::new(spec())),
            Command::CreateEnvAsSeed {
                id,
                template: TemplateName::parse("demo").unwrap(),
                username: Username::parse("alice").unwrap(),
            },
            Command::SyncTemplatesAsSeed,
            Command::StartEnv(id),
            Command::StopEnv(id),
            Command::RestartEnv(id),
            Command::DestroyEnv(id),
            Command::EnvStatus(id),
            Command::ListEnvs,
            Command::SetLimits(id, Limits::default()),
            Command::SyncTemplates(vec![TemplateInfo {
                name: TemplateName::parse("t1").unwrap(),
                sha256: Sha256Hex::parse(&"ab".repeat(32)).unwrap(),
                size: 3,
            }]),
            Command::PutTemplate {
                info: TemplateInfo {
                    name: TemplateName::parse("t1").unwrap(),
                    sha256: Sha256Hex::parse(&"ab".repeat(32)).unwrap(),
                    size: 3,
                },
                offset: 0,
                data: vec![1, 2, 3],
            },
            Command::Usage(None),
            Command::Usage(Some(id)),
            Command::ExportHome(id),
            Command::ReadExport {
                id,
                sha256: Sha256Hex::parse(&"cd".repeat(32)).unwrap(),
                offset: 1 << 20,
                len: 512 * 1024,
                raw: false,
            },
            Command::ReadExport {
                id,
                sha256: Sha256Hex::parse(&"cd".repeat(32)).unwrap(),
                offset: 0,
                len: 10,
                raw: true,
            },
            Command::DropExport(id),
            Command::Snapshot(id, SnapshotName::parse("s20261203-221501").unwrap()),
            Command::ListSnapshots(id),
            Command::RestoreSnapshot(id, SnapshotName::parse("before-lab-3").unwrap()),
            Command::DropSnapshot(id, SnapshotName::parse("x").unwrap()),
            Command::ImportHome {
                id,
                sha256: Sha256Hex::parse(&"ef".repeat(32)).unwrap(),
                size: 10,
                offset: 7,
                data: vec![1, 2, 3],
            },
        ] {
            let line = c.to_line();
            assert_eq!(
                serde_json::from_slice::<Request>(&line).unwrap(),
                c.to_request(),
                "to_line writes what to_request says"
            );
            assert_eq!(
                Command::parse_line(&line).unwrap(),
                c,
                "{}",
                String::from_utf8_lossy(&line)
            );
        }
    }

    #[test]
    fn a_piece_in_a_reply_is_written_as_serde_would() {
        use base64::Engine as _;
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        for r in [
            Reply::ok(vec![json!(
                base64::engine::general_purpose::STANDARD.encode(&data)
            )]),
            Reply::ok(vec![json!("x\"y".repeat(3000))]),
            Reply::error(code::CONFLICT, "no"),
        ] {
            assert_eq!(serde_json::from_slice::<Reply>(&r.to_line()).unwrap(), r);
        }
    }

    #[test]
    fn refusals_say_why() {
        let r = Command::parse_line(b"{\"command\":\"exec\",\"arguments\":[\"rm -rf /\"]}")
            .unwrap_err();
        assert_eq!(r.code, code::UNKNOWN_COMMAND);
        let r = Command::parse_line(b"not json").unwrap_err();
        assert_eq!(r.code, code::MALFORMED);
        let r = Command::parse_line(b"{\"command\":\"start_env\",\"arguments\":[\"101; reboot\"]}")
            .unwrap_err();
        assert_eq!(r.code, code::BAD_ARGUMENTS);
        assert!(r.message.contains("argument 1 (id)"), "{}", r.message);
        let r = Command::parse_line(b"{\"command\":\"start_env\",\"arguments\":[]}").unwrap_err();
        assert!(r.message.contains("takes 1 argument"), "{}", r.message);
        let mut req = Command::CreateEnv(Box::new(spec())).to_request();
        req.arguments[1] = json!("../../etc/passwd");
        let r = Command::from_request(&req).unwrap_err();
        assert!(r.message.contains("template"), "{}", r.message);
        let mut req = Command::CreateEnv(Box::new(spec())).to_request();
        req.arguments[3]["extra"] = json!("x");
        assert!(
            Command::from_request(&req).is_err(),
            "unknown option keys are refused"
        );
        // The seed's forms are read as the seed wrote them; other counts are refused.
        let seed = Command::parse_line(
            br#"{"command": "create_env", "arguments": [101, "demo", "alice"]}"#,
        )
        .unwrap();
        assert!(matches!(seed, Command::CreateEnvAsSeed { .. }), "{seed:?}");
        let r = Command::parse_line(br#"{"command": "create_env", "arguments": [101, "demo"]}"#)
            .unwrap_err();
        assert!(r.message.contains("the seed's 3"), "{}", r.message);
        let r = Command::parse_line(
            br#"{"command": "create_env", "arguments": [101, "demo", "../root"]}"#,
        )
        .unwrap_err();
        assert!(r.message.contains("username"), "{}", r.message);
        assert_eq!(
            Command::parse_line(br#"{"command": "sync_templates", "arguments": []}"#).unwrap(),
            Command::SyncTemplatesAsSeed
        );
        // Archives: a piece too long to read, a hash that is not one, data past the end.
        let sha = "ab".repeat(32);
        let r = Command::parse_line(
            format!(r#"{{"command": "read_export", "arguments": [101, "{sha}", 0, 1048576]}}"#)
                .as_bytes(),
        )
        .unwrap_err();
        assert!(r.message.contains("512 KiB"), "{}", r.message);
        let r = Command::parse_line(
            br#"{"command": "read_export", "arguments": [101, "../../etc/shadow", 0, 10]}"#,
        )
        .unwrap_err();
        assert!(r.message.contains("sha256"), "{}", r.message);
        let r = Command::parse_line(
            format!(r#"{{"command": "import_home", "arguments": [101, "{sha}", 2, 0, "AAAA"]}}"#)
                .as_bytes(),
        )
        .unwrap_err();
        assert!(r.message.contains("past the file's size"), "{}", r.message);
    }
}
