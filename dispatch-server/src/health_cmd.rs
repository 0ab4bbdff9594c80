//! `dispatch health`: asks a running server's `GET /api/health` and exits 0 only on 200 — the
//! container image's HEALTHCHECK (the slim image has no curl). Plain HTTP to a local address is
//! all it needs: the check runs next to the server.

use dispatch_core::{Error, Result};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `http://HOST:PORT[/path]` → (host:port, path).
fn split_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| Error::invalid("url", "only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/api/health"),
    };
    if authority.is_empty() {
        return Err(Error::invalid("url", "the URL has no host"));
    }
    let authority = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string()))
}

/// Status code of `GET url`, within `timeout`.
pub async fn check(url: &str, timeout: Duration) -> Result<u16> {
    let (authority, path) = split_url(url)?;
    let ask = async {
        let mut stream = TcpStream::connect(&authority).await?;
        let host = authority.rsplit_once(':').map_or(&*authority, |(h, _)| h);
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 256];
        // The status line is all that is needed.
        while !head.contains(&b'\n') && head.len() < 4096 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(head)
    };
    let head = tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| Error::unavailable(format!("{url} did not answer within {timeout:?}")))?
        .map_err(|e| Error::unavailable(format!("cannot reach {url}")).with_source(e))?;
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|_| line.starts_with("HTTP/"))
        .ok_or_else(|| Error::unavailable(format!("{url} did not answer HTTP")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:3002/api/health").unwrap(),
            ("127.0.0.1:3002".into(), "/api/health".into())
        );
        assert_eq!(
            split_url("http://localhost").unwrap(),
            ("localhost:80".into(), "/api/health".into())
        );
        assert_eq!(split_url("https://x").unwrap_err().field(), Some("url"));
        assert_eq!(split_url("http:///x").unwrap_err().field(), Some("url"));
    }

    #[tokio::test]
    async fn a_listener_that_answers_200_is_healthy_and_503_is_not() {
        for (answer, want) in [
            ("HTTP/1.1 200 OK", 200u16),
            ("HTTP/1.1 503 Unavailable", 503),
        ] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut req = [0u8; 512];
                let n = conn.read(&mut req).await.unwrap();
                let req = String::from_utf8_lossy(&req[..n]).to_string();
                conn.write_all(format!("{answer}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
                req
            });
            let code = check(&format!("http://{addr}/api/health"), Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(code, want);
            assert!(
                server
                    .await
                    .unwrap()
                    .starts_with("GET /api/health HTTP/1.1\r\n")
            );
        }
    }

    #[tokio::test]
    async fn nothing_listening_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = check(&format!("http://{addr}/"), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.kind, dispatch_core::error::ErrorKind::Unavailable);
    }
}
