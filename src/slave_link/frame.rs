//! Framing: one JSON object per line, with a size limit.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

/// The default largest line, in bytes.
pub const MAX_LINE: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("message longer than {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one line (without its `\n`). `Ok(None)` at a clean end of stream. A line longer than
/// `max` is an error and the rest of the stream is not to be trusted.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Option<()>, FrameError> {
    buf.clear();
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into())
            };
        }
        match memchr::memchr(b'\n', available) {
            Some(i) => {
                if buf.len() + i > max {
                    return Err(FrameError::TooLarge(max));
                }
                buf.extend_from_slice(&available[..i]);
                r.consume(i + 1);
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                return Ok(Some(()));
            }
            None => {
                let n = available.len();
                if buf.len() + n > max {
                    return Err(FrameError::TooLarge(max));
                }
                buf.extend_from_slice(available);
                r.consume(n);
            }
        }
    }
}

/// Writes one value as a line and flushes.
pub async fn write_line<W: AsyncWrite + Unpin, T: serde::Serialize>(
    w: &mut W,
    value: &T,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    w.write_all(&bytes).await?;
    w.flush().await
}
