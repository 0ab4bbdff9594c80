//! A complete in-memory [`crate::ports::Store`] and [`crate::ports::EventBus`]: for tests, examples,
//! embedding Dispatch in a process that keeps nothing, and as the reference the database stores
//! are checked against (they all pass the same conformance suite).

mod bus;
mod store;

pub use bus::MemoryEventBus;
pub use store::MemoryStore;
