//! The master's side of the link: one kept connection to an agent, requests in turn.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::frame::{read_line, write_line, FrameError, MAX_LINE};
use super::protocol::{Command, Reply, Request};
use crate::domain::NodeName;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect to {address}: {message}")]
    Connect { address: String, message: String },
    #[error("TLS with {node} failed: {message}")]
    Tls { node: String, message: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the agent closed the connection")]
    Closed,
    #[error("the agent's answer is not a reply: {0}")]
    BadReply(String),
    #[error("link: {0}")]
    Io(#[from] std::io::Error),
}

impl From<FrameError> for LinkError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge(n) => LinkError::BadReply(format!("reply longer than {n} bytes")),
            FrameError::Io(e) => LinkError::Io(e),
        }
    }
}

/// A connection to one agent.
pub struct AgentClient {
    stream: BufReader<TlsStream<TcpStream>>,
    timeout: Duration,
    buf: Vec<u8>,
    /// The hex SHA-256 of the certificate the agent presented.
    peer: String,
}

impl AgentClient {
    /// Connects to `address` and checks that the certificate there names `node`.
    pub async fn connect(
        address: &str,
        node: &NodeName,
        tls: Arc<rustls::ClientConfig>,
        timeout: Duration,
    ) -> Result<AgentClient, LinkError> {
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| LinkError::Timeout(timeout))?
            .map_err(|e| LinkError::Connect {
                address: address.to_string(),
                message: e.to_string(),
            })?;
        tcp.set_nodelay(true)?;
        let name = super::pki::server_name(node).map_err(|e| LinkError::Tls {
            node: node.to_string(),
            message: e.to_string(),
        })?;
        let stream = tokio::time::timeout(timeout, TlsConnector::from(tls).connect(name, tcp))
            .await
            .map_err(|_| LinkError::Timeout(timeout))?
            .map_err(|e| {
                use std::io::ErrorKind as K;
                // Closed before a word of TLS: the agent is turning new connections away (a
                // flood at its port), not failing to prove who it is: it does not answer.
                if [K::UnexpectedEof, K::ConnectionReset, K::BrokenPipe].contains(&e.kind()) {
                    LinkError::Connect {
                        address: address.to_string(),
                        message: format!("closed during the TLS handshake ({e})"),
                    }
                } else {
                    LinkError::Tls {
                        node: node.to_string(),
                        message: e.to_string(),
                    }
                }
            })?;
        let peer = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| super::pki::fingerprint_der(c.as_ref()))
            .unwrap_or_default();
        Ok(AgentClient {
            stream: BufReader::with_capacity(64 * 1024, stream),
            timeout,
            buf: Vec::with_capacity(1024),
            peer,
        })
    }

    /// The hex SHA-256 of the certificate the agent presented.
    pub fn peer_fingerprint(&self) -> &str {
        &self.peer
    }

    /// Refuses an agent whose certificate is not the one pinned for its node (when one is).
    pub fn check_pin(self, node: &str, pinned: Option<&str>) -> Result<AgentClient, LinkError> {
        match pinned {
            Some(p) if p != self.peer => Err(LinkError::Tls {
                node: node.to_string(),
                message: format!(
                    "the agent presents a certificate other than the one this node was enrolled \
                     with (SHA-256 {} instead of {p}): refused. If the node was enrolled again, \
                     install its new bundle",
                    self.peer
                ),
            }),
            _ => Ok(self),
        }
    }

    /// Sends a command and waits for its reply.
    pub async fn call(&mut self, command: &Command) -> Result<Reply, LinkError> {
        self.send(command).await?;
        self.read_reply(self.timeout).await
    }

    /// Sends a command without waiting for its reply: several may be in flight on one
    /// connection (the agent answers them in order); `receive` takes the replies.
    pub async fn send(&mut self, command: &Command) -> Result<(), LinkError> {
        let wire = command.to_wire();
        let s = self.stream.get_mut();
        s.write_all(&wire).await?;
        Ok(s.flush().await?)
    }

    /// Sends a command as one JSON line, bulk data in base64 (for agents older than raw
    /// pieces after the line).
    pub async fn send_json(&mut self, command: &Command) -> Result<(), LinkError> {
        let mut line = command.to_line();
        line.push(b'\n');
        let s = self.stream.get_mut();
        s.write_all(&line).await?;
        Ok(s.flush().await?)
    }

    /// The reply to the oldest command sent and not yet answered.
    pub async fn receive(&mut self) -> Result<Reply, LinkError> {
        self.read_reply(self.timeout).await
    }

    /// Sends any request (tests use this to send what a typed command cannot).
    pub async fn call_raw(&mut self, request: &Request) -> Result<Reply, LinkError> {
        write_line(self.stream.get_mut(), request).await?;
        self.read_reply(self.timeout).await
    }

    /// Sends raw bytes as one line (for tests of malformed input).
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<Reply, LinkError> {
        use tokio::io::AsyncWriteExt;
        let s = self.stream.get_mut();
        s.write_all(bytes).await?;
        s.write_all(b"\n").await?;
        s.flush().await?;
        self.read_reply(self.timeout).await
    }

    /// A reply may take as long as a command's own time limit on the agent; `timeout` is how
    /// long to wait.
    async fn read_reply(&mut self, timeout: Duration) -> Result<Reply, LinkError> {
        let got = tokio::time::timeout(
            timeout,
            read_line(&mut self.stream, &mut self.buf, MAX_LINE),
        )
        .await
        .map_err(|_| LinkError::Timeout(timeout))??;
        if got.is_none() {
            return Err(LinkError::Closed);
        }
        let mut reply: Reply =
            serde_json::from_slice(&self.buf).map_err(|e| LinkError::BadReply(e.to_string()))?;
        // A piece read raw: its bytes follow the line.
        if let Some(n) = reply.raw_len() {
            use tokio::io::AsyncReadExt;
            let mut raw = vec![0u8; n];
            tokio::time::timeout(timeout, self.stream.read_exact(&mut raw))
                .await
                .map_err(|_| LinkError::Timeout(timeout))??;
            reply.raw = Some(raw);
        }
        Ok(reply)
    }
}
