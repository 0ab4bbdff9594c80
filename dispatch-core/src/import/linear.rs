//! Linear's CSV export (`ID,Team,Title,Description,Status,Estimate,Priority,…`) → an
//! [`ImportPlan`]. Columns used: ID, Title, Description, Status, Priority, Assignee, Labels,
//! Created, Updated; the rest are ignored. Quoted fields may hold commas, quotes and newlines. A
//! row that cannot be read (wrong number of fields, no ID or title) is reported with the line it
//! starts on and left out; an unknown status or priority, or an unreadable date, is a warning.

use super::{ImportIssue, ImportPlan, RowProblem};
use crate::Timestamp;
use crate::error::{Error, Result};
use crate::issue::{Priority, names, parse_identifier};

pub const SOURCE: &str = "linear";

/// Our column for a Linear status (and the original importer's extra names), case-insensitive;
/// `None` for a status we do not know (the caller puts it in Backlog and warns).
pub fn column_for_status(status: &str) -> Option<&'static str> {
    let s = status.trim().to_lowercase();
    Some(match s.as_str() {
        "backlog" | "triage" | "todo" | "to do" | "unstarted" | "this week" | "ready for dev" => {
            names::BACKLOG
        }
        "investigating" => names::INVESTIGATING,
        "needs review" | "waiting for agent" => names::NEEDS_REVIEW,
        "in progress" | "started" | "being developed" => names::IN_PROGRESS,
        "in review" | "pr open" => names::IN_REVIEW,
        "done" | "completed" | "deployed" | "in staging" | "in production"
        | "verify in staging" | "verify in prod" | "ready for prod" => names::DONE,
        "canceled" | "cancelled" | "duplicate" => names::CANCELED,
        _ => return None,
    })
}

/// Our priority for a Linear priority (Urgent, High, Medium, Low, No priority); `None` for a word
/// we do not know. "No priority" (or empty) is P3, the default.
pub fn priority_for(priority: &str) -> Option<Priority> {
    let p = priority.trim();
    if p.is_empty() || p.eq_ignore_ascii_case("no priority") || p == "0" {
        return Some(Priority::P3);
    }
    p.parse().ok()
}

/// The assignee as we name it: an e-mail address becomes its local part (as the original's
/// importer named the agent), a name stays as it is.
pub fn assignee_name(assignee: &str) -> Option<String> {
    let a = assignee.trim();
    if a.is_empty() {
        return None;
    }
    Some(match a.split_once('@') {
        Some((local, _)) if !local.is_empty() => local.to_string(),
        _ => a.to_string(),
    })
}

/// Linear writes ISO 8601 (`2024-05-14T08:51:23.123Z`); plain `YYYY-MM-DD[ HH:MM:SS]` is read as
/// UTC.
pub fn parse_date(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// The line that says where an imported issue came from; it keeps the Linear identifier
/// searchable.
pub fn origin_note(external_id: &str) -> String {
    format!("Imported from Linear {external_id}.")
}

/// Reads a Linear CSV export. `Err` only when the file as a whole is unusable (not CSV, no ID or
/// Title column); row problems are in the plan. `now` stands in for unreadable dates.
pub fn parse(csv_bytes: &[u8], now: Timestamp) -> Result<ImportPlan> {
    let bytes = csv_bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(csv_bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| Error::invalid("csv", format!("cannot read the header line: {e}")))?
        .clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let (Some(c_id), Some(c_title)) = (col("ID"), col("Title")) else {
        return Err(Error::invalid(
            "csv",
            "not a Linear export: the header needs ID and Title columns",
        ));
    };
    let c_desc = col("Description");
    let c_status = col("Status");
    let c_priority = col("Priority");
    let c_assignee = col("Assignee");
    let c_labels = col("Labels");
    let c_created = col("Created");
    let c_updated = col("Updated");
    let mut plan = ImportPlan {
        source: SOURCE.into(),
        ..ImportPlan::default()
    };
    for record in reader.records() {
        plan.rows += 1;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line());
                let message = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => format!("the row has {len} fields, the header {expected_len}"),
                    _ => format!("cannot read the row: {e}"),
                };
                plan.problems.push(RowProblem {
                    line,
                    external_id: None,
                    kind: Some(super::KIND_ISSUE.into()),
                    message,
                    skipped: true,
                });
                continue;
            }
        };
        let line = record.position().map(|p| p.line());
        let get = |c: Option<usize>| c.and_then(|c| record.get(c)).unwrap_or("").trim();
        let external_id = get(Some(c_id)).to_string();
        let mut problem = |message: String, skipped: bool| {
            plan.problems.push(RowProblem {
                line,
                external_id: (!external_id.is_empty()).then(|| external_id.clone()),
                kind: Some(super::KIND_ISSUE.into()),
                message,
                skipped,
            })
        };
        if parse_identifier(&external_id).is_none() {
            problem(
                format!("ID {external_id:?} is not a Linear identifier (TEAM-123)"),
                true,
            );
            continue;
        }
        let title = get(Some(c_title)).to_string();
        if title.is_empty() {
            problem("the row has no title".into(), true);
            continue;
        }
        let source_status = get(c_status).to_string();
        let column = match column_for_status(&source_status) {
            Some(c) => c,
            None => {
                problem(
                    format!(
                        "unknown status {source_status:?}: put in {}",
                        names::BACKLOG
                    ),
                    false,
                );
                names::BACKLOG
            }
        };
        let source_priority = get(c_priority).to_string();
        let priority = priority_for(&source_priority).unwrap_or_else(|| {
            problem(format!("unknown priority {source_priority:?}: P3"), false);
            Priority::P3
        });
        let mut date = |c: Option<usize>, what: &str| -> Option<Timestamp> {
            let v = get(c);
            if v.is_empty() {
                return None;
            }
            let t = parse_date(v);
            if t.is_none() {
                problem(format!("{what} date {v:?} is not a date"), false);
            }
            t
        };
        let created_at = date(c_created, "Created").unwrap_or(now);
        let updated_at = date(c_updated, "Updated").unwrap_or(created_at);
        let labels = get(c_labels)
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        let note = origin_note(&external_id);
        let description = match get(c_desc) {
            "" => note,
            d => format!("{d}\n\n{note}"),
        };
        plan.issues.push(ImportIssue {
            external_id,
            line,
            title,
            description: Some(description),
            source_status,
            column: column.to_string(),
            source_priority,
            priority,
            assignee: assignee_name(get(c_assignee)),
            labels,
            created_at,
            updated_at,
            number: None,
            customer: None,
            reporter: None,
            plan: Default::default(),
            blocked_reason: None,
            agent_status: Default::default(),
            record_created: true,
        });
    }
    Ok(plan)
}
