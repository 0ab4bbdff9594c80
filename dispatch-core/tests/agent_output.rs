//! The stream-json filter against Claude Code fixture lines, plus "never panics" properties.

use dispatch_core::agent_output::{AgentSummary, StreamFilter, render};
use proptest::prelude::*;

const STREAM: &str = include_str!("fixtures/claude-code/stream-json.jsonl");
const ACTION: &str = include_str!("fixtures/claude-code/sample-turns.claude-code-action.jsonl");

fn lines_of(input: &str) -> Vec<String> {
    let mut f = StreamFilter::new();
    input.lines().flat_map(|l| f.push_line(l)).collect()
}

#[test]
fn renders_the_multi_turn_fixture() {
    let out = lines_of(STREAM);
    let expected = vec![
        "[INIT] model=claude-sonnet-4-6 tools=9\n",
        "I'll look at the failing handler first.\n",
        "[TOOL] Grep(pattern=PaymentDeclined, path=src, output_mode=content)\n",
        "[RESULT] src/payments/charge.rs:88:        return Err(PaymentError::PaymentDeclined(code));\n",
        "[TOOL] Bash(command=cargo test -p payments charge:: 2>&1 | tail -5, description=Run payments charge tests)\n",
        "[ERROR] test charge::declined_card_is_retried ... FAILED\\n\\nfailures:\\n    charge::declined_card_is_retried\\n\\ntest result: FAILED. 11 passed; 1 failed; 0 ignored\n",
        "The declined-card path returns before the retry loop; `declined_card_is_retried` fails because of it. Plan: move the retry check above the early return in `src/payments/charge.rs:88`.\n",
        "[COMPLETED] Cost: $0.06, Turns: 3\n",
    ];
    assert_eq!(out, expected);
    for l in &out {
        assert!(l.ends_with('\n'));
        assert_eq!(
            l.matches('\n').count(),
            1,
            "one display line per element: {l:?}"
        );
    }
}

#[test]
fn summary_comes_from_the_result_event() {
    let mut f = StreamFilter::new();
    let mut lines = STREAM.lines();
    for l in lines.by_ref().take(7) {
        f.push_line(l);
    }
    assert_eq!(f.summary(), None, "no summary before the result event");
    assert_eq!(f.model(), Some("claude-sonnet-4-6"));
    for l in lines {
        f.push_line(l);
    }
    let s = f.summary().unwrap_or_default();
    assert_eq!(s.cost_usd, Some(0.0598312));
    assert_eq!(s.num_turns, Some(3));
    assert_eq!(s.model.as_deref(), Some("claude-sonnet-4-6"));
    assert!(!s.is_error);
    assert!(!s.failed());
    assert_eq!(s.subtype.as_deref(), Some("success"));
    assert_eq!(s.permission_denials, 0);
    assert_eq!(s.tokens_used, Some(6 + 124 + 6764 + 60920));
    assert_eq!(s.terminal_reason.as_deref(), Some("completed"));
    assert!(
        s.result_text
            .as_deref()
            .is_some_and(|t| t.starts_with("The declined-card path"))
    );
}

#[test]
fn renders_the_claude_code_action_fixture() {
    let (out, summary) = render(ACTION);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "[INIT] tools=8", "no model on this init line");
    assert!(lines.contains(&"[TOOL] Read(file_path=/path/to/sample/file.py)"));
    // Text and tool_use blocks of one message keep their order.
    let text = lines
        .iter()
        .position(|l| l.starts_with("I'll help you with this task."));
    let read = lines.iter().position(|l| l.starts_with("[TOOL] Read("));
    assert!(text < read);
    // Values are cut at 80 characters; only the first three arguments show, in JSON order.
    let review = lines
        .iter()
        .find(|l| l.starts_with("[TOOL] mcp__github__add_pull_request_review_comment("))
        .copied()
        .unwrap_or_default();
    assert_eq!(
        review,
        "[TOOL] mcp__github__add_pull_request_review_comment(owner=example-org, repo=example-repo, pull_number=123)"
    );
    let edit = lines
        .iter()
        .find(|l| l.starts_with("[TOOL] Edit("))
        .copied()
        .unwrap_or_default();
    let old =
        "def example_function():\\n    print(\"Debug message\")  # This should be removed\\n   "; // 80 characters, cut inside the indentation
    assert_eq!(
        edit,
        format!(
            "[TOOL] Edit(file_path=/path/to/sample/file.py, old_string={old}, new_string=def example_function():\\n    return \"Hello World\")"
        )
    );
    // Multi-line assistant text is verbatim, one display line per text line; emoji intact.
    assert!(lines.contains(&"1. ✅ Located the debug print statement in the file"));
    assert!(lines.contains(&"[RESULT] Successfully posted review comment to PR #123"));
    // This simplified result has no subtype and no num_turns.
    assert_eq!(lines.last().copied(), Some("[COMPLETED] Cost: $0.03"));
    let s = summary.unwrap_or_default();
    assert_eq!(s.cost_usd, Some(0.0347));
    assert_eq!(s.num_turns, None);
    assert_eq!(
        s.model.as_deref(),
        Some("claude-test-model"),
        "falls back to the assistant's model"
    );
}

#[test]
fn long_tool_results_are_cut_at_200_characters_with_an_ellipsis() {
    let body = "é".repeat(250);
    let line = format!(
        r#"{{"type":"user","message":{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"t","content":[{{"type":"text","text":"{body}"}},{{"type":"image","source":{{}}}}]}}]}}}}"#
    );
    let out = StreamFilter::new().push_line(&line);
    assert_eq!(out, vec![format!("[RESULT] {}...\n", "é".repeat(200))]);

    let short = r#"{"type":"user","message":{"content":[{"type":"tool_result","content":[{"type":"text","text":"ok"},{"type":"image"}]}]}}"#;
    assert_eq!(
        StreamFilter::new().push_line(short),
        vec!["[RESULT] ok\\n[image]\n"]
    );
    let empty = r#"{"type":"user","message":{"content":[{"type":"tool_result","content":""}]}}"#;
    assert_eq!(
        StreamFilter::new().push_line(empty),
        vec!["[RESULT] (no output)\n"]
    );
}

#[test]
fn tool_argument_values_are_cut_at_80_characters() {
    let cmd = "x".repeat(100);
    let line = format!(
        r#"{{"type":"assistant","message":{{"content":[{{"type":"tool_use","name":"Bash","input":{{"command":"{cmd}","timeout":120000,"nested":{{"b":1,"a":[true,null]}},"fourth":"hidden"}}}}]}}}}"#
    );
    let out = StreamFilter::new().push_line(&line);
    assert_eq!(
        out,
        vec![format!(
            "[TOOL] Bash(command={}, timeout=120000, nested={{\"b\":1,\"a\":[true,null]}})\n",
            "x".repeat(80)
        )]
    );
    let no_input =
        r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"TodoRead"}]}}"#;
    assert_eq!(
        StreamFilter::new().push_line(no_input),
        vec!["[TOOL] TodoRead()\n"]
    );
}

fn result_line(subtype: &str, is_error: bool, extra: &str) -> String {
    format!(
        r#"{{"type":"result","subtype":"{subtype}","is_error":{is_error},"num_turns":7,"total_cost_usd":0.4213,"result":"x"{extra}}}"#
    )
}

#[test]
fn error_results_say_why_the_session_stopped() {
    let cases = [
        (
            "error_max_turns",
            "[FAILED] Stopped: maximum number of turns reached (error_max_turns). Cost: $0.42, Turns: 7\n",
        ),
        (
            "error_max_budget_usd",
            "[FAILED] Stopped: budget limit reached (error_max_budget_usd). Cost: $0.42, Turns: 7\n",
        ),
        (
            "error_during_execution",
            "[FAILED] Stopped: error during execution (error_during_execution). Cost: $0.42, Turns: 7\n",
        ),
        (
            "error_something_new",
            "[FAILED] Stopped: error_something_new. Cost: $0.42, Turns: 7\n",
        ),
    ];
    for (subtype, expected) in cases {
        let mut f = StreamFilter::new();
        assert_eq!(
            f.push_line(&result_line(subtype, true, "")),
            vec![expected],
            "{subtype}"
        );
        let s = f.summary().unwrap_or_default();
        assert!(s.failed());
        assert_eq!(s.subtype.as_deref(), Some(subtype));
        assert_eq!(s.cost_usd, Some(0.4213));
    }
    // An API error arrives as subtype success with is_error true.
    let api = r#"{"type":"result","subtype":"success","is_error":true,"num_turns":1,"total_cost_usd":0,"result":"API Error: Unable to connect to API"}"#;
    assert_eq!(
        StreamFilter::new().push_line(api),
        vec!["[FAILED] API Error: Unable to connect to API. Cost: $0.00, Turns: 1\n"]
    );
}

#[test]
fn permission_denials_are_counted_and_named() {
    let extra = r#","permission_denials":[{"tool_name":"Write","tool_use_id":"a","tool_input":{}},{"tool_name":"Bash","tool_use_id":"b","tool_input":{}}]"#;
    let mut f = StreamFilter::new();
    let out = f.push_line(&result_line("success", false, extra));
    assert_eq!(
        out,
        vec![
            "[COMPLETED] Cost: $0.42, Turns: 7\n".to_string(),
            "[DENIED] 2 tool call(s) denied permission: Write, Bash\n".to_string(),
        ]
    );
    assert_eq!(f.summary().map(|s| s.permission_denials), Some(2));
}

#[test]
fn model_comes_from_the_result_or_the_costliest_model_usage_entry() {
    let mut f = StreamFilter::new();
    f.push_line(&result_line(
        "success",
        false,
        r#","model":"claude-opus-4-6""#,
    ));
    assert_eq!(
        f.summary().and_then(|s| s.model).as_deref(),
        Some("claude-opus-4-6")
    );
    let usage = r#","modelUsage":{"claude-haiku":{"costUSD":0.01},"claude-opus":{"costUSD":0.4}}"#;
    let mut f = StreamFilter::new();
    f.push_line(&result_line("success", false, usage));
    assert_eq!(
        f.summary().and_then(|s| s.model).as_deref(),
        Some("claude-opus")
    );
}

#[test]
fn unknown_and_noisy_events_are_skipped_or_summarised() {
    let mut f = StreamFilter::new();
    for l in [
        r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed"}}"#,
        r#"{"type":"system","subtype":"status","status":"compacting"}"#,
        r#"{"type":"stream_event","event":{"type":"content_block_delta"}}"#,
        r#"{"type":"something_new","x":1}"#,
        r#"{"no_type":true}"#,
        r#"{"type":"assistant","message":{"content":[{"type":"thinking","thinking":"hmm"}]}}"#,
        r#"{"type":"user","message":{"content":"a plain user prompt"}}"#,
        "",
        "   ",
    ] {
        assert_eq!(f.push_line(l), Vec::<String>::new(), "{l}");
    }
    let retry = r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":500,"error_status":529,"error":"overloaded"}"#;
    assert_eq!(
        f.push_line(retry),
        vec!["[RETRY] API error 529 (overloaded); retry 1/10 in 500 ms\n"]
    );
    let mcp = r#"{"type":"system","subtype":"init","model":"m","tools":[],"mcp_servers":[{"name":"dispatch","status":"failed"},{"name":"ok","status":"connected"}]}"#;
    assert_eq!(
        f.push_line(mcp),
        vec!["[INIT] model=m tools=0 mcp_failed=dispatch\n"]
    );
}

#[test]
fn non_json_lines_are_echoed_as_they_are() {
    let mut f = StreamFilter::new();
    assert_eq!(
        f.push_line("npm WARN something odd\r\n"),
        vec!["npm WARN something odd\n"]
    );
    assert_eq!(f.push_line("{not json"), vec!["{not json\n"]);
    assert_eq!(f.push_line("42"), vec!["42\n"]);
    assert_eq!(f.push_line("[1,2]"), vec!["[1,2]\n"]);
    assert_eq!(f.push_line("  indented ✓"), vec!["  indented ✓\n"]);
}

#[test]
fn the_latest_result_wins() {
    let mut f = StreamFilter::new();
    f.push_line(&result_line("error_max_turns", true, ""));
    f.push_line(r#"{"type":"result","subtype":"success","is_error":false,"num_turns":2,"total_cost_usd":1.5}"#);
    let s: AgentSummary = f.summary().unwrap_or_default();
    assert_eq!(
        (s.num_turns, s.cost_usd, s.failed()),
        (Some(2), Some(1.5), false)
    );
}

fn json_leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| if f.is_finite() {
            f.to_string()
        } else {
            "1e308".into()
        }),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        prop::sample::select(vec![
            "\"system\"",
            "\"assistant\"",
            "\"user\"",
            "\"result\"",
            "\"init\"",
            "\"text\"",
            "\"tool_use\"",
            "\"tool_result\"",
            "\"api_retry\"",
            "\"error_max_turns\"",
        ])
        .prop_map(str::to_string),
    ]
}

fn json_value() -> impl Strategy<Value = String> {
    let keys = prop::sample::select(vec![
        "type",
        "subtype",
        "message",
        "content",
        "text",
        "name",
        "input",
        "is_error",
        "total_cost_usd",
        "num_turns",
        "model",
        "modelUsage",
        "usage",
        "permission_denials",
        "tools",
        "mcp_servers",
        "status",
        "result",
        "attempt",
        "error_status",
        "costUSD",
        "tool_name",
        "input_tokens",
    ]);
    json_leaf().prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| {
                let body: Vec<String> = kv
                    .into_iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_lines_never_panic(line in any::<String>()) {
        let mut f = StreamFilter::new();
        for l in f.push_line(&line) {
            prop_assert!(l.ends_with('\n'));
        }
        let _ = f.summary();
    }

    #[test]
    fn arbitrary_json_shapes_never_panic(line in json_value()) {
        let mut f = StreamFilter::new();
        for l in f.push_line(&line) {
            prop_assert!(l.ends_with('\n'));
        }
        let _ = f.summary();
    }

    #[test]
    fn fixture_lines_cut_anywhere_never_panic(i in 0usize..8, cut in 0usize..4000) {
        let line = STREAM.lines().nth(i).unwrap_or_default();
        let end = line.char_indices().map(|(b, _)| b).nth(cut).unwrap_or(line.len());
        let mut f = StreamFilter::new();
        let out = f.push_line(&line[..end]);
        if end < line.len() && end > 0 {
            // A cut JSON line is not JSON any more: echoed as it is.
            prop_assert_eq!(out, vec![format!("{}\n", &line[..end])]);
        }
    }
}
