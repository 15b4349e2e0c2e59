//! Values that reach a slave host: container ids, template names, host names, addresses,
//! limits and SSH keys. Each is checked so that it can be put on a command line or into a file
//! on the host as it is.

use std::fmt;
use std::net::Ipv4Addr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize};

use super::FieldError;

/// A container id, as OpenVZ numbers them: 101 and up (0 to 100 are reserved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct VeId(u32);

impl VeId {
    pub const MIN: u32 = 101;
    pub const MAX: u32 = 999_999_999;

    pub fn new(n: u64) -> Result<VeId, FieldError> {
        if (Self::MIN as u64..=Self::MAX as u64).contains(&n) {
            Ok(VeId(n as u32))
        } else {
            Err(FieldError::new(
                "id",
                format!(
                    "A container id is a whole number from {} to {}.",
                    Self::MIN,
                    Self::MAX
                ),
            ))
        }
    }

    pub fn parse(s: &str) -> Result<VeId, FieldError> {
        let n: u64 = s
            .trim()
            .parse()
            .map_err(|_| FieldError::new("id", "A container id is a whole number."))?;
        VeId::new(n)
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for VeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        VeId::new(n).map_err(|e| serde::de::Error::custom(e.message))
    }
}

impl fmt::Display for VeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An OS template's name: the file `NAME.tar.gz` in the template folder. Lowercase letters,
/// digits, `.`, `_`, `-`; starts with a letter or digit; no `..`; at most 100 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateName(String);

impl TemplateName {
    pub fn parse(s: &str) -> Result<TemplateName, FieldError> {
        let ok = !s.is_empty()
            && s.len() <= 100
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            })
            && !s.contains("..")
            && !s.ends_with(".tar.gz");
        if ok {
            Ok(TemplateName(s.to_string()))
        } else {
            Err(FieldError::new(
                "template",
                "A template name has lowercase letters, digits, `.`, `_` and `-` (such as debian-12-ssh_amd64).",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The file name in the template folder.
    pub fn file_name(&self) -> String {
        format!("{}.tar.gz", self.0)
    }
}

impl fmt::Display for TemplateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
super::via_string!(TemplateName);

/// A snapshot's name: 1 to 40 lowercase letters, digits and `-`, starting with a letter or
/// digit (the master names them by the time they were asked for: `s20261203-221501`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotName(String);

impl SnapshotName {
    pub fn parse(s: &str) -> Result<SnapshotName, FieldError> {
        let ok = !s.is_empty()
            && s.len() <= 40
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(SnapshotName(s.to_string()))
        } else {
            Err(FieldError::new(
                "snapshot",
                "A snapshot's name has 1 to 40 lowercase letters, digits and `-`.",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
super::via_string!(SnapshotName);

/// A DNS name (a host name or a search domain): labels of 1 to 63 lowercase letters, digits
/// and `-`, not starting or ending with `-`, 253 characters at most.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnsName(String);

impl DnsName {
    pub fn parse(s: &str) -> Result<DnsName, FieldError> {
        let ok = !s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            });
        if ok {
            Ok(DnsName(s.to_string()))
        } else {
            Err(FieldError::new(
                "hostname",
                "A host or domain name has lowercase letters, digits and `-`, in parts separated by dots.",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for a single label (a plain host name, no dots).
    pub fn is_single_label(&self) -> bool {
        !self.0.contains('.')
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
super::via_string!(DnsName);

/// An IPv4 network such as `10.77.0.0/24`, written with its first address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    pub fn parse(s: &str) -> Result<Subnet, FieldError> {
        let bad = || {
            FieldError::new(
                "subnet",
                "A subnet is written like 10.77.0.0/24 (prefix 8 to 30).",
            )
        };
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix);
        if u32::from(addr) & !mask != 0 {
            return Err(FieldError::new(
                "subnet",
                format!(
                    "{addr}/{prefix} has host bits set; the network is {}/{prefix}.",
                    Ipv4Addr::from(u32::from(addr) & mask)
                ),
            ));
        }
        if !addr.is_private() {
            return Err(FieldError::new(
                "subnet",
                "A slice subnet must be a private range (10/8, 172.16/12, 192.168/16).",
            ));
        }
        Ok(Subnet {
            network: addr,
            prefix,
        })
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - self.prefix)
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The host side of the bridge: the first address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !self.mask())
    }

    /// Whether two networks share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// The networks of `prefix` inside this one, in order (none when `prefix` is shorter).
    pub fn split(&self, prefix: u8) -> impl Iterator<Item = Subnet> + '_ {
        let step = if (self.prefix..=30).contains(&prefix) {
            1u64 << (32 - prefix)
        } else {
            0
        };
        let count = if step == 0 {
            0
        } else {
            1u64 << (prefix - self.prefix)
        };
        (0..count).map(move |i| Subnet {
            network: Ipv4Addr::from((u32::from(self.network) as u64 + i * step) as u32),
            prefix,
        })
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }

    /// True when `ip` may be given to a slice: inside, and not the network, gateway or
    /// broadcast address.
    pub fn is_assignable(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.network && ip != self.gateway() && ip != self.broadcast()
    }

    /// Every address that may be given to a slice, in order.
    pub fn assignable(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.gateway()) + 1;
        let last = u32::from(self.broadcast()) - 1;
        (first..=last).map(Ipv4Addr::from)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}
super::via_string!(Subnet);

/// A private IPv4 address for a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrivateIp(Ipv4Addr);

impl PrivateIp {
    pub fn parse(s: &str) -> Result<PrivateIp, FieldError> {
        let ip: Ipv4Addr = s
            .trim()
            .parse()
            .map_err(|_| FieldError::new("ip", "An address is written like 10.77.0.11."))?;
        PrivateIp::new(ip)
    }

    pub fn new(ip: Ipv4Addr) -> Result<PrivateIp, FieldError> {
        if ip.is_private() {
            Ok(PrivateIp(ip))
        } else {
            Err(FieldError::new(
                "ip",
                format!("{ip} is not a private address."),
            ))
        }
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.0
    }
}

impl fmt::Display for PrivateIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
super::via_string!(PrivateIp);

/// A slice's resource plan as the host enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory the slice is guaranteed to be able to use (the soft limit; OpenVZ's barrier).
    pub memory_mb: u32,
    /// Memory it can never exceed (the hard limit; OpenVZ's limit).
    pub memory_limit_mb: u32,
    /// Processes and threads.
    pub processes: u32,
    /// Disk space; 0 means the node's default ([`Limits::DEFAULT_DISK_MB`]).
    pub disk_mb: u32,
    /// CPU weight relative to other slices (cgroup cpu.shares; OpenVZ cpuunits).
    pub cpu_shares: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: 256,
            memory_limit_mb: 512,
            processes: 240,
            disk_mb: 0,
            cpu_shares: 1024,
        }
    }
}

impl Limits {
    /// The disk a slice gets when its plan leaves it at 0: every slice's disk is a hard limit
    /// (an image needs a size), so "not set" is this, not "unlimited".
    pub const DEFAULT_DISK_MB: u32 = 10 * 1024;

    /// The disk the slice's node enforces, in MB.
    pub fn disk_limit_mb(&self) -> u32 {
        if self.disk_mb == 0 {
            Self::DEFAULT_DISK_MB
        } else {
            self.disk_mb
        }
    }

    pub fn check(self) -> Result<Limits, FieldError> {
        let bad = |m: &str| Err(FieldError::new("limits", m));
        if !(16..=1_048_576).contains(&self.memory_mb) {
            return bad("memory_mb is from 16 to 1048576.");
        }
        if self.memory_limit_mb < self.memory_mb || self.memory_limit_mb > 1_048_576 {
            return bad("memory_limit_mb is at least memory_mb and at most 1048576.");
        }
        if !(8..=1_000_000).contains(&self.processes) {
            return bad("processes is from 8 to 1000000.");
        }
        if self.disk_mb != 0 && !(64..=16_777_216).contains(&self.disk_mb) {
            return bad("disk_mb is 0 (the node's default) or from 64 to 16777216.");
        }
        if !(2..=262_144).contains(&self.cpu_shares) {
            return bad("cpu_shares is from 2 to 262144.");
        }
        Ok(self)
    }
}

/// An SSH public key line (`TYPE BASE64 [COMMENT]`), checked so that it is exactly one line
/// of an `authorized_keys` file and nothing more (no options, no second key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SshPublicKey {
    kind: String,
    blob: String,
    comment: String,
}

const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

impl SshPublicKey {
    pub fn parse(s: &str) -> Result<SshPublicKey, FieldError> {
        let err = |m: &str| FieldError::new("key", m);
        let s = s.trim();
        if s.contains("PRIVATE KEY") {
            return Err(err(
                "That is a private key: keep it secret, and paste the public one (the .pub file) instead.",
            ));
        }
        if s.len() > 16_384 || s.chars().any(|c| c.is_control()) {
            return Err(err(
                "A public key is one line, such as `ssh-ed25519 AAAA... you@laptop`.",
            ));
        }
        let mut parts = s.splitn(3, ' ');
        let kind = parts.next().unwrap_or("");
        let blob = parts.next().unwrap_or("").trim();
        let comment = parts.next().unwrap_or("").trim();
        if !KEY_TYPES.contains(&kind) {
            return Err(err(
                "That is not an SSH public key: it should start with ssh-ed25519, ssh-rsa or ecdsa-sha2-... (paste the .pub file).",
            ));
        }
        let bytes = STANDARD.decode(blob).map_err(|_| {
            err("The key's middle part is not valid base64; paste the whole line of the .pub file.")
        })?;
        // The blob starts with the key type again, as a length-prefixed string.
        let inner = bytes
            .get(..4)
            .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
            .and_then(|n| bytes.get(4..4 + n))
            .ok_or_else(|| err("The key data is cut short."))?;
        if inner != kind.as_bytes() || bytes.len() < 4 + kind.len() + 16 {
            return Err(err("The key data does not match its type."));
        }
        if comment.len() > 200 || !comment.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            return Err(err(
                "A key comment is plain text of at most 200 characters.",
            ));
        }
        Ok(SshPublicKey {
            kind: kind.to_string(),
            blob: blob.to_string(),
            comment: comment.to_string(),
        })
    }

    /// The SHA256 fingerprint, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let bytes = STANDARD.decode(&self.blob).unwrap_or_default();
        let digest = Sha256::digest(bytes);
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        )
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub fn comment(&self) -> &str {
        &self.comment
    }
}

impl fmt::Display for SshPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.comment.is_empty() {
            write!(f, "{} {}", self.kind, self.blob)
        } else {
            write!(f, "{} {} {}", self.kind, self.blob, self.comment)
        }
    }
}
super::via_string!(SshPublicKey);

/// Where a node's agent listens: `HOST:PORT`, the host a DNS name or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddress(String);

impl NodeAddress {
    pub fn parse(s: &str) -> Result<NodeAddress, FieldError> {
        let bad = || {
            FieldError::new(
                "address",
                "An agent address is HOST:PORT, such as node1.example.edu:7070 or 10.0.0.5:7070.",
            )
        };
        let s = s.trim();
        if s.parse::<std::net::SocketAddr>().is_ok() {
            return Ok(NodeAddress(s.to_string()));
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if port == 0 || DnsName::parse(host).is_err() {
            return Err(bad());
        }
        Ok(NodeAddress(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
super::via_string!(NodeAddress);

/// A node's name: one DNS label (it is also the name in the agent's certificate).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName(String);

impl NodeName {
    pub fn parse(s: &str) -> Result<NodeName, FieldError> {
        match DnsName::parse(s) {
            Ok(n) if n.is_single_label() && n.as_str().starts_with(|c: char| c.is_ascii_lowercase()) => {
                Ok(NodeName(s.to_string()))
            }
            _ => Err(FieldError::new(
                "name",
                "A node name is one word of lowercase letters, digits and `-`, starting with a letter (such as node1).",
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
super::via_string!(NodeName);

/// One resource's counters, in the shape of a line of `/proc/user_beancounters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Counter {
    pub resource: String,
    pub held: u64,
    pub maxheld: u64,
    pub barrier: u64,
    pub limit: u64,
    pub failcnt: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_overlap_and_split() {
        let a = Subnet::parse("10.77.0.0/16").unwrap();
        let b = Subnet::parse("10.77.3.0/24").unwrap();
        let c = Subnet::parse("10.78.0.0/24").unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        let parts: Vec<String> = a.split(24).take(3).map(|s| s.to_string()).collect();
        assert_eq!(parts, ["10.77.0.0/24", "10.77.1.0/24", "10.77.2.0/24"]);
        assert_eq!(a.split(24).count(), 256);
        assert_eq!(b.split(16).count(), 0, "a larger network does not fit");
    }

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKzC7OGd0Cq6HbB1cBdC4ktTXv4F0iYc1Hj2lqR8Dw8m alice@laptop";

    #[test]
    fn ids() {
        assert!(VeId::new(101).is_ok());
        assert!(VeId::new(100).is_err());
        assert!(VeId::new(1_000_000_000).is_err());
        assert!(VeId::parse("101; rm").is_err());
        assert!(serde_json::from_str::<VeId>("-5").is_err());
        assert!(serde_json::from_str::<VeId>("\"101\"").is_err());
    }

    #[test]
    fn templates() {
        assert!(TemplateName::parse("debian-12-ssh_amd64").is_ok());
        for bad in [
            "", "../etc", "a/b", "A", "x.tar.gz", "a b", "-x", "a\0", "$(id)",
        ] {
            assert!(TemplateName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_and_subnets() {
        assert!(DnsName::parse("cs.example.edu").is_ok());
        assert!(DnsName::parse("a..b").is_err());
        assert!(DnsName::parse("-a").is_err());
        assert!(NodeName::parse("node1").is_ok());
        assert!(NodeName::parse("node1.x").is_err());
        let s = Subnet::parse("10.77.0.0/24").unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 77, 0, 1));
        assert!(s.is_assignable(Ipv4Addr::new(10, 77, 0, 2)));
        assert!(!s.is_assignable(Ipv4Addr::new(10, 77, 0, 255)));
        assert!(!s.is_assignable(Ipv4Addr::new(10, 77, 1, 2)));
        assert_eq!(s.assignable().count(), 253);
        assert!(Subnet::parse("10.77.0.1/24").is_err());
        assert!(Subnet::parse("8.8.8.0/24").is_err());
        assert!(PrivateIp::parse("8.8.8.8").is_err());
    }

    #[test]
    fn keys() {
        let k = SshPublicKey::parse(ED).unwrap();
        assert_eq!(k.to_string(), ED);
        assert!(k.fingerprint().starts_with("SHA256:"));
        assert!(SshPublicKey::parse(&format!("{ED}\nssh-rsa AAAA")).is_err());
        assert!(SshPublicKey::parse(&format!("command=\"id\" {ED}")).is_err());
        assert!(SshPublicKey::parse("ssh-ed25519 notbase64!!").is_err());
        assert!(SshPublicKey::parse(
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIKzC7OGd0Cq6HbB1cBdC4ktTXv4F0iYc1Hj2lqR8Dw8m"
        )
        .is_err());
    }

    #[test]
    fn limits() {
        assert!(Limits::default().check().is_ok());
        let l = Limits {
            memory_limit_mb: 100,
            ..Limits::default()
        };
        assert!(l.check().is_err());
        assert!(serde_json::from_str::<Limits>(r#"{"memory_mb":1}"#).is_err());
    }
}
