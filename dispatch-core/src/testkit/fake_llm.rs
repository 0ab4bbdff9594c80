use crate::error::{Error, Result};
use crate::ports::{ContentBlock, Llm, LlmRequest, LlmResponse, Usage};
use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// A scripted [`Llm`]: answers with the queued replies in order (then with the fallback text),
/// and records every request.
pub struct FakeLlm {
    state: Mutex<State>,
}

struct State {
    replies: VecDeque<Result<LlmResponse>>,
    fallback: String,
    requests: Vec<LlmRequest>,
}

impl FakeLlm {
    /// Answers `fallback` (as one text block) when no reply is queued.
    pub fn new(fallback: impl Into<String>) -> Arc<Self> {
        Arc::new(FakeLlm {
            state: Mutex::new(State {
                replies: VecDeque::new(),
                fallback: fallback.into(),
                requests: Vec::new(),
            }),
        })
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// A response with one text block.
    pub fn text(text: impl Into<String>) -> LlmResponse {
        LlmResponse {
            model: "fake".into(),
            content: vec![ContentBlock::Text { text: text.into() }],
            stop_reason: Some("end_turn".into()),
            usage: Usage::default(),
        }
    }
    /// Queues a text reply.
    pub fn reply(&self, text: impl Into<String>) {
        self.lock().replies.push_back(Ok(Self::text(text)));
    }
    /// Queues a failure.
    pub fn fail(&self, error: Error) {
        self.lock().replies.push_back(Err(error));
    }
    /// Every request so far.
    pub fn requests(&self) -> Vec<LlmRequest> {
        self.lock().requests.clone()
    }
}

#[async_trait]
impl Llm for FakeLlm {
    async fn complete(&self, request: LlmRequest) -> Result<LlmResponse> {
        let mut s = self.lock();
        s.requests.push(request);
        match s.replies.pop_front() {
            Some(r) => r,
            None => Ok(Self::text(s.fallback.clone())),
        }
    }
}
