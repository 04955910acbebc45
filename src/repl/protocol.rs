//! The pipe between the server and a REPL child: frames of a 4-byte big-endian length and
//! a JSON message. The parent drives; the child answers, and while it runs a block it may
//! ask the parent to make model calls (`HostCall`), each answered by one `HostReply`.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::contexts::ContextFormat;

/// The child refuses frames above this size from the server (a session's history is the
/// largest). The server bounds what it reads from the child far lower.
pub const MAX_FRAME_BYTES: usize = 1 << 30;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToChild {
    /// Build a fresh namespace around the context and load the run's tools. The context
    /// is a read-only file, read as `context`: its descriptor comes first, on the
    /// descriptor channel (it may be gigabytes: it never crosses the pipe).
    Init {
        tools: Vec<ToolSource>,
        context: ContextFormat,
    },
    Exec {
        code: String,
        output_chars: usize,
    },
    HostReply {
        ok: bool,
        value: serde_json::Value,
    },
    /// Sets a variable of the namespace (`history`, `history_N`). The next frame is its
    /// value, as raw JSON.
    SetVar {
        name: String,
    },
    /// Sets each of `names` (a session's `context` and `context_N`) to a context, given as
    /// for `Init`. Answered by `VarSet`.
    SetContext {
        names: Vec<String>,
        format: ContextFormat,
    },
    /// The value of a variable, as text (for `FINAL_VAR(name)` written in a reply).
    Resolve {
        name: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromChild {
    Ready {
        python: String,
    },
    /// The namespace is ready; `tool_errors` says which tools failed to load.
    Initialized {
        tool_errors: Vec<String>,
    },
    HostCall {
        call: HostCall,
    },
    ExecDone(ExecOutcome),
    Resolved {
        value: Option<String>,
        /// The value's JSON, when it is not a str.
        #[serde(default)]
        json: Option<String>,
    },
    VarSet,
    /// What the running block printed since the last such message (live progress).
    Output {
        stream: String,
        text: String,
    },
    /// The namespace could not be built (the context does not load).
    Failed {
        error: String,
    },
}

impl FromChild {
    /// The message's type, for errors (the message itself may be huge).
    pub fn kind(&self) -> &'static str {
        match self {
            FromChild::Ready { .. } => "ready",
            FromChild::Initialized { .. } => "initialized",
            FromChild::HostCall { .. } => "host_call",
            FromChild::ExecDone(_) => "exec_done",
            FromChild::Resolved { .. } => "resolved",
            FromChild::VarSet => "var_set",
            FromChild::Output { .. } => "output",
            FromChild::Failed { .. } => "failed",
        }
    }
}

/// A tool to define in the namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSource {
    pub name: String,
    pub source: String,
}

/// A request from code in the REPL: a model call, a child run, or news of its draft answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fn", rename_all = "snake_case")]
pub enum HostCall {
    LlmQuery {
        prompt: String,
        model: Option<String>,
    },
    LlmQueryBatched {
        prompts: Vec<String>,
        model: Option<String>,
    },
    RlmQuery {
        prompt: String,
        model: Option<String>,
        /// The child's answer schema (`rlm_query(prompt, schema=...)`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<serde_json::Value>,
    },
    RlmQueryBatched {
        prompts: Vec<String>,
        model: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<serde_json::Value>,
    },
    /// The code set `answer["content"]`: the run's partial answer should a limit stop it
    /// in the middle of the block.
    Draft { content: String },
}

/// What one block did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecOutcome {
    pub stdout: String,
    pub stderr: String,
    /// `ExcType: message` when the block raised.
    pub error: Option<String>,
    /// The submitted answer, once `answer["ready"]` is true (or `FINAL` was called).
    pub answer: Option<String>,
    /// `answer["content"]` when not empty, submitted or not: the run's partial answer if a
    /// limit stops it.
    #[serde(default)]
    pub draft: Option<String>,
    /// The submitted answer as JSON, when the code gave a value that is not a str (a
    /// typed answer's dict, list, number, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_json: Option<String>,
}

pub fn write_frame_sync(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    w.write_all(&(payload.len() as u32).to_be_bytes())?;
    w.write_all(payload)?;
    w.flush()
}

pub fn read_frame_sync(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = checked_len(len, MAX_FRAME_BYTES)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(payload)
}

pub async fn write_frame(w: &mut (impl AsyncWrite + Unpin), payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(payload).await?;
    w.flush().await
}

/// Reads the frames of one stream. Waiting for a frame can be given up (in a `select!`)
/// without losing bytes: what has arrived stays here for the next call.
pub struct FrameReader<R> {
    inner: R,
    pending: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            pending: Vec::new(),
        }
    }

    /// The next frame of at most `max` bytes; a larger one is `InvalidData`, refused
    /// before anything is allocated for it.
    pub async fn next(&mut self, max: usize) -> io::Result<Vec<u8>> {
        loop {
            let wanted = match self.pending.first_chunk::<4>() {
                Some(&len) => {
                    let frame_end = 4 + checked_len(len, max)?;
                    if self.pending.len() >= frame_end {
                        // The buffer itself goes out with the frame (no copy), so a large
                        // frame's room is not kept for the life of the REPL.
                        let rest = self.pending.split_off(frame_end);
                        let mut frame = std::mem::replace(&mut self.pending, rest);
                        frame.drain(..4);
                        return Ok(frame);
                    }
                    frame_end - self.pending.len()
                }
                None => 4,
            };
            self.pending.reserve(wanted.max(4096));
            // Cancel-safe: a read abandoned before it completes has read nothing.
            if self.inner.read_buf(&mut self.pending).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

fn checked_len(len: [u8; 4], max: usize) -> io::Result<usize> {
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a message of {len} bytes, over the limit of {max} (RLM_REPL_MAX_MESSAGE_MB)"),
        ));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        write_frame_sync(&mut buf, br#"{"type":"initialized","tool_errors":[]}"#).unwrap();
        let payload = read_frame_sync(&mut buf.as_slice()).unwrap();
        let msg: FromChild = serde_json::from_slice(&payload).unwrap();
        assert!(matches!(msg, FromChild::Initialized { tool_errors } if tool_errors.is_empty()));
    }

    #[tokio::test]
    async fn frames_split_anywhere_and_a_given_up_read_lose_nothing() {
        let mut wire = Vec::new();
        for payload in [&b"first"[..], b"", &[7u8; 5000]] {
            write_frame_sync(&mut wire, payload).unwrap();
        }
        let (mut writer, reader) = tokio::io::duplex(1 << 16);
        let mut frames = FrameReader::new(reader);
        // A wait given up mid-frame (3 bytes of the first length have come) must not eat
        // what it had begun to read.
        writer.write_all(&wire[..3]).await.unwrap();
        let given_up =
            tokio::time::timeout(std::time::Duration::ZERO, frames.next(MAX_FRAME_BYTES)).await;
        assert!(given_up.is_err());
        writer.write_all(&wire[3..7]).await.unwrap();
        let given_up =
            tokio::time::timeout(std::time::Duration::ZERO, frames.next(MAX_FRAME_BYTES)).await;
        assert!(given_up.is_err());
        writer.write_all(&wire[7..]).await.unwrap();
        drop(writer);
        assert_eq!(frames.next(MAX_FRAME_BYTES).await.unwrap(), b"first");
        assert_eq!(frames.next(MAX_FRAME_BYTES).await.unwrap(), b"");
        assert_eq!(frames.next(MAX_FRAME_BYTES).await.unwrap(), vec![7u8; 5000]);
        let end = frames.next(10).await;
        assert_eq!(end.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused() {
        let mut wire = Vec::new();
        write_frame_sync(&mut wire, &[1u8; 100]).unwrap();
        let mut frames = FrameReader::new(wire.as_slice());
        let refused = frames.next(99).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn host_calls_have_a_stable_wire_shape() {
        let call: HostCall =
            serde_json::from_str(r#"{"fn":"llm_query_batched","prompts":["a","b"],"model":null}"#)
                .unwrap();
        assert_eq!(
            call,
            HostCall::LlmQueryBatched {
                prompts: vec!["a".into(), "b".into()],
                model: None
            }
        );
    }
}
