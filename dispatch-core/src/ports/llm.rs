use crate::error::{Error, Result};
use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// Content blocks in the shape of the Messages API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: serde_json::Value,
    },
    ToolResult {
        tool_use_id: String,
        content: String,
        #[serde(default)]
        is_error: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmMessage {
    pub role: Role,
    pub content: Vec<ContentBlock>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub input_schema: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmRequest {
    pub model: Option<String>,
    pub system: Option<String>,
    pub messages: Vec<LlmMessage>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
    pub temperature: Option<f32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Prompt-cache tokens written by this request (Messages API `cache_creation_input_tokens`).
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
    /// Prompt-cache tokens read by this request (`cache_read_input_tokens`).
    #[serde(default)]
    pub cache_read_input_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmResponse {
    pub model: String,
    pub content: Vec<ContentBlock>,
    pub stop_reason: Option<String>,
    pub usage: Usage,
}

impl LlmRequest {
    /// One user message under a system prompt, no tools, deterministic (temperature 0): the
    /// shape of every classification question the engine asks.
    pub fn single_turn(
        system: impl Into<String>,
        text: impl Into<String>,
        max_tokens: u32,
    ) -> Self {
        LlmRequest {
            model: None,
            system: Some(system.into()),
            messages: vec![LlmMessage {
                role: Role::User,
                content: vec![ContentBlock::Text { text: text.into() }],
            }],
            tools: Vec::new(),
            max_tokens,
            temperature: Some(0.0),
        }
    }
}

impl LlmResponse {
    /// The text blocks of the answer, joined by newlines.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One piece of a streamed answer, in the order the model produces it (the Messages API's
/// `stream: true` events, typed). `index` is the content block's position in the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LlmDelta {
    /// The answer starts: the model that answers and the input usage (with cache tokens).
    Start { model: String, usage: Usage },
    /// A fragment of text block `index` (token-sized when the upstream streams).
    Text { index: usize, text: String },
    /// Tool-use block `index` starts.
    ToolUseStart {
        index: usize,
        id: String,
        name: String,
    },
    /// A fragment of tool-use block `index`'s JSON input (not valid JSON on its own).
    ToolInput { index: usize, partial_json: String },
    /// Block `index` is complete.
    BlockStop { index: usize },
    /// The answer is complete: why it stopped and the output tokens.
    Stop {
        stop_reason: Option<String>,
        output_tokens: u64,
    },
}

/// A streamed answer. An `Err` item ends it (an upstream error mid-stream).
pub type LlmStream = BoxStream<'static, Result<LlmDelta>>;

/// A language model (PR matching confirmation, the chat orchestrator, duplicate review).
#[async_trait]
pub trait Llm: Send + Sync {
    async fn complete(&self, request: LlmRequest) -> Result<LlmResponse>;

    /// The answer as it is produced. The default answers [`Llm::complete`] as one burst of
    /// deltas; adapters that can stream override it.
    async fn stream(&self, request: LlmRequest) -> Result<LlmStream> {
        let response = self.complete(request).await?;
        Ok(Box::pin(futures::stream::iter(
            response.into_deltas().into_iter().map(Ok),
        )))
    }
}

impl LlmResponse {
    /// The deltas a streaming upstream would have sent for this answer.
    pub fn into_deltas(self) -> Vec<LlmDelta> {
        let mut out = vec![LlmDelta::Start {
            model: self.model,
            usage: Usage {
                output_tokens: 0,
                ..self.usage.clone()
            },
        }];
        for (index, block) in self.content.into_iter().enumerate() {
            match block {
                ContentBlock::Text { text } => out.push(LlmDelta::Text { index, text }),
                ContentBlock::ToolUse { id, name, input } => {
                    out.push(LlmDelta::ToolUseStart { index, id, name });
                    out.push(LlmDelta::ToolInput {
                        index,
                        partial_json: input.to_string(),
                    });
                }
                ContentBlock::ToolResult { .. } => continue,
            }
            out.push(LlmDelta::BlockStop { index });
        }
        out.push(LlmDelta::Stop {
            stop_reason: self.stop_reason,
            output_tokens: self.usage.output_tokens,
        });
        out
    }
}

/// Folds [`LlmDelta`]s into the answer they make: text joined per block, tool inputs parsed
/// once their block stops (an input that is not JSON is an error naming the tool), usage and
/// stop reason taken from the start and stop deltas.
#[derive(Debug, Default)]
pub struct DeltaAssembler {
    model: String,
    usage: Usage,
    stop_reason: Option<String>,
    blocks: Vec<(usize, Partial)>,
    stopped: bool,
}

#[derive(Debug)]
enum Partial {
    Text(String),
    Tool {
        id: String,
        name: String,
        json: String,
        input: Option<serde_json::Value>,
    },
}

impl DeltaAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    fn block(&mut self, index: usize) -> Option<&mut Partial> {
        self.blocks
            .iter_mut()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| b)
    }

    /// Takes one delta.
    pub fn push(&mut self, delta: &LlmDelta) -> Result<()> {
        match delta {
            LlmDelta::Start { model, usage } => {
                self.model = model.clone();
                self.usage.input_tokens = usage.input_tokens;
                self.usage.cache_creation_input_tokens = usage.cache_creation_input_tokens;
                self.usage.cache_read_input_tokens = usage.cache_read_input_tokens;
            }
            LlmDelta::Text { index, text } => match self.block(*index) {
                Some(Partial::Text(t)) => t.push_str(text),
                Some(Partial::Tool { .. }) => {
                    return Err(Error::upstream(
                        "llm",
                        200,
                        format!("the model sent text into tool block {index}"),
                    ));
                }
                None => self.blocks.push((*index, Partial::Text(text.clone()))),
            },
            LlmDelta::ToolUseStart { index, id, name } => self.blocks.push((
                *index,
                Partial::Tool {
                    id: id.clone(),
                    name: name.clone(),
                    json: String::new(),
                    input: None,
                },
            )),
            LlmDelta::ToolInput {
                index,
                partial_json,
            } => match self.block(*index) {
                Some(Partial::Tool { json, .. }) => json.push_str(partial_json),
                _ => {
                    return Err(Error::upstream(
                        "llm",
                        200,
                        format!("tool input for block {index}, which is not a tool call"),
                    ));
                }
            },
            LlmDelta::BlockStop { index } => {
                if let Some(Partial::Tool {
                    name, json, input, ..
                }) = self.block(*index)
                {
                    let text = if json.trim().is_empty() { "{}" } else { json };
                    *input = Some(serde_json::from_str(text).map_err(|e| {
                        Error::upstream(
                            "llm",
                            200,
                            format!("the model's input for tool {name} is not JSON: {e}"),
                        )
                    })?);
                }
            }
            LlmDelta::Stop {
                stop_reason,
                output_tokens,
            } => {
                self.stop_reason = stop_reason.clone();
                self.usage.output_tokens = *output_tokens;
                self.stopped = true;
            }
        }
        Ok(())
    }

    /// Whether the stop delta arrived.
    pub fn is_complete(&self) -> bool {
        self.stopped
    }

    /// The usage so far.
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// The complete blocks so far: text blocks (non-empty) and tool calls whose input is
    /// complete; a tool call cut off mid-input is left out.
    pub fn finish(self) -> LlmResponse {
        let mut blocks = self.blocks;
        blocks.sort_by_key(|(i, _)| *i);
        let content = blocks
            .into_iter()
            .filter_map(|(_, b)| match b {
                Partial::Text(text) if !text.is_empty() => Some(ContentBlock::Text { text }),
                Partial::Text(_) => None,
                Partial::Tool {
                    id,
                    name,
                    input: Some(input),
                    ..
                } => Some(ContentBlock::ToolUse { id, name, input }),
                Partial::Tool { input: None, .. } => None,
            })
            .collect();
        LlmResponse {
            model: self.model,
            content,
            stop_reason: self.stop_reason,
            usage: self.usage,
        }
    }
}
