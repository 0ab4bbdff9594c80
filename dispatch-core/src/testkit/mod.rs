//! Test helpers (feature `testkit`): a manual clock, a scriptable fake runner, a scripted LLM, and the Store
//! conformance suite that every `Store` implementation must pass.

mod clock;
pub mod conformance;
pub mod dedup_corpus;
pub mod fake_anthropic;
mod fake_llm;
pub mod fake_openai_embed;
mod fake_runner;
mod scripted_llm;

pub use clock::ManualClock;
pub use fake_llm::FakeLlm;
pub use fake_runner::FakeRunner;
pub use scripted_llm::{Hold, ScriptedLlm, Step};
