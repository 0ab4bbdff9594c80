//! A streaming [`Llm`] that plays scripts: each call takes the next script and streams its
//! steps — deltas, an error mid-stream, or a hold that waits until the test releases it (so a
//! test can cancel a turn at a known point, without sleeping).

use crate::error::{Error, Result};
use crate::ports::{DeltaAssembler, Llm, LlmDelta, LlmRequest, LlmResponse, LlmStream, Usage};
use async_trait::async_trait;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// A point a script stops at until released; `reached` tells the test it is there.
pub struct Hold {
    reached: Semaphore,
    release: Semaphore,
}

impl Hold {
    pub fn new() -> Arc<Self> {
        Arc::new(Hold {
            reached: Semaphore::new(0),
            release: Semaphore::new(0),
        })
    }
    /// Waits until a stream is held here.
    pub async fn reached(&self) {
        if let Ok(p) = self.reached.acquire().await {
            p.forget();
        }
    }
    /// Lets the held stream go on.
    pub fn release(&self) {
        self.release.add_permits(1);
    }
}

/// One step of a script.
#[derive(Clone)]
pub enum Step {
    Delta(LlmDelta),
    /// The stream fails here (an `error` event mid-stream).
    Fail(fn() -> Error),
    Hold(Arc<Hold>),
}

/// The model.
#[derive(Default)]
pub struct ScriptedLlm {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    scripts: VecDeque<Vec<Step>>,
    requests: Vec<LlmRequest>,
}

impl ScriptedLlm {
    pub fn new() -> Arc<Self> {
        Arc::new(ScriptedLlm::default())
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Queues the script of the next call.
    pub fn push(&self, steps: Vec<Step>) {
        self.lock().scripts.push_back(steps);
    }
    /// Every request so far.
    pub fn requests(&self) -> Vec<LlmRequest> {
        self.lock().requests.clone()
    }

    fn start(input_tokens: u64) -> Step {
        Step::Delta(LlmDelta::Start {
            model: "claude-scripted".into(),
            usage: Usage {
                input_tokens,
                output_tokens: 0,
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: 0,
            },
        })
    }

    /// A text answer, one delta per word (with its space), ending the turn.
    pub fn text(text: &str) -> Vec<Step> {
        let mut steps = vec![Self::start(10)];
        steps.extend(Self::words(0, text));
        steps.push(Step::Delta(LlmDelta::BlockStop { index: 0 }));
        steps.push(Step::Delta(LlmDelta::Stop {
            stop_reason: Some("end_turn".into()),
            output_tokens: 5,
        }));
        steps
    }

    /// Text deltas of block `index`, one per word.
    pub fn words(index: usize, text: &str) -> Vec<Step> {
        text.split_inclusive(' ')
            .map(|w| {
                Step::Delta(LlmDelta::Text {
                    index,
                    text: w.into(),
                })
            })
            .collect()
    }

    /// A short text, then a call of `name` with `input` (sent in two fragments).
    pub fn tool_call(id: &str, name: &str, input: Value) -> Vec<Step> {
        let json = input.to_string();
        let (a, b) = json.split_at(json.len() / 2);
        let mut steps = vec![Self::start(20)];
        steps.extend(Self::words(0, "Let me check. "));
        steps.push(Step::Delta(LlmDelta::BlockStop { index: 0 }));
        steps.extend([
            Step::Delta(LlmDelta::ToolUseStart {
                index: 1,
                id: id.into(),
                name: name.into(),
            }),
            Step::Delta(LlmDelta::ToolInput {
                index: 1,
                partial_json: a.into(),
            }),
            Step::Delta(LlmDelta::ToolInput {
                index: 1,
                partial_json: b.into(),
            }),
            Step::Delta(LlmDelta::BlockStop { index: 1 }),
            Step::Delta(LlmDelta::Stop {
                stop_reason: Some("tool_use".into()),
                output_tokens: 7,
            }),
        ]);
        steps
    }
}

#[async_trait]
impl Llm for ScriptedLlm {
    async fn complete(&self, request: LlmRequest) -> Result<LlmResponse> {
        let steps = {
            let mut s = self.lock();
            s.requests.push(request);
            s.scripts.pop_front()
        }
        .ok_or_else(|| Error::internal("the scripted model has no script left"))?;
        let mut asm = DeltaAssembler::new();
        for step in steps {
            match step {
                Step::Delta(d) => asm.push(&d)?,
                Step::Fail(f) => return Err(f()),
                Step::Hold(h) => {
                    h.reached.add_permits(1);
                    if let Ok(p) = h.release.acquire().await {
                        p.forget();
                    }
                }
            }
        }
        Ok(asm.finish())
    }

    async fn stream(&self, request: LlmRequest) -> Result<LlmStream> {
        let steps = {
            let mut s = self.lock();
            s.requests.push(request);
            s.scripts.pop_front()
        }
        .ok_or_else(|| Error::internal("the scripted model has no script left"))?;
        let stream = futures::stream::unfold(
            (VecDeque::from(steps), false),
            |(mut steps, failed)| async move {
                if failed {
                    return None;
                }
                loop {
                    match steps.pop_front()? {
                        Step::Delta(d) => return Some((Ok(d), (steps, false))),
                        Step::Fail(f) => return Some((Err(f()), (steps, true))),
                        Step::Hold(h) => {
                            h.reached.add_permits(1);
                            if let Ok(p) = h.release.acquire().await {
                                p.forget();
                            }
                        }
                    }
                }
            },
        );
        Ok(Box::pin(stream))
    }
}
