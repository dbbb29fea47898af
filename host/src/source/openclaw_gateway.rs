//! A live source: an OpenClaw gateway's WebSocket, as a read-only operator.
//!
//! OpenClaw's agent, tool, heartbeat and approval events exist only on the
//! gateway's WebSocket, so clawwatch connects as an operator client: it
//! answers the gateway's `connect.challenge` with a signed Ed25519 device
//! identity (kept in a file, so the gateway's pairing of it lasts) and the
//! shared token, asks only for `operator.read` and `operator.approvals`,
//! subscribes to session events (tool calls reach passive observers as
//! `session.tool`), and hands every event frame that concerns agents to the
//! engine as one line, exactly as received. It reconnects with backoff and
//! says so; a refused token or an unpaired device is an error that names
//! the fix, not a retry loop.

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::Chunk;

/// The gateway protocol version spoken (OpenClaw 2026.9: 4).
const PROTOCOL_VERSION: u64 = 4;
/// Gateway events that concern agents; the rest (ticks, presence, health) are the gateway's own chatter.
const AGENT_EVENTS: &[&str] = &[
    "agent",
    "session.tool",
    "heartbeat",
    "exec.approval.requested",
    "exec.approval.resolved",
];
/// Read-only: events and approvals seen, nothing changed.
const SCOPES: &[&str] = &["operator.read", "operator.approvals"];
const CLIENT_ID: &str = "gateway-client";
const CLIENT_MODE: &str = "backend";
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A handshake that has not completed by then is a failed attempt.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// How to reach one gateway.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub url: String,
    pub token: String,
    pub device_key: PathBuf,
}

impl GatewayOptions {
    /// The token from `token_file`, else from `OPENCLAW_GATEWAY_TOKEN`: never the command line,
    /// where every user of the machine could read it.
    pub fn new(url: &str, token_file: Option<&Path>, device_key: PathBuf) -> Result<Self> {
        anyhow::ensure!(
            url.starts_with("ws://") || url.starts_with("wss://"),
            "--openclaw-gateway {url}: expected ws://HOST:PORT or wss://HOST:PORT"
        );
        let token = match token_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the gateway token from {}", path.display()))?
                .trim()
                .to_string(),
            None => std::env::var("OPENCLAW_GATEWAY_TOKEN").map_err(|_| {
                anyhow!(
                    "--openclaw-gateway needs the gateway's token: --openclaw-token-file PATH or OPENCLAW_GATEWAY_TOKEN"
                )
            })?,
        };
        anyhow::ensure!(!token.is_empty(), "the OpenClaw gateway token is empty");
        Ok(GatewayOptions {
            url: url.to_string(),
            token,
            device_key,
        })
    }
}

/// Where the device key lives unless told: `$XDG_STATE_HOME/clawwatch` or `~/.local/state/clawwatch`.
pub fn default_device_key() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("clawwatch").join("openclaw-device.key")
}

/// The device identity: a 32-byte Ed25519 seed in hex, created on first use (mode 0600).
fn load_or_create_key(path: &Path) -> Result<SigningKey> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let bytes = decode_hex(text.trim()).ok_or_else(|| {
            anyhow!(
                "{}: not a device key (64 hex digits); remove it to make a new one (the gateway will ask to pair it again)",
                path.display()
            )
        })?;
        return Ok(SigningKey::from_bytes(&bytes));
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow!("no randomness for a device key: {e}"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    write_private(path, &hex)
        .with_context(|| format!("saving the device key {}", path.display()))?;
    eprintln!("clawwatch: created OpenClaw device key {}", path.display());
    Ok(SigningKey::from_bytes(&seed))
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The `connect` request answering a challenge: the device signs
/// `v3|deviceId|clientId|mode|role|scopes|signedAt|token|nonce|platform|family`.
fn connect_request(key: &SigningKey, token: &str, nonce: &str, signed_at: u64) -> Value {
    let public = key.verifying_key().to_bytes();
    let device_id: String = Sha256::digest(public)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let platform = std::env::consts::OS;
    let family = "";
    let payload = [
        "v3",
        &device_id,
        CLIENT_ID,
        CLIENT_MODE,
        "operator",
        &SCOPES.join(","),
        &signed_at.to_string(),
        token,
        nonce,
        platform,
        family,
    ]
    .join("|");
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    json!({
        "type": "req",
        "id": "clawwatch-connect",
        "method": "connect",
        "params": {
            "minProtocol": PROTOCOL_VERSION,
            "maxProtocol": PROTOCOL_VERSION,
            "client": {
                "id": CLIENT_ID,
                "displayName": "clawwatch",
                "version": env!("CARGO_PKG_VERSION"),
                "platform": platform,
                "mode": CLIENT_MODE,
            },
            "role": "operator",
            "scopes": SCOPES,
            "caps": ["tool-events", "exec-approvals"],
            "commands": [],
            "permissions": {},
            "auth": { "token": token },
            "userAgent": concat!("clawwatch/", env!("CARGO_PKG_VERSION")),
            "device": {
                "id": device_id,
                "publicKey": b64(&public),
                "signature": b64(&key.sign(payload.as_bytes()).to_bytes()),
                "signedAt": signed_at,
                "nonce": nonce,
            },
        },
    })
}

/// Why a session with the gateway ended.
enum Ended {
    /// Interrupted, or the engine is gone: stop for good.
    Stopped,
    /// The gateway refused us for a reason retrying cannot fix.
    Refused(anyhow::Error),
    /// Connection trouble: try again.
    Lost(anyhow::Error),
}

/// Runs until `stopped` resolves: connects, reads, reconnects with backoff.
/// Returns an error only when the gateway refuses the credentials.
pub async fn follow(
    options: GatewayOptions,
    tx: mpsc::Sender<Chunk>,
    stopped: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let key = load_or_create_key(&options.device_key)?;
    tokio::pin!(stopped);
    let mut backoff = Duration::from_secs(1);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let ended = tokio::select! {
            _ = &mut stopped => Ended::Stopped,
            ended = session(&options, &key, &tx, &mut attempt) => ended,
        };
        match ended {
            Ended::Stopped => return Ok(()),
            Ended::Refused(e) => return Err(e),
            Ended::Lost(e) => {
                if attempt == 0 {
                    backoff = Duration::from_secs(1);
                }
                eprintln!(
                    "clawwatch: OpenClaw gateway {}: {e:#}; reconnecting in {}s",
                    options.url,
                    backoff.as_secs()
                );
                tokio::select! {
                    _ = &mut stopped => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One connection: handshake, subscribe, then frames until it drops.
/// `attempt` is reset to 0 once a handshake succeeds (the backoff restarts).
async fn session(
    options: &GatewayOptions,
    key: &SigningKey,
    tx: &mpsc::Sender<Chunk>,
    attempt: &mut u32,
) -> Ended {
    let (mut ws, _) = match tokio_tungstenite::connect_async(options.url.as_str()).await {
        Ok(connected) => connected,
        Err(e) => return Ended::Lost(anyhow!("cannot connect: {e}")),
    };
    use futures_util::{SinkExt, StreamExt};
    let handshake = async {
        // The gateway speaks first: a challenge whose nonce the device signs.
        let challenge = loop {
            match next_json(&mut ws).await? {
                v if v["event"] == "connect.challenge" => break v,
                _ => continue,
            }
        };
        let nonce = challenge["payload"]["nonce"]
            .as_str()
            .ok_or_else(|| anyhow!("the gateway's challenge has no nonce"))?
            .to_string();
        let signed_at = challenge["payload"]["ts"]
            .as_u64()
            .ok_or_else(|| anyhow!("the gateway's challenge has no ts"))?;
        let request = connect_request(key, &options.token, &nonce, signed_at);
        ws.send(Message::text(request.to_string())).await?;
        loop {
            let v = next_json(&mut ws).await?;
            if v["type"] == "res" && v["id"] == "clawwatch-connect" {
                return Ok::<Value, anyhow::Error>(v);
            }
        }
    };
    let hello = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Err(_) => return Ended::Lost(anyhow!("no handshake within {HANDSHAKE_TIMEOUT:?}")),
        Ok(Err(e)) => return Ended::Lost(e),
        Ok(Ok(v)) => v,
    };
    if hello["ok"] != true {
        let error = &hello["error"];
        // A gateway still starting its sidecars asks to be asked again.
        if error["code"] == "UNAVAILABLE" || error["retryable"] == true {
            let why = error["message"].as_str().unwrap_or("unavailable");
            return Ended::Lost(anyhow!("the gateway is not ready: {why}"));
        }
        return Ended::Refused(refusal(&options.url, error));
    }
    *attempt = 0;
    eprintln!(
        "clawwatch: following OpenClaw gateway {} (protocol {}, server {})",
        options.url,
        hello["payload"]["protocol"],
        hello["payload"]["server"]["version"]
            .as_str()
            .unwrap_or("?")
    );
    // Tool calls reach observers that did not start the run only as session events.
    let subscribe = json!({"type": "req", "id": "clawwatch-subscribe", "method": "sessions.subscribe", "params": {}});
    if let Err(e) = ws.send(Message::text(subscribe.to_string())).await {
        return Ended::Lost(e.into());
    }
    loop {
        let message = match ws.next().await {
            None => return Ended::Lost(anyhow!("the gateway closed the connection")),
            Some(Err(e)) => return Ended::Lost(e.into()),
            Some(Ok(m)) => m,
        };
        let text = match message {
            Message::Text(t) => t,
            Message::Close(frame) => {
                let why = frame.map_or_else(String::new, |f| format!(": {} {}", f.code, f.reason));
                return Ended::Lost(anyhow!("the gateway closed the connection{why}"));
            }
            _ => continue,
        };
        let Ok(frame) = serde_json::from_str::<Value>(&text) else {
            tracing::warn!(frame = %text.chars().take(200).collect::<String>(), "not a JSON frame");
            continue;
        };
        if frame["type"] == "res" && frame["id"] == "clawwatch-subscribe" && frame["ok"] != true {
            tracing::warn!(error = %frame["error"], "sessions.subscribe refused: tool calls will not be seen");
        }
        let wanted = frame["type"] == "event"
            && frame["event"]
                .as_str()
                .is_some_and(|e| AGENT_EVENTS.contains(&e));
        if !wanted {
            continue;
        }
        // The frame as the gateway sent it, one line (the text is compact JSON).
        let mut line = text.as_bytes().to_vec();
        line.retain(|b| *b != b'\n' && *b != b'\r');
        line.push(b'\n');
        if tx
            .send(Chunk::Batch {
                bytes: line,
                records: 1,
                epoch: crate::stage::reload::policy_epoch(),
            })
            .await
            .is_err()
        {
            return Ended::Stopped;
        }
    }
}

async fn next_json<S>(ws: &mut S) -> Result<Value>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    use futures_util::StreamExt;
    loop {
        match ws.next().await {
            None => bail!("the gateway closed the connection during the handshake"),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
            Some(Ok(Message::Close(f))) => bail!(
                "the gateway closed the connection during the handshake{}",
                f.map_or_else(String::new, |f| format!(": {} {}", f.code, f.reason))
            ),
            Some(Ok(_)) => continue,
        }
    }
}

/// A refused handshake, with the fix the operator needs.
fn refusal(url: &str, error: &Value) -> anyhow::Error {
    let message = error["message"].as_str().unwrap_or("refused");
    let code = error["details"]["code"]
        .as_str()
        .or(error["code"].as_str())
        .unwrap_or("");
    let hint = if code.contains("PAIRING") || message.contains("pair") {
        "approve clawwatch's device on the gateway host: `openclaw devices list`, then `openclaw devices approve <id>`"
    } else if code.contains("AUTH") || message.contains("token") || message.contains("auth") {
        "check the token (--openclaw-token-file or OPENCLAW_GATEWAY_TOKEN) against the gateway's gateway.auth.token"
    } else {
        "see the gateway's log"
    };
    anyhow!("OpenClaw gateway {url} refused the connection: {message} ({code}); {hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connect_request_signs_what_the_gateway_verifies() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let req = connect_request(&key, "tok", "nonce-1", 1_737_264_000_000);
        let device = &req["params"]["device"];
        let public = key.verifying_key();
        let expected_id: String = Sha256::digest(public.to_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(device["id"], expected_id.as_str());
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(device["signature"].as_str().unwrap())
            .unwrap();
        let signature = ed25519_dalek::Signature::from_slice(&sig).unwrap();
        let payload = format!(
            "v3|{expected_id}|gateway-client|backend|operator|operator.read,operator.approvals|1737264000000|tok|nonce-1|{}|",
            std::env::consts::OS
        );
        public
            .verify_strict(payload.as_bytes(), &signature)
            .expect("the signature covers the v3 payload");
        assert_eq!(req["params"]["auth"]["token"], "tok");
        assert_eq!(req["params"]["role"], "operator");
    }

    #[test]
    fn refusals_name_the_fix() {
        let e = refusal(
            "ws://127.0.0.1:18789",
            &json!({"code": "INVALID_REQUEST", "message": "unauthorized: gateway token mismatch", "details": {"code": "AUTH_TOKEN_MISMATCH"}}),
        );
        assert!(e.to_string().contains("--openclaw-token-file"), "{e}");
        let e = refusal(
            "ws://h:1",
            &json!({"message": "pairing required", "details": {"code": "PAIRING_REQUIRED"}}),
        );
        assert!(e.to_string().contains("openclaw devices approve"), "{e}");
    }

    #[test]
    fn options_name_what_is_wrong() {
        let key = PathBuf::from("k");
        let e = GatewayOptions::new("http://127.0.0.1:18789", None, key.clone()).unwrap_err();
        assert!(e.to_string().contains("expected ws://"), "{e}");
        let missing = Path::new("/nonexistent/clawwatch/token");
        let e =
            GatewayOptions::new("ws://127.0.0.1:18789", Some(missing), key.clone()).unwrap_err();
        assert!(
            format!("{e:#}").contains("/nonexistent/clawwatch/token"),
            "{e:#}"
        );
        let dir = std::env::temp_dir().join(format!("clawwatch-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("t"), "  secret\n").unwrap();
        let o = GatewayOptions::new("ws://127.0.0.1:18789", Some(&dir.join("t")), key).unwrap();
        assert_eq!(
            o.token, "secret",
            "surrounding whitespace is not part of a token"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn device_keys_round_trip_and_bad_ones_are_named() {
        let dir = std::env::temp_dir().join(format!("clawwatch-devkey-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("k");
        let a = load_or_create_key(&path).unwrap();
        let b = load_or_create_key(&path).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        std::fs::write(&path, "nonsense").unwrap();
        let e = load_or_create_key(&path).unwrap_err().to_string();
        assert!(e.contains("not a device key"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
