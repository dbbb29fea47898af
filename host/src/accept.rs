//! Accepting TCP connections in a way that survives what passes (a full file
//! descriptor table), shared by every listener.

/// Accepts the next connection, riding out failures that pass (a full file
/// descriptor table, `EMFILE`; a connection reset before it was taken) with
/// a backoff, said once per episode: a listener never dies of them.
pub async fn accept_resiliently(
    listener: &tokio::net::TcpListener,
    what: &str,
) -> (tokio::net::TcpStream, std::net::SocketAddr) {
    let mut backoff = std::time::Duration::from_millis(10);
    let mut said = false;
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                if said {
                    eprintln!("clawwatch: {what}: accepting connections again");
                }
                return accepted;
            }
            Err(e) => {
                if !said {
                    eprintln!(
                        "clawwatch: {what}: cannot accept a connection ({e}); retrying, open connections go on"
                    );
                    said = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
            }
        }
    }
}
