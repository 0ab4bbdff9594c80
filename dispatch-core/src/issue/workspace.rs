use crate::Timestamp;
use crate::error::{Error, Result};
use crate::ids::{ColumnId, LabelId, WorkspaceId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    /// Identifier prefix (`DEFAULT_ISSUE_PREFIX`, default `DISPATCH`).
    pub issue_prefix: String,
    /// The number the next issue gets; allocated atomically by the store.
    pub next_issue_number: i64,
    pub created_at: Timestamp,
}

/// Whether a column holds open or closed work. Closing is gated (fix verification), so the category,
/// not the name, decides what "closed" means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnCategory {
    Open,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub id: ColumnId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub color: String,
    pub position: i32,
    pub category: ColumnCategory,
}

impl Column {
    pub fn is_closed(&self) -> bool {
        self.category == ColumnCategory::Closed
    }
    /// Case-insensitive name match, as the original resolves columns by name.
    pub fn is_named(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.trim())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewColumn {
    pub name: String,
    pub color: String,
    /// `None` appends after the last column.
    pub position: Option<i32>,
    pub category: ColumnCategory,
}

impl NewColumn {
    pub fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(Error::invalid("name", "column name must not be empty"));
        }
        if !is_valid_hex_color(&self.color) {
            return Err(Error::invalid("color", "color must be #RRGGBB"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub id: LabelId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub color: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewLabel {
    pub name: String,
    pub color: String,
}

impl NewLabel {
    pub fn new(name: impl Into<String>, color: impl Into<String>) -> Self {
        NewLabel {
            name: name.into(),
            color: color.into(),
        }
    }
    pub fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(Error::invalid("name", "label name must not be empty"));
        }
        if !is_valid_hex_color(&self.color) {
            return Err(Error::invalid("color", "color must be #RRGGBB"));
        }
        Ok(())
    }
}

/// `#RRGGBB`, the only colour form the original accepts.
/// The column a status a person or a model typed names: exactly (any case), else the one
/// column whose name contains it. No match, or several, is `InvalidInput` on `status` listing
/// the columns.
pub fn match_column<'a>(cols: &'a [Column], status: &str) -> Result<&'a Column> {
    let want = status.trim().to_lowercase();
    if let Some(c) = cols.iter().find(|c| c.name.to_lowercase() == want) {
        return Ok(c);
    }
    let hits: Vec<&Column> = cols
        .iter()
        .filter(|c| c.name.to_lowercase().contains(&want))
        .collect();
    let names = |cs: &mut dyn Iterator<Item = &Column>| {
        cs.map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
    };
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(crate::error::Error::invalid(
            "status",
            format!(
                "no status matches {status:?}; statuses: {}",
                names(&mut cols.iter())
            ),
        )),
        many => Err(crate::error::Error::invalid(
            "status",
            format!(
                "{status:?} matches several statuses ({}); name one",
                names(&mut many.iter().copied())
            ),
        )),
    }
}

pub fn is_valid_hex_color(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 7 && b[0] == b'#' && b[1..].iter().all(|c| c.is_ascii_hexdigit())
}

/// Names the engine relies on. Columns are found by these names (case-insensitive) in the
/// workspace; a workspace that renamed them still works through categories where it can.
pub mod names {
    pub const BACKLOG: &str = "Backlog";
    pub const INVESTIGATING: &str = "Investigating";
    pub const NEEDS_REVIEW: &str = "Needs Review";
    pub const IN_PROGRESS: &str = "In Progress";
    pub const IN_REVIEW: &str = "In Review";
    pub const DONE: &str = "Done";
    pub const CANCELED: &str = "Canceled";
    /// Legacy column names the original still recognises.
    pub const BEING_DEVELOPED: &str = "Being Developed";
    pub const WAITING_FOR_AGENT: &str = "Waiting for agent";

    pub const LABEL_LOKI: &str = "Loki";
    pub const LABEL_SENTRY: &str = "Sentry";
    pub const LABEL_FIX_FAILED: &str = "Fix Failed";
    pub const COLOR_LOKI: &str = "#E6522C";
    pub const COLOR_SENTRY: &str = "#362D59";
    pub const COLOR_FIX_FAILED: &str = "#DC2626";
}

/// The 7 default board columns of a new workspace (spec §2.4).
pub fn default_columns() -> Vec<NewColumn> {
    use ColumnCategory::*;
    [
        (names::BACKLOG, "#6B7280", Open),
        (names::INVESTIGATING, "#F59E0B", Open),
        (names::NEEDS_REVIEW, "#EAB308", Open),
        (names::IN_PROGRESS, "#3B82F6", Open),
        (names::IN_REVIEW, "#10B981", Open),
        (names::DONE, "#22C55E", Closed),
        (names::CANCELED, "#EF4444", Closed),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (name, color, category))| NewColumn {
        name: name.into(),
        color: color.into(),
        position: Some(i as i32),
        category,
    })
    .collect()
}

/// The 7 default labels of a new workspace (spec §2.4).
pub fn default_labels() -> Vec<NewLabel> {
    [
        ("bug", "#EF4444"),
        ("feature", "#3B82F6"),
        ("enhancement", "#8B5CF6"),
        ("documentation", "#6B7280"),
        ("agent", "#F59E0B"),
        ("investigate", "#EC4899"),
        ("implement", "#10B981"),
    ]
    .into_iter()
    .map(|(n, c)| NewLabel::new(n, c))
    .collect()
}
