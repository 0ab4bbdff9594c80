//! Issues ("missions" in the original UI): the board, its columns and labels, comments, watchers and
//! the history of every change.

mod comment;
mod history;
mod identifier;
#[allow(clippy::module_inception)]
mod issue;
mod patch;
mod workspace;

pub use comment::{Comment, NewComment};
pub use history::{Actor, ActorKind, HistoryAction, HistoryEntry, NewHistory};
pub use identifier::{find_identifiers, format_identifier, parse_identifier};
pub use issue::{AgentStatus, Issue, IssueFilter, NewIssue, PlanFields, Priority, SpawnStatus};
pub use patch::{IssuePatch, diff_history};
pub use workspace::{
    Column, ColumnCategory, Label, NewColumn, NewLabel, Workspace, default_columns, default_labels,
    is_valid_hex_color, match_column, names,
};
