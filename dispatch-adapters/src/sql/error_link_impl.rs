//! [`ErrorLinkStore`](dispatch_core::ports::ErrorLinkStore) for SQLite and PostgreSQL: error
//! links, ingest (known keys in one statement, unseen keys created in batches by the group-commit
//! worker of [`group_commit`](crate::sql::group_commit)), cooldowns and owed follow-ups.

macro_rules! impl_sql_error_link_store {
    ($S:ident, $DB:ty) => {
        mod sql_error_link_impl {
            #[allow(unused_imports)]
            use super::*;
            use super::sql_store_shared::*;
            use dispatch_core::Timestamp;
            use dispatch_core::error::{Error, Result};
            use dispatch_core::ids::{ColumnId, IssueId, LinkId, WorkspaceId};
            use dispatch_core::issue::{
                HistoryAction, HistoryEntry, Issue, NewHistory, format_identifier,
            };
            use dispatch_core::ports::{ErrorLink, ErrorLinkStore, IngestDraft, IngestOutcome};
            use dispatch_core::verify::FixAttempt;
            use crate::sql::{db, decode_err, to_i64};
            use crate::sql::group_commit::{self, IngestQueue, Pending, share_error};
            use async_trait::async_trait;
            use serde_json::json;
            use sqlx::types::Json;

            /// Answers the callers of one known key, whose counts one statement added together:
            /// each sees the count after its own event, as if the calls had run one by one.
            fn answer_in_order(group: Vec<Pending<(WorkspaceId, IngestDraft), IngestOutcome>>, known: IngestOutcome) {
                let total = known.link.event_count;
                let mut after = group.iter().fold(0u64, |n, p| n.saturating_add(p.item.1.event_count));
                for p in group {
                    after = after.saturating_sub(p.item.1.event_count);
                    let mut o = known.clone();
                    o.link.event_count = total.saturating_sub(after);
                    p.answer(Ok(o));
                }
            }

            impl $S {
                /// Adds `count` events to a known key and reads the issue and its newest fix attempt,
                /// in one statement (autocommitted: it is its own transaction). The UPDATE's row lock
                /// makes it atomic against every other ingest of the key. `None`: the key is unseen.
                async fn add_to_known(&self, source: &str, key: &str, count: u64, seen_at: Timestamp) -> Result<Option<IngestOutcome>> {
                    let row = Self::add_to_known_query(source, key, count, seen_at)
                        .fetch_optional(self.autocommit())
                        .await
                        .map_err(db("update error link"))?;
                    row.as_ref().map(Self::known_outcome).transpose()
                }

                async fn add_to_known_tx(tx: &mut Tx, source: &str, key: &str, count: u64, seen_at: Timestamp) -> Result<Option<IngestOutcome>> {
                    let row = Self::add_to_known_query(source, key, count, seen_at)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(db("update error link"))?;
                    row.as_ref().map(Self::known_outcome).transpose()
                }

                fn add_to_known_query<'q>(source: &'q str, key: &'q str, count: u64, seen_at: Timestamp)
                    -> sqlx::query::Query<'q, $DB, <$DB as sqlx::Database>::Arguments>
                {
                    // The count saturates at i64::MAX, as `to_i64` does; last_seen_at only moves forward.
                    sqlx::query(
                        "UPDATE dispatch_error_link SET \
                         event_count = CASE WHEN event_count >= 9223372036854775807 - $3 THEN 9223372036854775807 ELSE event_count + $3 END, \
                         last_seen_at = CASE WHEN last_seen_at < $4 THEN $4 ELSE last_seen_at END \
                         WHERE source = $1 AND external_key = $2 \
                         RETURNING *, (SELECT i.doc FROM dispatch_issue i WHERE i.id = dispatch_error_link.issue_id) AS doc, \
                         (SELECT f.doc FROM dispatch_fix_attempt f WHERE f.issue_id = dispatch_error_link.issue_id \
                          ORDER BY f.created_at DESC, f.id DESC LIMIT 1) AS fix_doc",
                    )
                    .bind(source)
                    .bind(key)
                    .bind(to_i64(count))
                    .bind(Self::ts(seen_at))
                }

                /// [`Self::add_to_known`] for several distinct keys in one statement (an UPDATE
                /// joined to the list of keys), keyed by (source, key); unseen keys are absent. The
                /// statement is SQLite's (`RETURNING *` names only the updated table there); it runs
                /// for stores with `KNOWN_KEYS_IN_ONE_STATEMENT` only.
                async fn add_to_known_many(&self, adds: &[(&str, &str, u64, Timestamp)]) -> Result<std::collections::HashMap<(String, String), IngestOutcome>> {
                    if let [(source, key, count, seen)] = adds {
                        let one = self.add_to_known(source, key, *count, *seen).await?;
                        return Ok(one.into_iter().map(|o| ((o.link.source.clone(), o.link.external_key.clone()), o)).collect());
                    }
                    let mut q = sqlx::QueryBuilder::<$DB>::new("WITH v (source, external_key, n, seen) AS (");
                    q.push_values(adds, |mut b, (source, key, count, seen)| {
                        b.push_bind(*source).push_bind(*key).push_bind(to_i64(*count)).push_bind(Self::ts(*seen));
                    });
                    q.push(
                        ") UPDATE dispatch_error_link SET \
                         event_count = CASE WHEN dispatch_error_link.event_count >= 9223372036854775807 - v.n THEN 9223372036854775807 ELSE dispatch_error_link.event_count + v.n END, \
                         last_seen_at = CASE WHEN dispatch_error_link.last_seen_at < v.seen THEN v.seen ELSE dispatch_error_link.last_seen_at END \
                         FROM v WHERE dispatch_error_link.source = v.source AND dispatch_error_link.external_key = v.external_key \
                         RETURNING *, (SELECT i.doc FROM dispatch_issue i WHERE i.id = dispatch_error_link.issue_id) AS doc, \
                         (SELECT f.doc FROM dispatch_fix_attempt f WHERE f.issue_id = dispatch_error_link.issue_id \
                          ORDER BY f.created_at DESC, f.id DESC LIMIT 1) AS fix_doc",
                    );
                    let rows = q.build().fetch_all(self.autocommit()).await.map_err(db("update error links"))?;
                    rows.iter()
                        .map(|r| {
                            let o = Self::known_outcome(r)?;
                            Ok(((o.link.source.clone(), o.link.external_key.clone()), o))
                        })
                        .collect()
                }

                fn known_outcome(row: &DbRow) -> Result<IngestOutcome> {
                    let link = Self::row_link(row)?;
                    let issue = doc_col!(row, "dispatch_issue", Issue)?;
                    let latest_fix = sqlx::Row::try_get::<Option<Json<FixAttempt>>, _>(row, "fix_doc")
                        .map_err(|e| decode_err("dispatch_fix_attempt", "doc", e))?
                        .map(|j| j.0);
                    Ok(IngestOutcome { issue, link, created: false, latest_fix })
                }

                /// The group-commit worker: answers queued ingests batch by batch until the queue is
                /// empty. A guard hands the queue back if this task dies (panic, runtime shutdown),
                /// so the next call starts a new worker instead of waiting forever.
                async fn drain_ingest_queue(&self) {
                    struct Restart<'a>(&'a IngestQueue, bool);
                    impl Drop for Restart<'_> {
                        fn drop(&mut self) {
                            if self.1 {
                                self.0.worker_died();
                            }
                        }
                    }
                    let mut guard = Restart(self.ingest_queue(), true);
                    loop {
                        let batch = self.ingest_queue().next_batch();
                        if batch.is_empty() {
                            guard.1 = false;
                            return;
                        }
                        let (calls, started) = (batch.len(), std::time::Instant::now());
                        self.ingest_batch(batch).await;
                        tracing::trace!(calls, micros = started.elapsed().as_micros() as u64, "ingest batch");
                    }
                }

                /// One batch: each known key once (its callers' counts summed), then every unseen
                /// key in one creation transaction. When that transaction fails, each of its calls
                /// runs again on its own, so one bad row cannot fail its neighbours.
                async fn ingest_batch(&self, batch: Vec<Pending<(WorkspaceId, IngestDraft), IngestOutcome>>) {
                    let mut unseen = Vec::new();
                    {
                        let mut by_key: Vec<Vec<Pending<(WorkspaceId, IngestDraft), IngestOutcome>>> = Vec::new();
                        let mut index: std::collections::HashMap<(String, String), usize> = std::collections::HashMap::new();
                        for p in batch {
                            let k = (p.item.1.source.clone(), p.item.1.external_key.clone());
                            match index.get(&k) {
                                Some(&i) => by_key[i].push(p),
                                None => {
                                    index.insert(k, by_key.len());
                                    by_key.push(vec![p]);
                                }
                            }
                        }
                        let adds: Vec<(&str, &str, u64, Timestamp)> = by_key
                            .iter()
                            .map(|group| {
                                let d = &group[0].item.1;
                                let total = group.iter().fold(0u64, |n, p| n.saturating_add(p.item.1.event_count));
                                let seen = group.iter().map(|p| p.item.1.seen_at).max().unwrap_or(d.seen_at);
                                (d.source.as_str(), d.external_key.as_str(), total, seen)
                            })
                            .collect();
                        if Self::KNOWN_KEYS_IN_ONE_STATEMENT {
                            // One writer (SQLite): every key in one statement, which commits or
                            // fails as a whole, so one answer for all is the truth.
                            match self.add_to_known_many(&adds).await {
                                Ok(mut found) => {
                                    for group in by_key {
                                        let d = &group[0].item.1;
                                        match found.remove(&(d.source.clone(), d.external_key.clone())) {
                                            Some(known) => answer_in_order(group, known),
                                            None => unseen.extend(group),
                                        }
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "grouped ingest of known keys failed");
                                    for p in by_key.into_iter().flatten() {
                                        p.answer(Err(share_error(&e)));
                                    }
                                }
                            }
                        } else {
                            // Concurrent writers (PostgreSQL): each key on its own pooled
                            // connection, in parallel, committing on its own; one key's deliveries
                            // are still one UPDATE. Each key's callers get that key's answer: a key
                            // that failed does not fail the others, whose counts are stored.
                            let results = futures::future::join_all(adds.iter().map(|(source, key, count, seen)| self.add_to_known(source, key, *count, *seen))).await;
                            for (group, result) in by_key.into_iter().zip(results) {
                                match result {
                                    Ok(Some(known)) => answer_in_order(group, known),
                                    Ok(None) => unseen.extend(group),
                                    Err(e) => {
                                        tracing::warn!(error = %e, key = %group[0].item.1.external_key, "ingest of a known key failed");
                                        for p in group {
                                            p.answer(Err(share_error(&e)));
                                        }
                                    }
                                }
                            }
                        }
                    }
                    if unseen.is_empty() {
                        return;
                    }
                    let items: Vec<&(WorkspaceId, IngestDraft)> = unseen.iter().map(|p| &p.item).collect();
                    match self.create_batch(&items).await {
                        Ok(outcomes) => {
                            for (p, o) in unseen.into_iter().zip(outcomes) {
                                p.answer(Ok(o));
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, calls = unseen.len(), "grouped issue creation failed; retrying each call on its own");
                            for p in unseen {
                                let (ws, d) = p.item.clone();
                                let r = self.ingest_one(ws, d).await;
                                p.answer(r);
                            }
                        }
                    }
                }

                /// One call in its own transactions: the known-key statement, else a creation
                /// transaction that looks again under the key's lock.
                async fn ingest_one(&self, ws: WorkspaceId, d: IngestDraft) -> Result<IngestOutcome> {
                    if let Some(known) = self.add_to_known(&d.source, &d.external_key, d.event_count, d.seen_at).await? {
                        return Ok(known);
                    }
                    let mut tx = self.write_tx().await?;
                    let mut out = Self::create_in_tx(&mut tx, &[&(ws, d)]).await?;
                    Self::commit(tx).await?;
                    out.pop().ok_or_else(|| Error::internal("creation returned no outcome"))
                }

                async fn create_batch(&self, items: &[&(WorkspaceId, IngestDraft)]) -> Result<Vec<IngestOutcome>> {
                    let mut tx = self.write_tx().await?;
                    let out = Self::create_in_tx(&mut tx, items).await?;
                    Self::commit(tx).await?;
                    Ok(out)
                }

                /// Creates the issues and links of unseen keys inside `tx`, one outcome per item in
                /// order. Each key is looked at again under its lock (PostgreSQL: an advisory lock;
                /// SQLite: the writer lock already): a concurrent call may have created it since. A
                /// key repeated within the items is created once, the later calls add to it.
                /// Identifiers are allocated for the whole batch by one counter update, and the rows
                /// go in with one multi-row INSERT per table.
                async fn create_in_tx(tx: &mut Tx, items: &[&(WorkspaceId, IngestDraft)]) -> Result<Vec<IngestOutcome>> {
                    enum Plan { Known(usize), Create(usize), SameAs(usize) }
                    // The distinct keys, first call first; a repeated key is created once and its
                    // later calls add to it.
                    let mut first_of: std::collections::HashMap<(&str, &str), usize> = std::collections::HashMap::new();
                    let mut distinct: Vec<usize> = Vec::new();
                    for (i, (_, d)) in items.iter().enumerate() {
                        first_of.entry((d.source.as_str(), d.external_key.as_str())).or_insert_with(|| {
                            distinct.push(i);
                            i
                        });
                    }
                    // Under the keys' locks (PostgreSQL: advisory locks, taken in one global order so
                    // that two processes' batches cannot deadlock; SQLite: the writer lock already),
                    // look again with one statement: a concurrent call may have created some since.
                    let mut lock_keys: Vec<String> = distinct
                        .iter()
                        .map(|&i| format!("ingest:{}:{}", items[i].1.source, items[i].1.external_key))
                        .collect();
                    lock_keys.sort_unstable();
                    Self::lock_keys(tx, &lock_keys).await?;
                    let mut q = sqlx::QueryBuilder::<$DB>::new(
                        "SELECT source, external_key FROM dispatch_error_link WHERE (source, external_key) IN (",
                    );
                    q.push_values(&distinct, |mut b, &i| {
                        b.push_bind(items[i].1.source.as_str()).push_bind(items[i].1.external_key.as_str());
                    });
                    q.push(")");
                    let existing: std::collections::HashSet<(String, String)> = q
                        .build()
                        .fetch_all(&mut **tx)
                        .await
                        .map_err(db("read error links"))?
                        .iter()
                        .map(|r| Ok((col!(r, "dispatch_error_link", "source", String)?, col!(r, "dispatch_error_link", "external_key", String)?)))
                        .collect::<Result<_>>()?;
                    // Keys that exist after all: their outcome with every call's count added, and
                    // what is left to hand out to their calls in order.
                    let mut known: std::collections::HashMap<usize, (IngestOutcome, u64)> = std::collections::HashMap::new();
                    let mut new_keys: Vec<usize> = Vec::new();
                    for &i in &distinct {
                        let d = &items[i].1;
                        if existing.contains(&(d.source.clone(), d.external_key.clone())) {
                            let calls = || items.iter().filter(|(_, x)| x.source == d.source && x.external_key == d.external_key);
                            let total = calls().fold(0u64, |n, (_, x)| n.saturating_add(x.event_count));
                            let seen = calls().map(|(_, x)| x.seen_at).max().unwrap_or(d.seen_at);
                            let o = Self::add_to_known_tx(tx, &d.source, &d.external_key, total, seen)
                                .await?
                                .ok_or_else(|| Error::internal("an error link vanished under its lock"))?;
                            known.insert(i, (o, total));
                        } else {
                            new_keys.push(i);
                        }
                    }
                    let mut plans = Vec::with_capacity(items.len());
                    for (i, (_, d)) in items.iter().enumerate() {
                        let first = first_of.get(&(d.source.as_str(), d.external_key.as_str())).copied().unwrap_or(i);
                        plans.push(if known.contains_key(&first) {
                            Plan::Known(first)
                        } else if first != i {
                            Plan::SameAs(first)
                        } else {
                            Plan::Create(i)
                        });
                    }
                    // Identifiers: one counter update per workspace for all its new issues, which
                    // also names the column new issues start in.
                    let mut issues: std::collections::HashMap<usize, Issue> = std::collections::HashMap::new();
                    let mut workspaces: Vec<WorkspaceId> = new_keys.iter().map(|&i| items[i].0).collect();
                    workspaces.sort_by_key(|w| w.0);
                    workspaces.dedup();
                    for ws in workspaces {
                        let mine: Vec<usize> = new_keys.iter().copied().filter(|&i| items[i].0 == ws).collect();
                        let n = i64::try_from(mine.len()).unwrap_or(i64::MAX);
                        let row = sqlx::query(
                            "UPDATE dispatch_workspace SET next_issue_number = next_issue_number + $2 WHERE id = $1 \
                             RETURNING next_issue_number, issue_prefix, \
                             (SELECT c.id FROM dispatch_column c WHERE c.workspace_id = dispatch_workspace.id AND c.category = 'open' \
                              ORDER BY c.position, c.name LIMIT 1) AS open_column",
                        )
                        .bind(ws.0)
                        .bind(n)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(db("allocate identifiers"))?
                        .ok_or_else(|| Error::not_found(format!("workspace {ws} not found")))?;
                        let first = col!(row, "dispatch_workspace", "next_issue_number", i64)? - n;
                        let prefix: String = col!(row, "dispatch_workspace", "issue_prefix", String)?;
                        let open = col!(row, "dispatch_column", "open_column", Option<uuid::Uuid>)?
                            .map(ColumnId)
                            .ok_or_else(|| Error::conflict("the workspace has no open column"))?;
                        // Only a caller that names a column needs the column list.
                        let columns = if mine.iter().any(|&i| items[i].1.new_issue.column_id.is_some()) {
                            Self::columns_tx(tx, ws).await?
                        } else {
                            Vec::new()
                        };
                        for (offset, &i) in (0i64..).zip(&mine) {
                            let d = &items[i].1;
                            let column_id = match d.new_issue.column_id {
                                Some(c) if columns.iter().any(|x| x.id == c) => c,
                                Some(c) => return Err(Error::invalid("statusId", format!("column {c} is not in this workspace"))),
                                None => open,
                            };
                            let number = first + offset;
                            let issue = d.new_issue.clone().into_issue(ws, number, format_identifier(&prefix, number), column_id, d.seen_at);
                            issues.insert(i, issue);
                        }
                    }
                    // Links with every count of the batch for their key; each caller sees the count
                    // after its own event, as if the calls had run one after the other.
                    let mut links: std::collections::HashMap<usize, ErrorLink> = std::collections::HashMap::new();
                    let mut outcomes: Vec<Option<IngestOutcome>> = Vec::with_capacity(items.len());
                    for (i, plan) in plans.into_iter().enumerate() {
                        let d = &items[i].1;
                        let out = match plan {
                            Plan::Known(first) => {
                                let (o, left) = known.get_mut(&first).ok_or_else(|| Error::internal("link missing from its batch"))?;
                                *left = left.saturating_sub(d.event_count);
                                let mut o = o.clone();
                                o.link.event_count = o.link.event_count.saturating_sub(*left);
                                Some(o)
                            }
                            Plan::Create(i) => {
                                let issue = issues.get(&i).cloned().ok_or_else(|| Error::internal("issue missing from its batch"))?;
                                let link = ErrorLink {
                                    id: LinkId::new(),
                                    issue_id: issue.id,
                                    source: d.source.clone(),
                                    external_key: d.external_key.clone(),
                                    fingerprint: d.fingerprint.clone(),
                                    url: d.url.clone(),
                                    metadata: d.metadata.clone(),
                                    event_count: d.event_count,
                                    first_seen_at: d.seen_at,
                                    last_seen_at: d.seen_at,
                                    cooldown_until: None,
                                };
                                links.insert(i, link.clone());
                                Some(IngestOutcome { issue, link, created: true, latest_fix: None })
                            }
                            Plan::SameAs(first) => {
                                let link = links.get_mut(&first).ok_or_else(|| Error::internal("link missing from its batch"))?;
                                link.event_count = link.event_count.saturating_add(d.event_count);
                                link.last_seen_at = link.last_seen_at.max(d.seen_at);
                                let issue = issues.get(&first).cloned().ok_or_else(|| Error::internal("issue missing from its batch"))?;
                                Some(IngestOutcome { issue, link: link.clone(), created: false, latest_fix: None })
                            }
                        };
                        outcomes.push(out);
                    }
                    if !new_keys.is_empty() {
                        let created: Vec<(&Issue, &ErrorLink, &IngestDraft)> = new_keys
                            .iter()
                            .filter_map(|i| Some((issues.get(i)?, links.get(i)?, &items[*i].1)))
                            .collect();
                        let mut q = sqlx::QueryBuilder::<$DB>::new(
                            "INSERT INTO dispatch_issue (id, workspace_id, number, identifier, title, description, column_id, customer_id, spawn_active, version, created_at, updated_at, doc) ",
                        );
                        q.push_values(&created, |mut b, (i, _, _)| {
                            b.push_bind(i.id.0)
                                .push_bind(i.workspace_id.0)
                                .push_bind(i.number)
                                .push_bind(i.identifier.as_str())
                                .push_bind(i.title.as_str())
                                .push_bind(i.description.as_deref())
                                .push_bind(i.column_id.0)
                                .push_bind(i.customer_id.map(|c| c.0))
                                .push_bind(i.spawn_status.is_some_and(|s| s.is_active()))
                                .push_bind(i.version)
                                .push_bind(Self::ts(i.created_at))
                                .push_bind(Self::ts(i.updated_at))
                                .push_bind(Json(*i));
                        });
                        q.build().execute(&mut **tx).await.map_err(db("insert issues"))?;
                        let history: Vec<(IssueId, HistoryEntry)> = created
                            .iter()
                            .map(|(i, _, d)| {
                                let h = NewHistory::new(HistoryAction::Created, &d.actor)
                                    .values(None, Some(json!({"identifier": i.identifier, "title": i.title, "source": d.source})));
                                (i.id, h.into_entry(i.id, d.seen_at))
                            })
                            .collect();
                        let mut q = sqlx::QueryBuilder::<$DB>::new("INSERT INTO dispatch_history (id, issue_id, action, created_at, doc) ");
                        q.push_values(&history, |mut b, (issue, e)| {
                            b.push_bind(e.id.0)
                                .push_bind(issue.0)
                                .push_bind(history_action(e))
                                .push_bind(Self::ts(e.created_at))
                                .push_bind(Json(e));
                        });
                        q.build().execute(&mut **tx).await.map_err(db("insert history"))?;
                        // The links' final counts: the batch's later calls for a key add to it.
                        let final_links: Vec<&ErrorLink> = new_keys.iter().filter_map(|i| links.get(i)).collect();
                        let mut q = sqlx::QueryBuilder::<$DB>::new(
                            "INSERT INTO dispatch_error_link (id, issue_id, source, external_key, fingerprint, url, metadata, event_count, first_seen_at, last_seen_at) ",
                        );
                        q.push_values(&final_links, |mut b, l| {
                            b.push_bind(l.id.0)
                                .push_bind(l.issue_id.0)
                                .push_bind(l.source.as_str())
                                .push_bind(l.external_key.as_str())
                                .push_bind(l.fingerprint.as_str())
                                .push_bind(l.url.as_deref())
                                .push_bind(Json(&l.metadata))
                                .push_bind(to_i64(l.event_count))
                                .push_bind(Self::ts(l.first_seen_at))
                                .push_bind(Self::ts(l.last_seen_at));
                        });
                        q.build().execute(&mut **tx).await.map_err(db("insert error links"))?;
                        // The new issues' notifications, in the same transaction (a row refused
                        // fails the batch, whose calls are then tried each on its own).
                        for (issue, _, d) in &created {
                            if let Some(c) = d.new_issue.initial_watcher() {
                                Self::insert_watcher_tx(tx, issue.id, c, d.seen_at).await?;
                            }
                            let rows = d.outbox.render(issue)?;
                            Self::enqueue_deliveries_tx(tx, rows, d.seen_at).await?;
                        }
                    }
                    outcomes
                        .into_iter()
                        .map(|o| o.ok_or_else(|| Error::internal("batch item without an outcome")))
                        .collect()
                }
            }

            #[async_trait]
            impl ErrorLinkStore for $S {
                async fn ingest_error(&self, ws: WorkspaceId, d: IngestDraft) -> Result<IngestOutcome> {
                    if d.event_count == 0 {
                        return Err(Error::invalid("event_count", "event count must be at least 1"));
                    }
                    // Checked before queueing, so that one caller's bad input never fails a batch.
                    d.new_issue.validate()?;
                    let (answer, start_worker) = self.ingest_queue().submit((ws, d))?;
                    if start_worker {
                        let store = self.clone();
                        tokio::spawn(async move { store.drain_ingest_queue().await });
                    }
                    group_commit::wait(answer).await
                }

                async fn get_link(&self, source: &str, external_key: &str) -> Result<Option<ErrorLink>> {
                    let row = sqlx::query("SELECT * FROM dispatch_error_link WHERE source = $1 AND external_key = $2")
                        .bind(source)
                        .bind(external_key)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db("read error link"))?;
                    row.as_ref().map(Self::row_link).transpose()
                }

                async fn links_for_issue(&self, issue: IssueId) -> Result<Vec<ErrorLink>> {
                    let rows = sqlx::query("SELECT * FROM dispatch_error_link WHERE issue_id = $1 ORDER BY first_seen_at, id")
                        .bind(issue.0)
                        .fetch_all(self.reader())
                        .await
                        .map_err(db("list error links"))?;
                    rows.iter().map(Self::row_link).collect()
                }

                async fn set_cooldown(&self, issue: IssueId, until: Timestamp) -> Result<()> {
                    let mut tx = self.write_tx().await?;
                    sqlx::query("UPDATE dispatch_error_link SET cooldown_until = $2 WHERE issue_id = $1")
                        .bind(issue.0)
                        .bind(Self::ts(until))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("set cooldown"))?;
                    Self::commit(tx).await
                }

                async fn owe_follow_up(&self, link: LinkId, owed_at: Timestamp) -> Result<()> {
                    let mut tx = self.write_tx().await?;
                    sqlx::query(
                        "INSERT INTO dispatch_ingest_follow_up (link_id, owed_at) VALUES ($1, $2) \
                         ON CONFLICT (link_id) DO UPDATE SET owed_at = CASE WHEN dispatch_ingest_follow_up.owed_at < excluded.owed_at THEN excluded.owed_at ELSE dispatch_ingest_follow_up.owed_at END",
                    )
                    .bind(link.0)
                    .bind(Self::ts(owed_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| match e {
                        sqlx::Error::Database(d) if d.is_foreign_key_violation() => Error::not_found(format!("error link {link} not found")),
                        e => db("owe follow-up")(e),
                    })?;
                    Self::commit(tx).await
                }

                async fn owed_follow_ups(&self, upto: Timestamp, limit: usize) -> Result<Vec<(ErrorLink, Timestamp)>> {
                    let rows = sqlx::query(
                        "SELECT l.*, f.owed_at AS owed_at FROM dispatch_ingest_follow_up f JOIN dispatch_error_link l ON l.id = f.link_id \
                         WHERE f.owed_at <= $1 ORDER BY f.owed_at, f.link_id LIMIT $2",
                    )
                    .bind(Self::ts(upto))
                    .bind(to_i64(limit as u64))
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("owed follow-ups"))?;
                    rows.iter()
                        .map(|r| Ok((Self::row_link(r)?, Self::get_ts(r, "dispatch_ingest_follow_up", "owed_at")?)))
                        .collect()
                }

                async fn settle_follow_up(&self, link: LinkId, upto: Timestamp) -> Result<()> {
                    let mut tx = self.write_tx().await?;
                    sqlx::query("DELETE FROM dispatch_ingest_follow_up WHERE link_id = $1 AND owed_at <= $2")
                        .bind(link.0)
                        .bind(Self::ts(upto))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("settle follow-up"))?;
                    Self::commit(tx).await
                }
            }
        }
    };
}
