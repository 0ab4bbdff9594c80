//! Choosing the store from configuration: `PG_DATABASE_URL` (the original's name) or a
//! `postgres://` `DATABASE_URL` selects PostgreSQL; otherwise a SQLite file (`./dispatch.db`
//! unless `DATABASE_URL` names another).

use dispatch_core::ports::{EventBus, Store};
use dispatch_core::{Error, Result};
use std::sync::Arc;

/// Which database, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(String),
    Postgres(String),
}

pub const DEFAULT_SQLITE_PATH: &str = "./dispatch.db";

impl StoreUrl {
    /// Reads `PG_DATABASE_URL`, then `DATABASE_URL`, through `get`.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let nonempty = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if let Some(pg) = nonempty("PG_DATABASE_URL") {
            if !(pg.starts_with("postgres://") || pg.starts_with("postgresql://")) {
                return Err(Error::invalid(
                    "PG_DATABASE_URL",
                    "PG_DATABASE_URL must start with postgres://",
                ));
            }
            return Ok(StoreUrl::Postgres(pg));
        }
        match nonempty("DATABASE_URL") {
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Ok(StoreUrl::Postgres(u))
            }
            Some(u) if u.starts_with("sqlite:") || !u.contains("://") => Ok(StoreUrl::Sqlite(u)),
            Some(u) => Err(Error::invalid(
                "DATABASE_URL",
                format!(
                    "DATABASE_URL must be a postgres:// URL or a SQLite path, not {:?}",
                    u.split("://").next().unwrap_or("")
                ),
            )),
            None => Ok(StoreUrl::Sqlite(DEFAULT_SQLITE_PATH.to_string())),
        }
    }

    pub fn from_env() -> Result<Self> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    /// For logs: the URL without its password.
    pub fn redacted(&self) -> String {
        match self {
            StoreUrl::Sqlite(p) => format!("sqlite {p}"),
            StoreUrl::Postgres(u) => match (u.find("://"), u.rfind('@')) {
                (Some(s), Some(at)) if at > s => {
                    let creds = &u[s + 3..at];
                    let user = creds.split(':').next().unwrap_or("");
                    format!("{}://{user}:***@{}", &u[..s], &u[at + 1..])
                }
                _ => u.clone(),
            },
        }
    }
}

/// An opened, migrated store and the event bus that goes with it (in-process for SQLite,
/// LISTEN/NOTIFY for PostgreSQL).
pub struct Opened {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn EventBus>,
    /// The clock decisions read: the system's for SQLite (one machine), the database's for
    /// PostgreSQL (several processes compare leases and day windows; see
    /// [`crate::postgres::DatabaseClock`]).
    pub clock: Arc<dyn dispatch_core::Clock>,
}

/// Opens and migrates the configured store.
pub async fn open_store(url: &StoreUrl) -> Result<Opened> {
    match url {
        #[cfg(feature = "sqlite")]
        StoreUrl::Sqlite(path) => {
            let store = crate::sqlite::SqliteStore::open(path).await?;
            Ok(Opened {
                store: Arc::new(store),
                bus: Arc::new(dispatch_core::memory::MemoryEventBus::new()),
                clock: Arc::new(dispatch_core::SystemClock),
            })
        }
        #[cfg(feature = "postgres")]
        StoreUrl::Postgres(u) => {
            let store = crate::postgres::PostgresStore::open(u).await?;
            let bus = crate::postgres::PostgresEventBus::connect(u).await?;
            let clock = crate::postgres::DatabaseClock::start(
                store.pool().clone(),
                Arc::new(dispatch_core::SystemClock),
                std::time::Duration::from_secs(60),
            )
            .await?;
            Ok(Opened {
                store: Arc::new(store),
                bus: Arc::new(bus),
                clock,
            })
        }
        #[allow(unreachable_patterns)]
        other => Err(Error::invalid(
            "DATABASE_URL",
            format!("this build has no support for {}", other.redacted()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn url(pairs: &[(&str, &str)]) -> Result<StoreUrl> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        StoreUrl::from_lookup(&move |k| m.get(k).cloned())
    }

    #[test]
    fn selection_rules() {
        assert_eq!(url(&[]).unwrap(), StoreUrl::Sqlite("./dispatch.db".into()));
        assert_eq!(
            url(&[("DATABASE_URL", "/tmp/x.db")]).unwrap(),
            StoreUrl::Sqlite("/tmp/x.db".into())
        );
        assert_eq!(
            url(&[
                ("DATABASE_URL", "/tmp/x.db"),
                ("PG_DATABASE_URL", "postgres://u@h/db")
            ])
            .unwrap(),
            StoreUrl::Postgres("postgres://u@h/db".into())
        );
        assert_eq!(
            url(&[("DATABASE_URL", "postgresql://h/db")]).unwrap(),
            StoreUrl::Postgres("postgresql://h/db".into())
        );
        assert_eq!(
            url(&[("PG_DATABASE_URL", "mysql://x")])
                .unwrap_err()
                .field(),
            Some("PG_DATABASE_URL")
        );
        assert_eq!(
            url(&[("DATABASE_URL", "mysql://x")]).unwrap_err().field(),
            Some("DATABASE_URL")
        );
    }

    #[test]
    fn redacts_passwords() {
        let u = StoreUrl::Postgres("postgres://dispatch:s3cret@db:5432/d".into());
        assert_eq!(u.redacted(), "postgres://dispatch:***@db:5432/d");
        assert!(!u.redacted().contains("s3cret"));
    }
}
