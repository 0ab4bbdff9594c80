//! A chat session: the conversation in the Messages API's own shape, and the one turn that may
//! be running on it (held by a lease, so a crashed server does not lock the session forever).

use crate::Timestamp;
use crate::error::{Error, Result};
use crate::ids::{SessionId, WorkspaceId};
use crate::ports::{ContentBlock, LlmMessage, Role, Usage};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    pub workspace_id: WorkspaceId,
    /// The first words the person typed, for lists of sessions.
    pub title: String,
    /// Every message so far, as sent to the model (valid: see [`valid_history`]).
    pub messages: Vec<LlmMessage>,
    /// Tokens used by every turn so far.
    pub usage: Usage,
    /// The turn running now, and until when its lease holds.
    pub turn_id: Option<Uuid>,
    pub turn_until: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Session {
    pub fn new(workspace_id: WorkspaceId, now: Timestamp) -> Self {
        Session {
            id: SessionId::new(),
            workspace_id,
            title: String::new(),
            messages: Vec::new(),
            usage: Usage::default(),
            turn_id: None,
            turn_until: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether a turn holds the session at `now`.
    pub fn busy_at(&self, now: Timestamp) -> bool {
        self.turn_id.is_some() && self.turn_until.is_some_and(|u| u > now)
    }
}

const TITLE_CHARS: usize = 80;

/// Starts (or, for the same `turn`, extends) a turn. Another turn whose lease still holds →
/// `Conflict`; an expired one is taken over (its server died; its end will be refused).
pub fn begin_turn(s: &Session, turn: Uuid, now: Timestamp, until: Timestamp) -> Result<Session> {
    if s.busy_at(now) && s.turn_id != Some(turn) {
        return Err(Error::conflict(
            "this session is answering another message; wait for it or cancel it",
        ));
    }
    let mut next = s.clone();
    next.turn_id = Some(turn);
    next.turn_until = Some(until);
    next.updated_at = now;
    Ok(next)
}

/// Ends `turn`, keeping `messages` as the new history and adding `usage`. Refused (`Conflict`)
/// when the turn no longer holds the session (its lease expired and another turn took it);
/// an invalid history is refused (`Internal`): it would break every later turn.
pub fn end_turn(
    s: &Session,
    turn: Uuid,
    messages: Vec<LlmMessage>,
    usage: &Usage,
    now: Timestamp,
) -> Result<Session> {
    if s.turn_id != Some(turn) {
        return Err(Error::conflict(
            "this turn lost the session (it ran past its lease and another turn started)",
        ));
    }
    valid_history(&messages)?;
    let mut next = s.clone();
    if next.title.is_empty()
        && let Some(text) = messages
            .iter()
            .find_map(|m| match (m.role, m.content.first()) {
                (Role::User, Some(ContentBlock::Text { text })) => Some(text.clone()),
                _ => None,
            })
    {
        next.title = text
            .chars()
            .take(TITLE_CHARS)
            .collect::<String>()
            .trim()
            .to_owned();
    }
    next.messages = messages;
    next.usage.input_tokens += usage.input_tokens;
    next.usage.output_tokens += usage.output_tokens;
    next.usage.cache_creation_input_tokens += usage.cache_creation_input_tokens;
    next.usage.cache_read_input_tokens += usage.cache_read_input_tokens;
    next.turn_id = None;
    next.turn_until = None;
    next.updated_at = now;
    Ok(next)
}

/// How much of a long conversation is sent to the model: the newest messages within `max_chars`
/// of content, starting at a message the person typed (so the window is itself a valid
/// conversation: no tool result without its call). The whole conversation stays stored; the
/// latest exchange is always sent, however long.
pub fn window(messages: &[LlmMessage], max_chars: usize) -> &[LlmMessage] {
    fn size(m: &LlmMessage) -> usize {
        m.content
            .iter()
            .map(|b| match b {
                ContentBlock::Text { text } => text.len(),
                ContentBlock::ToolUse { name, input, .. } => name.len() + input.to_string().len(),
                ContentBlock::ToolResult { content, .. } => content.len(),
            })
            .sum()
    }
    let starts_turn = |m: &LlmMessage| {
        m.role == Role::User
            && m.content
                .iter()
                .all(|b| matches!(b, ContentBlock::Text { .. }))
    };
    let mut total = 0;
    let mut start = messages.len();
    let mut best = None;
    while start > 0 {
        start -= 1;
        total += size(&messages[start]);
        if starts_turn(&messages[start]) {
            if total > max_chars && best.is_some() {
                break;
            }
            best = Some(start);
        }
    }
    &messages[best.unwrap_or(0)..]
}

/// The rules the Messages API holds a conversation to: it starts with the user, roles
/// alternate, no message is empty, and every `tool_use` of an assistant message is answered by a
/// `tool_result` in the next (user) message, which answers nothing else.
pub fn valid_history(messages: &[LlmMessage]) -> Result<()> {
    let bad = |i: usize, why: &str| Err(Error::internal(format!("message {i}: {why}")));
    for (i, m) in messages.iter().enumerate() {
        if m.content.is_empty() {
            return bad(i, "is empty");
        }
        let expected = if i % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        if m.role != expected {
            return bad(i, "roles must alternate, starting with the user");
        }
        let uses: Vec<&str> = m
            .content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::ToolUse { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect();
        let results: Vec<&str> = m
            .content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::ToolResult { tool_use_id, .. } => Some(tool_use_id.as_str()),
                _ => None,
            })
            .collect();
        if m.role == Role::Assistant && !results.is_empty() {
            return bad(i, "an assistant message cannot hold tool results");
        }
        if m.role == Role::User && !uses.is_empty() {
            return bad(i, "a user message cannot hold tool calls");
        }
        let asked: Vec<&str> = match i.checked_sub(1).map(|p| &messages[p]) {
            Some(prev) => prev
                .content
                .iter()
                .filter_map(|b| match b {
                    ContentBlock::ToolUse { id, .. } => Some(id.as_str()),
                    _ => None,
                })
                .collect(),
            None => Vec::new(),
        };
        if m.role == Role::User {
            let mut a = asked.clone();
            let mut r = results.clone();
            a.sort_unstable();
            r.sort_unstable();
            if a != r {
                return bad(
                    i,
                    "tool results must answer exactly the previous tool calls",
                );
            }
        }
        if m.role == Role::Assistant && !uses.is_empty() && i + 1 == messages.len() {
            return bad(i, "tool calls are left without results");
        }
    }
    if messages.len() % 2 == 1 {
        return bad(
            messages.len() - 1,
            "the conversation ends without an answer",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};
    use serde_json::json;

    fn t0() -> Timestamp {
        Utc.with_ymd_and_hms(2026, 12, 4, 9, 0, 0).unwrap()
    }
    fn user(text: &str) -> LlmMessage {
        LlmMessage {
            role: Role::User,
            content: vec![ContentBlock::Text { text: text.into() }],
        }
    }
    fn assistant(text: &str) -> LlmMessage {
        LlmMessage {
            role: Role::Assistant,
            content: vec![ContentBlock::Text { text: text.into() }],
        }
    }
    fn tool_call(id: &str) -> LlmMessage {
        LlmMessage {
            role: Role::Assistant,
            content: vec![ContentBlock::ToolUse {
                id: id.into(),
                name: "get_fleet_status".into(),
                input: json!({}),
            }],
        }
    }
    fn tool_result(id: &str) -> LlmMessage {
        LlmMessage {
            role: Role::User,
            content: vec![ContentBlock::ToolResult {
                tool_use_id: id.into(),
                content: "{}".into(),
                is_error: false,
            }],
        }
    }

    #[test]
    fn a_second_turn_is_refused_until_the_first_ends_or_its_lease_expires() {
        let s = Session::new(WorkspaceId::new(), t0());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let held = begin_turn(&s, a, t0(), t0() + Duration::minutes(10)).unwrap();
        let e = begin_turn(
            &held,
            b,
            t0() + Duration::minutes(1),
            t0() + Duration::minutes(11),
        )
        .unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Conflict);
        // The same turn extends its lease.
        let extended = begin_turn(
            &held,
            a,
            t0() + Duration::minutes(5),
            t0() + Duration::minutes(15),
        )
        .unwrap();
        assert_eq!(extended.turn_until, Some(t0() + Duration::minutes(15)));
        // After the lease, another turn takes over and the first one's end is refused.
        let taken = begin_turn(
            &held,
            b,
            t0() + Duration::minutes(10),
            t0() + Duration::minutes(20),
        )
        .unwrap();
        let history = vec![user("hi"), assistant("hello")];
        let e = end_turn(&taken, a, history.clone(), &Usage::default(), t0()).unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Conflict);
        let done = end_turn(&taken, b, history, &Usage::default(), t0()).unwrap();
        assert!(!done.busy_at(t0() + Duration::minutes(11)));
        assert_eq!(done.title, "hi");
    }

    #[test]
    fn the_window_keeps_whole_exchanges_from_the_newest() {
        let h = vec![
            user("first question"),
            tool_call("t1"),
            tool_result("t1"),
            assistant("first answer"),
            user("second"),
            assistant("second answer"),
            user("third"),
            assistant("third answer"),
        ];
        assert_eq!(window(&h, 1_000_000).len(), 8, "everything fits");
        let w = window(&h, 40); // "second"+"second answer"+"third"+"third answer" = 36
        assert_eq!(w.len(), 4, "{w:?}");
        assert_eq!(w[0], user("second"));
        // The last exchange is sent even when it alone is over the budget.
        let w = window(&h, 1);
        assert_eq!(w, &h[6..]);
        // Never starts at a tool result.
        for n in 0..60 {
            let w = window(&h, n);
            assert!(
                valid_history(&[w, &[user("next")], &[assistant("x")]].concat()).is_ok()
                    || w.is_empty()
            );
        }
    }

    #[test]
    fn history_rules_match_the_messages_api() {
        assert!(valid_history(&[]).is_ok());
        assert!(valid_history(&[user("a"), assistant("b")]).is_ok());
        assert!(
            valid_history(&[
                user("a"),
                tool_call("t1"),
                tool_result("t1"),
                assistant("b")
            ])
            .is_ok()
        );
        // Unanswered tool call, wrong answer, roles out of order, dangling user message.
        assert!(valid_history(&[user("a"), tool_call("t1")]).is_err());
        assert!(
            valid_history(&[
                user("a"),
                tool_call("t1"),
                tool_result("t2"),
                assistant("b")
            ])
            .is_err()
        );
        assert!(valid_history(&[assistant("b"), user("a")]).is_err());
        assert!(valid_history(&[user("a")]).is_err());
        assert!(valid_history(&[user("a"), assistant("b"), user("c"), user("d")]).is_err());
    }
}
