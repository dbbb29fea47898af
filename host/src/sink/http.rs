//! The HTTP sink: enriched records POSTed as NDJSON to a receiver such as
//! Vector's `http_server` source with acknowledgements on, which answers 2xx
//! only once the records are delivered. Each batch is resent until it is
//! answered 2xx, so a receiver restarting loses nothing (a batch may arrive
//! twice). The sender of the records hears they are out only then.

use crate::stage::Delivery;
use anyhow::{Context, Result, anyhow, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::time::Duration;
use tokio::sync::mpsc;

/// Where to POST: `HOST:PORT` and the path.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub authority: String,
    pub path: String,
}

impl Target {
    /// Reads what follows `http://`: `HOST:PORT[/PATH]`.
    pub fn parse(rest: &str) -> Result<Target, String> {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if !authority.contains(':') || authority.ends_with(':') {
            return Err("name the port: http://HOST:PORT/PATH".into());
        }
        Ok(Target {
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }
}

/// Posts every batch in order, each until answered 2xx.
pub async fn write(url: &str, out_rx: &mut mpsc::Receiver<Delivery>) {
    let target = Target::parse(url.strip_prefix("http://").unwrap_or(url))
        .expect("checked when the output was parsed");
    let mut conn: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> = None;
    while let Some(Delivery { output, origin }) = out_rx.recv().await {
        if !output.ndjson.is_empty() {
            let body = Bytes::from(output.ndjson);
            let mut backoff = Duration::from_millis(100);
            loop {
                match tokio::time::timeout(
                    Duration::from_secs(60),
                    post(&target, &mut conn, body.clone()),
                )
                .await
                {
                    Ok(Ok(())) => break,
                    Ok(Err(e)) => tracing::warn!(
                        url,
                        error = %format!("{e:#}"),
                        "HTTP output not delivered; resending"
                    ),
                    Err(_) => tracing::warn!(url, "no answer within 60 s; resending"),
                }
                conn = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        if let Some(origin) = origin {
            origin.acknowledge().await;
        }
    }
}

/// One attempt: connects if needed, posts, and succeeds only on 2xx.
async fn post(
    target: &Target,
    conn: &mut Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    body: Bytes,
) -> Result<()> {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        let stream = tokio::net::TcpStream::connect(&target.authority)
            .await
            .with_context(|| format!("connecting to {}", target.authority))?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        *conn = Some(sender);
    }
    let sender = conn.as_mut().expect("connected");
    sender.ready().await?;
    let request = hyper::Request::post(&target.path)
        .header(hyper::header::HOST, &target.authority)
        .header(hyper::header::CONTENT_TYPE, "application/x-ndjson")
        .body(Full::new(body))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    if status.is_success() {
        // Read to the end, so the connection can carry the next request.
        let _ = response.into_body().collect().await;
        return Ok(());
    }
    let text = response
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
        .unwrap_or_default();
    if text.is_empty() {
        bail!("answered {status}")
    }
    Err(anyhow!("answered {status}: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_names_its_port_and_defaults_its_path() {
        assert_eq!(
            Target::parse("127.0.0.1:8080/clawwatch").unwrap(),
            Target {
                authority: "127.0.0.1:8080".into(),
                path: "/clawwatch".into()
            }
        );
        assert_eq!(Target::parse("vector:80").unwrap().path, "/");
        assert!(Target::parse("vector/x").is_err());
        assert!(Target::parse("vector:").is_err());
    }
}
