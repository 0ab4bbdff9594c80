//! PostgreSQL over TLS: the store connects with `sslmode`/`sslrootcert` from the URL, the session
//! really is encrypted, and a server whose certificate cannot be verified is refused with an
//! `Unavailable` error that keeps the TLS failure as its source.
//!
//! `scripts/test` turns TLS on in the test PostgreSQL with a CA it makes and exports
//! `DISPATCH_TEST_PG_TLS_CA` (that CA) and `DISPATCH_TEST_PG_TLS_OTHER_CA` (one that signed nothing).
#![cfg(feature = "postgres")]

mod support;

use dispatch_adapters::postgres::PostgresStore;
use dispatch_core::error::ErrorKind;

fn ca(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run `scripts/test`, which turns TLS on in the test PostgreSQL and \
             exports the CA it made, or point it at the CA of a TLS-enabled server"
        )
    })
}

/// The test database's URL with TLS parameters (and `localhost`, the name the certificate has).
fn tls_url(params: &str) -> String {
    let url = support::database_url().replace("@127.0.0.1", "@localhost");
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

async fn session_uses_tls(store: &PostgresStore) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .expect("pg_stat_ssl")
}

#[tokio::test]
async fn verify_full_with_the_servers_ca_connects_encrypted() {
    let url = tls_url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        ca("DISPATCH_TEST_PG_TLS_CA")
    ));
    let store = PostgresStore::open(&url).await.expect("TLS connection");
    assert!(session_uses_tls(&store).await, "the session is encrypted");
    store.close().await;
}

#[tokio::test]
async fn require_connects_encrypted_without_a_root_certificate() {
    let store = PostgresStore::open(&tls_url("sslmode=require"))
        .await
        .expect("TLS connection");
    assert!(session_uses_tls(&store).await, "the session is encrypted");
    store.close().await;
}

#[tokio::test]
async fn disable_connects_in_plain_text() {
    let store = PostgresStore::open(&tls_url("sslmode=disable"))
        .await
        .expect("plain connection");
    assert!(
        !session_uses_tls(&store).await,
        "sslmode=disable is honoured"
    );
    store.close().await;
}

#[tokio::test]
async fn verify_full_refuses_a_server_signed_by_another_ca() {
    let url = tls_url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        ca("DISPATCH_TEST_PG_TLS_OTHER_CA")
    ));
    let err = PostgresStore::open(&url)
        .await
        .expect_err("an unverifiable server must be refused");
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(
        err.to_string().contains("TLS failed"),
        "the message names TLS: {err}"
    );
    let source = std::error::Error::source(&err).expect("the TLS error is kept as the source");
    assert!(
        source.to_string().to_lowercase().contains("certificate")
            || source.to_string().to_lowercase().contains("tls"),
        "source: {source}"
    );
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    // The certificate names localhost only; 127.0.0.1 is the same server under a name the
    // certificate does not carry.
    let url = support::database_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    let root = ca("DISPATCH_TEST_PG_TLS_CA");
    let err = PostgresStore::open(&format!("{url}{sep}sslmode=verify-full&sslrootcert={root}"))
        .await
        .expect_err("verify-full must refuse a name the certificate does not carry");
    assert!(err.to_string().contains("TLS failed"), "{err}");
    let store = PostgresStore::open(&format!("{url}{sep}sslmode=verify-ca&sslrootcert={root}"))
        .await
        .expect("verify-ca checks the chain only");
    assert!(session_uses_tls(&store).await);
    store.close().await;
}
