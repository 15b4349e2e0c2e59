//! One session channel passed through: the student's channel and the slice's, data both ways,
//! end of data, exit status and signals back, and the slice's answers to the requests the
//! handler forwarded (in order) handed to it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::sync::oneshot;

/// Requests forwarded to the slice that wait for its answer, oldest first.
pub type Replies = Arc<Mutex<VecDeque<oneshot::Sender<bool>>>>;

/// Bytes from the student to the slice, and back.
#[derive(Default)]
pub struct Counters {
    pub up: AtomicU64,
    pub down: AtomicU64,
}

/// Runs until both sides are closed.
pub async fn run(
    student: (ChannelReadHalf, ChannelWriteHalf<russh::server::Msg>),
    handle: russh::server::Handle,
    mut slice_read: ChannelReadHalf,
    slice_write: Arc<ChannelWriteHalf<russh::client::Msg>>,
    replies: Replies,
    counters: Arc<Counters>,
) {
    let (mut student_read, student_write) = student;
    let id = student_write.id();
    let up = {
        let slice_write = slice_write.clone();
        let counters = counters.clone();
        async move {
            while let Some(msg) = student_read.wait().await {
                let sent = match msg {
                    ChannelMsg::Data { data } => {
                        counters.up.fetch_add(data.len() as u64, Ordering::Relaxed);
                        slice_write.data_bytes(data).await
                    }
                    ChannelMsg::ExtendedData { data, ext } => {
                        counters.up.fetch_add(data.len() as u64, Ordering::Relaxed);
                        slice_write.extended_data_bytes(ext, data).await
                    }
                    ChannelMsg::Eof => slice_write.eof().await,
                    ChannelMsg::Close => break,
                    // Requests are the handler's (it answers them in order).
                    _ => Ok(()),
                };
                if sent.is_err() {
                    break;
                }
            }
            let _ = slice_write.close().await;
        }
    };
    let down = async move {
        while let Some(msg) = slice_read.wait().await {
            let sent = match msg {
                ChannelMsg::Data { data } => {
                    counters
                        .down
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    student_write.data_bytes(data).await
                }
                ChannelMsg::ExtendedData { data, ext } => {
                    counters
                        .down
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    student_write.extended_data_bytes(ext, data).await
                }
                ChannelMsg::Eof => student_write.eof().await,
                ChannelMsg::ExitStatus { exit_status } => {
                    student_write.exit_status(exit_status).await
                }
                ChannelMsg::ExitSignal {
                    signal_name,
                    core_dumped,
                    error_message,
                    lang_tag,
                } => handle
                    .exit_signal_request(id, signal_name, core_dumped, error_message, lang_tag)
                    .await
                    .map_err(|_| russh::Error::SendError),
                ChannelMsg::Success | ChannelMsg::Failure => {
                    let waiting = replies.lock().ok().and_then(|mut q| q.pop_front());
                    if let Some(w) = waiting {
                        let _ = w.send(matches!(msg, ChannelMsg::Success));
                    }
                    Ok(())
                }
                ChannelMsg::Close => break,
                _ => Ok(()),
            };
            if sent.is_err() {
                break;
            }
        }
        // Whoever still waits for an answer gets a refusal.
        if let Ok(mut q) = replies.lock() {
            for w in q.drain(..) {
                let _ = w.send(false);
            }
        }
        let _ = student_write.close().await;
    };
    tokio::join!(up, down);
}
