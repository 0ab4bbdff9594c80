//! The outbox store (`dispatch_outbox`), written once for SQLite and PostgreSQL. A claim takes
//! due pending rows (`FOR NO KEY UPDATE SKIP LOCKED` on PostgreSQL, so concurrent workers take
//! different rows; SQLite's single writer serialises claims) and stores each row claimed by the
//! core's [`Delivery::claim`]; a settlement is a compare-and-set on the claim's token.

macro_rules! impl_sql_outbox_store {
    ($S:ident, $DB:ty, skip_locked = $SKIP:literal) => {
        mod sql_outbox_impl {
            #[allow(unused_imports)]
            use super::*;
            use crate::sql::{db, to_i64};
            use async_trait::async_trait;
            use chrono::Duration;
            use dispatch_core::Timestamp;
            use dispatch_core::error::{Error, Result};
            use dispatch_core::ids::DeliveryId;
            use dispatch_core::outbox::{Delivery, DeliveryFilter, NewDelivery};
            use dispatch_core::ports::OutboxStore;
            use sqlx::types::Json;

            type Tx = sqlx::Transaction<'static, $DB>;

            fn no_delivery(id: DeliveryId) -> Error {
                Error::not_found(format!("no delivery {id}"))
            }

            impl $S {
                /// Inserts a new delivery row unless its key is stored (nothing happens then).
                fn insert_delivery_query(row: &Delivery) -> sqlx::query::Query<'_, $DB, <$DB as sqlx::Database>::Arguments> {
                    sqlx::query(
                        "INSERT INTO dispatch_outbox (id, idempotency_key, kind, state, event, issue_id, after_key, due_at, lease_until, lease_token, created_at, doc) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, $9, $10) ON CONFLICT (idempotency_key) DO NOTHING",
                    )
                    .bind(row.id.0)
                    .bind(&row.idempotency_key)
                    .bind(&row.kind)
                    .bind(row.state.as_str())
                    .bind(&row.event)
                    .bind(row.issue_id.map(|i| i.0))
                    .bind(&row.after_key)
                    .bind(Self::ts(row.due_at))
                    .bind(Self::ts(row.created_at))
                    .bind(Json(row))
                }

                /// Stores the outbox rows of a change in the change's transaction (a key
                /// already stored is left as it is, as `enqueue_delivery` does).
                pub(super) async fn enqueue_deliveries_tx(tx: &mut Tx, rows: Vec<NewDelivery>, now: Timestamp) -> Result<()> {
                    for d in rows {
                        Self::insert_delivery_query(&d.into_delivery(now))
                            .execute(&mut **tx)
                            .await
                            .map_err(db("enqueue delivery"))?;
                    }
                    Ok(())
                }

                async fn save_delivery_tx(tx: &mut Tx, d: &Delivery) -> Result<()> {
                    sqlx::query(
                        "UPDATE dispatch_outbox SET state = $2, due_at = $3, lease_until = $4, lease_token = $5, doc = $6 WHERE id = $1",
                    )
                    .bind(d.id.0)
                    .bind(d.state.as_str())
                    .bind(Self::ts(d.due_at))
                    .bind(Self::ts_opt(d.lease_until))
                    .bind(d.lease_token)
                    .bind(Json(d))
                    .execute(&mut **tx)
                    .await
                    .map_err(db("save delivery"))?;
                    Ok(())
                }
            }

            #[async_trait]
            impl OutboxStore for $S {
                async fn enqueue_delivery(&self, d: &NewDelivery, now: Timestamp) -> Result<(Delivery, bool)> {
                    d.validate()?;
                    let row = d.clone().into_delivery(now);
                    let r = Self::insert_delivery_query(&row)
                    .execute(self.autocommit())
                    .await
                    .map_err(db("enqueue delivery"))?;
                    if r.rows_affected() == 1 {
                        return Ok((row, true));
                    }
                    let existing = self
                        .delivery_by_key(&row.idempotency_key)
                        .await?
                        .ok_or_else(|| Error::internal("a delivery key conflicted but no row has it"))?;
                    Ok((existing, false))
                }

                async fn claim_deliveries(&self, kinds: &[String], now: Timestamp, lease: Duration, limit: usize) -> Result<Vec<Delivery>> {
                    if kinds.is_empty() || limit == 0 {
                        return Ok(Vec::new());
                    }
                    let mut tx = self.write_tx().await?;
                    let mut out: Vec<Delivery> = Vec::new();
                    for kind in kinds {
                        let left = limit - out.len();
                        if left == 0 {
                            break;
                        }
                        let rows = sqlx::query(concat!(
                            "SELECT o.doc FROM dispatch_outbox o WHERE o.state = 'pending' AND o.kind = $1 AND o.due_at <= $2 \
                             AND (o.lease_until IS NULL OR o.lease_until <= $2) \
                             AND (o.after_key IS NULL OR NOT EXISTS (SELECT 1 FROM dispatch_outbox p WHERE p.idempotency_key = o.after_key AND p.state = 'pending')) \
                             ORDER BY o.due_at, o.id LIMIT $3",
                            $SKIP
                        ))
                        .bind(kind)
                        .bind(Self::ts(now))
                        .bind(to_i64(left as u64))
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db("claim deliveries"))?;
                        for r in rows {
                            let mut d: Delivery = doc_col!(r, "dispatch_outbox", Delivery)?;
                            d.claim(now, lease);
                            Self::save_delivery_tx(&mut tx, &d).await?;
                            out.push(d);
                        }
                    }
                    tx.commit().await.map_err(db("commit"))?;
                    out.sort_by(|a, b| (a.due_at, a.id).cmp(&(b.due_at, b.id)));
                    Ok(out)
                }

                async fn settle_delivery(&self, d: &Delivery, token: uuid::Uuid) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE dispatch_outbox SET state = $2, due_at = $3, lease_until = $4, lease_token = $5, doc = $6 \
                         WHERE id = $1 AND state = 'pending' AND lease_token = $7",
                    )
                    .bind(d.id.0)
                    .bind(d.state.as_str())
                    .bind(Self::ts(d.due_at))
                    .bind(Self::ts_opt(d.lease_until))
                    .bind(d.lease_token)
                    .bind(Json(d))
                    .bind(token)
                    .execute(self.autocommit())
                    .await
                    .map_err(db("settle delivery"))?;
                    if r.rows_affected() == 1 {
                        return Ok(true);
                    }
                    // Nothing written: the claim was lost, or there is no such delivery.
                    self.get_delivery(d.id).await.map(|_| false)
                }

                async fn get_delivery(&self, id: DeliveryId) -> Result<Delivery> {
                    let row = sqlx::query("SELECT doc FROM dispatch_outbox WHERE id = $1")
                        .bind(id.0)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db("read delivery"))?
                        .ok_or_else(|| no_delivery(id))?;
                    doc_col!(row, "dispatch_outbox", Delivery)
                }

                async fn delivery_by_key(&self, key: &str) -> Result<Option<Delivery>> {
                    let row = sqlx::query("SELECT doc FROM dispatch_outbox WHERE idempotency_key = $1")
                        .bind(key)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db("read delivery"))?;
                    row.map(|r| doc_col!(r, "dispatch_outbox", Delivery)).transpose()
                }

                async fn prune_outbox(&self, before: Timestamp, limit: usize) -> Result<usize> {
                    // dispatch_core::outbox::prunable, in SQL: settled, last try due before
                    // `before`, and no pending delivery waits on it.
                    let r = sqlx::query(
                        "DELETE FROM dispatch_outbox WHERE id IN (SELECT o.id FROM dispatch_outbox o \
                         WHERE o.state <> 'pending' AND o.due_at < $1 \
                         AND NOT EXISTS (SELECT 1 FROM dispatch_outbox c WHERE c.after_key = o.idempotency_key AND c.state = 'pending') \
                         ORDER BY o.id LIMIT $2)",
                    )
                    .bind(Self::ts(before))
                    .bind(to_i64(limit as u64))
                    .execute(self.autocommit())
                    .await
                    .map_err(db("prune outbox"))?;
                    Ok(usize::try_from(r.rows_affected()).unwrap_or(usize::MAX))
                }

                async fn list_deliveries(&self, f: &DeliveryFilter) -> Result<Vec<Delivery>> {
                    let rows = sqlx::query(
                        "SELECT doc FROM dispatch_outbox WHERE ($1 IS NULL OR kind = $1) AND ($2 IS NULL OR state = $2) \
                         AND ($3 IS NULL OR issue_id = $3) AND ($4 IS NULL OR event = $4) \
                         ORDER BY created_at DESC, id DESC LIMIT $5",
                    )
                    .bind(f.kind.clone())
                    .bind(f.state.map(|s| s.as_str().to_string()))
                    .bind(f.issue_id.map(|i| i.0))
                    .bind(f.event.clone())
                    .bind(to_i64(f.limit() as u64))
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("list deliveries"))?;
                    rows.into_iter().map(|r| doc_col!(r, "dispatch_outbox", Delivery)).collect()
                }
            }
        }
    };
}
