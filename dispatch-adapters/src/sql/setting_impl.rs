//! [`SettingStore`](dispatch_core::ports::SettingStore) for SQLite and PostgreSQL: JSON
//! settings by key.

macro_rules! impl_sql_setting_store {
    ($S:ident) => {
        mod sql_setting_impl {
            #[allow(unused_imports)]
            use super::*;
            use dispatch_core::Timestamp;
            use dispatch_core::error::Result;
            use crate::sql::db;
            use async_trait::async_trait;
            use sqlx::types::Json;

            #[async_trait]
            impl dispatch_core::ports::SettingStore for $S {
                async fn get_setting(&self, key: &str) -> Result<Option<serde_json::Value>> {
                    let row = sqlx::query("SELECT doc FROM dispatch_setting WHERE key = $1")
                        .bind(key)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db("read setting"))?;
                    row.map(|r| doc_col!(r, "dispatch_setting", serde_json::Value)).transpose()
                }

                async fn set_setting(&self, key: &str, value: &serde_json::Value, now: Timestamp) -> Result<()> {
                    sqlx::query("INSERT INTO dispatch_setting (key, doc, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at")
                        .bind(key)
                        .bind(Json(value))
                        .bind(Self::ts(now))
                        .execute(self.autocommit())
                        .await
                        .map_err(db("write setting"))?;
                    Ok(())
                }
            }
        }
    };
}
