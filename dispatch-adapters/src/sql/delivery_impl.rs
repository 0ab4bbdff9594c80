//! [`DeliveryStore`](dispatch_core::ports::DeliveryStore) for SQLite and PostgreSQL: the
//! inbound webhook deliveries already processed (replay protection).

macro_rules! impl_sql_delivery_store {
    ($S:ident) => {
        mod sql_delivery_impl {
            #[allow(unused_imports)]
            use super::*;
            use dispatch_core::Timestamp;
            use dispatch_core::error::{Error, Result};
            use dispatch_core::ports::DeliveryStore;
            use crate::sql::db;
            use async_trait::async_trait;

            #[async_trait]
            impl DeliveryStore for $S {
                async fn record_delivery(&self, source: &str, delivery_id: &str, now: Timestamp) -> Result<bool> {
                    if delivery_id.trim().is_empty() {
                        return Err(Error::invalid("delivery_id", "delivery id must not be empty"));
                    }
                    let mut tx = self.write_tx().await?;
                    let r = sqlx::query("INSERT INTO dispatch_delivery (source, delivery_id, received_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                        .bind(source)
                        .bind(delivery_id)
                        .bind(Self::ts(now))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("record delivery"))?;
                    Self::commit(tx).await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn forget_delivery(&self, source: &str, delivery_id: &str) -> Result<bool> {
                    let r = sqlx::query("DELETE FROM dispatch_delivery WHERE source = $1 AND delivery_id = $2")
                        .bind(source)
                        .bind(delivery_id)
                        .execute(self.autocommit())
                        .await
                        .map_err(db("forget delivery"))?;
                    Ok(r.rows_affected() > 0)
                }

                async fn prune_deliveries(&self, before: Timestamp) -> Result<u64> {
                    let r = sqlx::query("DELETE FROM dispatch_delivery WHERE received_at < $1")
                        .bind(Self::ts(before))
                        .execute(self.autocommit())
                        .await
                        .map_err(db("prune deliveries"))?;
                    Ok(r.rows_affected())
                }
            }
        }
    };
}
