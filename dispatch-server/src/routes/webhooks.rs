//! Routes of this group arrive with their own change; the module exists so that the router
//! composition in `routes/mod.rs` does not change when they do.

use crate::state::AppState;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new()
}
