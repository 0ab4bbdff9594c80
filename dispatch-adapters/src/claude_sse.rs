//! Incremental decoder for the Messages API's server-sent events (`stream: true`).
//!
//! Bytes arrive in arbitrary chunks; [`SseDecoder::push`] buffers partial lines, accepts LF and
//! CRLF line endings, and yields one [`StreamEvent`] per complete event. Tool input arrives as
//! `input_json_delta` fragments; [`StreamEvent::InputJsonDelta`] carries them unparsed so the
//! caller assembles the JSON once the block stops. An `error` event mid-stream becomes
//! [`StreamEvent::Error`] with the API's type and message. Unknown event types are skipped
//! (the API adds new ones), malformed JSON in a known event is an error, never a panic.
//!
//! [`DeltaDecoder`] goes one step further, from the response body's bytes (UTF-8 characters may
//! be split across chunks) to the core's [`LlmDelta`]s that [`dispatch_core::ports::DeltaAssembler`]
//! folds into an answer; it holds no I/O, so the whole path can be fed any bytes (`fuzz/`).

use dispatch_core::ports::{LlmDelta, Usage};
use dispatch_core::{Error, Result};
use serde_json::Value;
use std::collections::VecDeque;

/// The service name in `Upstream` errors.
pub const SERVICE: &str = "anthropic";

/// One typed event of a streamed Messages API response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// `message_start`: input usage, including prompt-cache tokens.
    MessageStart {
        /// The model answering (`message.model`; empty when absent).
        model: String,
        input_tokens: u64,
        cache_creation_input_tokens: u64,
        cache_read_input_tokens: u64,
    },
    /// A text fragment of content block `index`.
    TextDelta { index: u64, text: String },
    /// A tool-use block starts.
    ToolUseStart {
        index: u64,
        id: String,
        name: String,
    },
    /// A fragment of a tool-use block's JSON input.
    InputJsonDelta { index: u64, partial_json: String },
    /// Content block `index` is complete.
    BlockStop { index: u64 },
    /// `message_delta`: stop reason and cumulative output tokens.
    MessageDelta {
        stop_reason: Option<String>,
        output_tokens: u64,
    },
    /// `message_stop`: the response is complete.
    MessageStop,
    /// An `error` event mid-stream (for example `overloaded_error`).
    Error { kind: String, message: String },
}

/// Buffers bytes and yields complete events.
#[derive(Debug, Default)]
pub struct SseDecoder {
    line: String,
    data: String,
    event: Option<String>,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; returns the events it completes (a malformed event is an `Err` entry).
    pub fn push(&mut self, chunk: &str) -> Vec<std::result::Result<StreamEvent, String>> {
        let mut out = Vec::new();
        for ch in chunk.chars() {
            if ch == '\n' {
                let line = std::mem::take(&mut self.line);
                let line = line.strip_suffix('\r').unwrap_or(&line);
                self.line_done(line, &mut out);
            } else {
                self.line.push(ch);
            }
        }
        out
    }

    /// Ends the stream: a final event without a trailing blank line is still delivered.
    pub fn finish(&mut self) -> Vec<std::result::Result<StreamEvent, String>> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            let line = line.strip_suffix('\r').unwrap_or(&line).to_owned();
            self.line_done(&line, &mut out);
        }
        self.line_done("", &mut out);
        out
    }

    fn line_done(&mut self, line: &str, out: &mut Vec<std::result::Result<StreamEvent, String>>) {
        if line.is_empty() {
            let data = std::mem::take(&mut self.data);
            let event = self.event.take();
            if data.is_empty() {
                return;
            }
            if let Some(parsed) = parse_event(event.as_deref(), &data).transpose() {
                out.push(parsed);
            }
        } else if let Some(rest) = line.strip_prefix("data:") {
            if !self.data.is_empty() {
                self.data.push('\n');
            }
            self.data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
        } else if let Some(rest) = line.strip_prefix("event:") {
            self.event = Some(rest.trim().to_owned());
        }
    }
}

fn u64_at(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for key in path {
        match cur.get(key) {
            Some(next) => cur = next,
            None => return 0,
        }
    }
    cur.as_u64().unwrap_or(0)
}

fn str_at(v: &Value, key: &str) -> std::result::Result<String, String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("stream event lacks string field `{key}`"))
}

/// Parses one event's data; `Ok(None)` for events without meaning to the caller (ping, unknown).
pub fn parse_event(
    event: Option<&str>,
    data: &str,
) -> std::result::Result<Option<StreamEvent>, String> {
    let v: Value =
        serde_json::from_str(data).map_err(|e| format!("stream event is not JSON: {e}"))?;
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .or(event)
        .unwrap_or_default();
    let index = u64_at(&v, &["index"]);
    Ok(match kind {
        "message_start" => Some(StreamEvent::MessageStart {
            model: v
                .get("message")
                .and_then(|m| m.get("model"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            input_tokens: u64_at(&v, &["message", "usage", "input_tokens"]),
            cache_creation_input_tokens: u64_at(
                &v,
                &["message", "usage", "cache_creation_input_tokens"],
            ),
            cache_read_input_tokens: u64_at(&v, &["message", "usage", "cache_read_input_tokens"]),
        }),
        "content_block_start" => {
            let block = v.get("content_block").cloned().unwrap_or(Value::Null);
            match block.get("type").and_then(Value::as_str) {
                Some("tool_use") => Some(StreamEvent::ToolUseStart {
                    index,
                    id: str_at(&block, "id")?,
                    name: str_at(&block, "name")?,
                }),
                Some("text") => {
                    let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                    (!text.is_empty()).then(|| StreamEvent::TextDelta {
                        index,
                        text: text.to_owned(),
                    })
                }
                _ => None,
            }
        }
        "content_block_delta" => {
            let delta = v.get("delta").cloned().unwrap_or(Value::Null);
            match delta.get("type").and_then(Value::as_str) {
                Some("text_delta") => Some(StreamEvent::TextDelta {
                    index,
                    text: str_at(&delta, "text")?,
                }),
                Some("input_json_delta") => Some(StreamEvent::InputJsonDelta {
                    index,
                    partial_json: str_at(&delta, "partial_json")?,
                }),
                _ => None,
            }
        }
        "content_block_stop" => Some(StreamEvent::BlockStop { index }),
        "message_delta" => Some(StreamEvent::MessageDelta {
            stop_reason: v
                .get("delta")
                .and_then(|d| d.get("stop_reason"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            output_tokens: u64_at(&v, &["usage", "output_tokens"]),
        }),
        "message_stop" => Some(StreamEvent::MessageStop),
        "error" => {
            let err = v.get("error").cloned().unwrap_or(Value::Null);
            Some(StreamEvent::Error {
                kind: err
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_owned(),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("stream error")
                    .to_owned(),
            })
        }
        _ => None,
    })
}

/// A streamed response's body bytes in, [`LlmDelta`]s out. `message_delta` is folded into the
/// stop delta that `message_stop` makes; an unreadable event, an `error` event or the stop ends
/// the stream (nothing after it is decoded).
#[derive(Debug, Default)]
pub struct DeltaDecoder {
    decoder: SseDecoder,
    /// Bytes of a UTF-8 character split across chunks.
    utf8: Vec<u8>,
    queue: VecDeque<Result<LlmDelta>>,
    stop_reason: Option<String>,
    output_tokens: u64,
    done: bool,
}

impl DeltaDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next decoded delta, if one is ready.
    pub fn pop(&mut self) -> Option<Result<LlmDelta>> {
        self.queue.pop_front()
    }

    /// Whether the stream has ended (stop, error, or [`DeltaDecoder::close`]): no more bytes
    /// are decoded.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Ends the stream without decoding more (the transport failed; the caller reports why).
    pub fn close(&mut self) {
        self.done = true;
    }

    /// Decodes as much of `bytes` (after any carried partial character) as is complete UTF-8.
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        if self.done {
            return;
        }
        self.utf8.extend_from_slice(bytes);
        // Invalid bytes become U+FFFD exactly as in `String::from_utf8_lossy` of the whole body;
        // only an incomplete character at the very end waits for the next chunk (a character
        // split after an invalid byte in the same chunk used to be replaced too: found by
        // `fuzz/fuzz_targets/claude_sse.rs`).
        let mut text = String::with_capacity(self.utf8.len());
        let mut rest: &[u8] = &self.utf8;
        loop {
            match std::str::from_utf8(rest) {
                Ok(t) => {
                    text.push_str(t);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    text.push_str(&String::from_utf8_lossy(valid));
                    match e.error_len() {
                        Some(n) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.utf8 = rest.to_vec();
        let events = self.decoder.push(&text);
        self.take(events);
    }

    /// The body ended: a last event without its blank line still counts; a stream that ends
    /// before `message_stop` ends with an error.
    pub fn finish(&mut self) {
        if self.done {
            return;
        }
        let events = self.decoder.finish();
        self.take(events);
        if !self.done {
            self.done = true;
            self.queue.push_back(Err(Error::upstream(
                SERVICE,
                200,
                "the Anthropic stream ended before message_stop",
            )));
        }
    }

    fn take(&mut self, events: Vec<std::result::Result<StreamEvent, String>>) {
        for e in events {
            let delta = match e {
                Err(m) => Err(Error::upstream(
                    SERVICE,
                    200,
                    format!("unreadable stream: {m}"),
                )),
                Ok(StreamEvent::MessageStart {
                    model,
                    input_tokens,
                    cache_creation_input_tokens,
                    cache_read_input_tokens,
                }) => Ok(LlmDelta::Start {
                    model,
                    usage: Usage {
                        input_tokens,
                        output_tokens: 0,
                        cache_creation_input_tokens,
                        cache_read_input_tokens,
                    },
                }),
                Ok(StreamEvent::TextDelta { index, text }) => Ok(LlmDelta::Text {
                    index: index as usize,
                    text,
                }),
                Ok(StreamEvent::ToolUseStart { index, id, name }) => Ok(LlmDelta::ToolUseStart {
                    index: index as usize,
                    id,
                    name,
                }),
                Ok(StreamEvent::InputJsonDelta {
                    index,
                    partial_json,
                }) => Ok(LlmDelta::ToolInput {
                    index: index as usize,
                    partial_json,
                }),
                Ok(StreamEvent::BlockStop { index }) => Ok(LlmDelta::BlockStop {
                    index: index as usize,
                }),
                Ok(StreamEvent::MessageDelta {
                    stop_reason,
                    output_tokens,
                }) => {
                    if stop_reason.is_some() {
                        self.stop_reason = stop_reason;
                    }
                    self.output_tokens = self.output_tokens.max(output_tokens);
                    continue;
                }
                Ok(StreamEvent::MessageStop) => Ok(LlmDelta::Stop {
                    stop_reason: self.stop_reason.take(),
                    output_tokens: self.output_tokens,
                }),
                Ok(StreamEvent::Error { kind, message }) => {
                    let status = match kind.as_str() {
                        "overloaded_error" => 529,
                        "rate_limit_error" => 429,
                        "api_error" => 500,
                        _ => 200,
                    };
                    Err(Error::upstream(
                        SERVICE,
                        status,
                        format!("{kind}: {message}"),
                    ))
                }
            };
            let end = delta.is_err() || matches!(delta, Ok(LlmDelta::Stop { .. }));
            self.queue.push_back(delta);
            if end {
                self.done = true;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOOL: &str = include_str!("../tests/fixtures/anthropic/stream-tool-use.sse");
    const TEXT: &str = include_str!("../tests/fixtures/anthropic/stream-text.sse");

    fn decode_in_chunks(input: &str, size: usize) -> Vec<StreamEvent> {
        let mut d = SseDecoder::new();
        let chars: Vec<char> = input.chars().collect();
        let mut out = Vec::new();
        for chunk in chars.chunks(size) {
            let s: String = chunk.iter().collect();
            out.extend(d.push(&s));
        }
        out.extend(d.finish());
        out.into_iter().map(|r| r.unwrap()).collect()
    }

    /// The deltas of `body` fed in chunks of `size` bytes.
    fn deltas_in_chunks(body: &[u8], size: usize) -> Vec<std::result::Result<LlmDelta, String>> {
        let mut d = DeltaDecoder::new();
        let mut out = Vec::new();
        for c in body.chunks(size) {
            d.push_bytes(c);
            while let Some(x) = d.pop() {
                out.push(x.map_err(|e| e.to_string()));
            }
        }
        d.finish();
        while let Some(x) = d.pop() {
            out.push(x.map_err(|e| e.to_string()));
        }
        out
    }

    #[test]
    fn invalid_utf8_decodes_the_same_in_any_chunking() {
        // Regression (fuzz/ claude_sse): an invalid byte followed, in the same chunk, by the
        // first byte of a character split across chunks turned that character into U+FFFD
        // too, so the text depended on where the network cut the body.
        let mut body =
            b"data: {\"type\":\"message_start\",\"message\":{\"model\":\"m\"}}\n\n".to_vec();
        body.extend_from_slice(b"data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a");
        body.extend_from_slice(&[0xFF, 0xC3, 0xA9, 0xDE, 0xD3, 0xDD, 0x91]);
        body.extend_from_slice(b"z\"}}\n\ndata: {\"type\":\"message_stop\"}\n\n");
        let whole = deltas_in_chunks(&body, body.len());
        assert_eq!(
            whole[1],
            Ok(LlmDelta::Text {
                index: 0,
                text: "a\u{FFFD}\u{e9}\u{FFFD}\u{FFFD}\u{751}z".into()
            })
        );
        for size in 1..=body.len() {
            assert_eq!(deltas_in_chunks(&body, size), whole, "chunks of {size}");
        }
    }

    #[test]
    fn tool_use_stream_assembles_input_in_any_chunking_and_with_crlf() {
        for input in [TOOL.to_owned(), TOOL.replace('\n', "\r\n")] {
            for size in [1, 7, 4096] {
                let events = decode_in_chunks(&input, size);
                let json: String = events
                    .iter()
                    .filter_map(|e| match e {
                        StreamEvent::InputJsonDelta {
                            index: 1,
                            partial_json,
                        } => Some(partial_json.as_str()),
                        _ => None,
                    })
                    .collect();
                let input: Value = serde_json::from_str(&json).unwrap();
                assert_eq!(input["location"], "Paris");
                assert!(events.contains(&StreamEvent::ToolUseStart {
                    index: 1,
                    id: "toolu_01NRLabsLyVHZPKxbKvkfSMn".into(),
                    name: "get_weather".into(),
                }));
                assert!(events.contains(&StreamEvent::MessageDelta {
                    stop_reason: Some("tool_use".into()),
                    output_tokens: 65,
                }));
                assert_eq!(events.last(), Some(&StreamEvent::MessageStop));
            }
        }
    }

    #[test]
    fn text_stream_yields_token_deltas() {
        let events = decode_in_chunks(TEXT, 3);
        let deltas = events
            .iter()
            .filter(|e| matches!(e, StreamEvent::TextDelta { .. }))
            .count();
        assert!(deltas >= 2, "{events:?}");
        assert!(matches!(events[0], StreamEvent::MessageStart { .. }));
    }

    #[test]
    fn error_event_mid_stream_carries_the_api_message() {
        let cut = TEXT.find("event: content_block_stop").unwrap();
        let input = format!(
            "{}event: error\r\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}}}\r\n\r\n",
            &TEXT[..cut]
        );
        let events = decode_in_chunks(&input, 5);
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Error {
                kind: "overloaded_error".into(),
                message: "Overloaded".into()
            })
        );
    }

    #[test]
    fn malformed_data_is_an_error_not_a_panic() {
        let mut d = SseDecoder::new();
        let out = d.push("event: content_block_delta\ndata: {not json\n\n");
        assert_eq!(out.len(), 1);
        assert!(out[0].is_err());
    }
}
