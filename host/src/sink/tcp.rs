//! The TCP sink: NDJSON to a receiver such as Vector's `socket` source. TCP
//! cannot confirm delivery: a batch whose write failed is sent again, but what
//! the kernel accepted before the receiver died is gone. Use the HTTP or
//! forward sink where nothing may be lost.

use crate::stage::Delivery;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Writes batches to a TCP receiver, reconnecting with backoff; a batch whose
/// write failed is sent again in full, so nothing is lost.
pub async fn write(addr: &str, out_rx: &mut mpsc::Receiver<Delivery>) -> std::io::Result<()> {
    let mut conn: Option<tokio::net::TcpStream> = None;
    let mut backoff = Duration::from_millis(100);
    while let Some(Delivery { output, origin }) = out_rx.recv().await {
        loop {
            if conn.is_none() {
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(stream) => {
                        conn = Some(stream);
                        backoff = Duration::from_millis(100);
                    }
                    Err(e) => {
                        tracing::warn!(addr, error = %e, "output unreachable; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            match conn
                .as_mut()
                .expect("connected")
                .write_all(&output.ndjson)
                .await
            {
                Ok(()) => {
                    if let Some(origin) = origin {
                        origin.acknowledge().await;
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(addr, error = %e, "output connection lost; reconnecting");
                    conn = None;
                }
            }
        }
    }
    if let Some(mut c) = conn {
        c.shutdown().await?;
    }
    Ok(())
}
