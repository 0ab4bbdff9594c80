//! The Anthropic Messages API as a test fake speaks it: the streamed reply (server-sent events)
//! and how far a scripted conversation has got. Used with a local HTTP fake (wiremock) to run
//! the real Claude Code CLI offline (`../shared/notes/claude-code-offline.md`).

use serde_json::{Value, json};

/// Server-sent events as the Messages API streams them: `message_start`, each content block
/// (start, delta, stop), `message_delta` with the stop reason and usage, `message_stop`.
pub fn sse(model: &str, n: usize, blocks: &[Value], stop_reason: &str) -> String {
    let mut events = vec![json!({
        "type": "message_start",
        "message": {
            "id": format!("msg_01DispatchE2e{n}"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {
                "input_tokens": 2000,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
                "service_tier": "standard"
            }
        }
    })];
    for (index, block) in blocks.iter().enumerate() {
        match block["type"].as_str() {
            Some("tool_use") => {
                let mut start = block.clone();
                start["input"] = json!({});
                events.push(
                    json!({"type": "content_block_start", "index": index, "content_block": start}),
                );
                let input = block["input"].to_string();
                // Streamed in pieces, as the real API does (the first one empty).
                let mid = input
                    .char_indices()
                    .nth(input.chars().count() / 2)
                    .map_or(0, |(i, _)| i);
                for part in ["", &input[..mid], &input[mid..]] {
                    events.push(json!({
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": part}
                    }));
                }
            }
            _ => {
                events.push(json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}));
                events.push(json!({
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": block["text"]}
                }));
            }
        }
        events.push(json!({"type": "content_block_stop", "index": index}));
    }
    events.push(json!({
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"output_tokens": 120}
    }));
    events.push(json!({"type": "message_stop"}));
    let mut out = String::new();
    for e in events {
        let name = e["type"].as_str().unwrap_or_default().to_string();
        out.push_str(&format!("event: {name}\ndata: {e}\n\n"));
    }
    out
}

/// How many assistant messages a request already holds: picks the scripted reply, so that a
/// retried request gets the same answer.
pub fn assistant_messages(body: &Value) -> usize {
    body["messages"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["role"] == "assistant").count())
}

/// A whole streamed reply: `text` as one delta per word (as the API streams tokens), then
/// optionally one tool call (`id`, `name`, `input`, its JSON sent in pieces); CRLF line endings.
pub fn stream_words(model: &str, text: &str, tool: Option<(&str, &str, Value)>) -> String {
    let mut events = vec![json!({"type": "message_start", "message": {
        "id": "msg_01Orch", "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 900, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 300, "output_tokens": 1}
    }})];
    events.push(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}));
    for w in text.split_inclusive(' ') {
        events.push(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}));
    }
    events.push(json!({"type": "content_block_stop", "index": 0}));
    let stop = if let Some((id, name, input)) = &tool {
        events.push(json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}));
        let s = input.to_string();
        let (a, b) = s.split_at(s.len() / 2);
        for part in ["", a, b] {
            events.push(json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": part}}));
        }
        events.push(json!({"type": "content_block_stop", "index": 1}));
        "tool_use"
    } else {
        "end_turn"
    };
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 42}}));
    events.push(json!({"type": "message_stop"}));
    events
        .iter()
        .map(|e| {
            format!(
                "event: {}\r\ndata: {e}\r\n\r\n",
                e["type"].as_str().unwrap()
            )
        })
        .collect()
}
