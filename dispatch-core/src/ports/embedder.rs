use crate::error::Result;
use async_trait::async_trait;

/// Optional text embeddings for semantic search and similar issues.
#[async_trait]
pub trait Embedder: Send + Sync {
    fn model(&self) -> &str;
    fn dimensions(&self) -> usize;
    /// One vector per input text, in order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>>;
}
