//! One agent connection: negotiate the version, then answer the agent's
//! messages and forward upscale requests until the agent leaves or a newer
//! agent connection replaces this one.
//!
//! Bad input: a frame we cannot parse (not JSON, unknown type, missing
//! fields, a binary frame) is answered with `InvalidMessage` and the
//! connection stays open; the reference drops the connection instead. A
//! frame over [`super::MAX_MESSAGE_BYTES`] or a websocket protocol error
//! closes the connection. Nothing here can stop the compute.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};

use super::VmMonitor;
use super::protocol::{self, Inbound, InboundKind, Outbound, OutboundKind, VersionAnswer};
use super::rules::{self, Downscale};
use crate::env::{Env, timeout};

/// How long the agent may take to send its version range.
const NEGOTIATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Websocket close code "normal closure" and "policy violation".
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_POLICY: u16 = 1008;

async fn send_text(ws: &mut WebSocket, text: String) -> bool {
    ws.send(Message::Text(Utf8Bytes::from(text))).await.is_ok()
}

async fn send(ws: &mut WebSocket, msg: &Outbound) -> bool {
    if matches!(msg.kind, OutboundKind::HealthCheck {}) {
        tracing::debug!(message = ?msg, "vm-monitor: sending");
    } else {
        tracing::info!(message = ?msg, "vm-monitor: sending");
    }
    send_text(ws, msg.to_json()).await
}

async fn close(ws: &mut WebSocket, code: u16, reason: &str) {
    let _ = ws
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason.to_string()),
        })))
        .await;
}

/// Reads the agent's version range and answers it; `false` ends the connection.
async fn negotiate<E: Env>(env: &E, ws: &mut WebSocket) -> bool {
    let first = match timeout(env, NEGOTIATION_TIMEOUT, ws.recv()).await {
        Err(_) => {
            tracing::warn!(
                "vm-monitor: the agent sent no protocol version range within {NEGOTIATION_TIMEOUT:?}; closing"
            );
            close(ws, CLOSE_POLICY, "no protocol version range received").await;
            return false;
        }
        Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return false,
        Ok(Some(Ok(m))) => m,
    };
    let answer = match &first {
        Message::Text(t) => protocol::negotiate(t.as_str()),
        _ => Err(
            "the protocol version range must be a text frame, e.g. {\"min\":1,\"max\":1}"
                .to_string(),
        ),
    };
    match answer {
        Ok(v) => {
            tracing::info!(
                version = v,
                "vm-monitor: agent connected; protocol version agreed"
            );
            send_text(ws, VersionAnswer::Version(v).to_json()).await
        }
        Err(e) => {
            tracing::warn!(error = %e, "vm-monitor: protocol negotiation failed; closing");
            send_text(ws, VersionAnswer::Error(e).to_json()).await;
            close(ws, CLOSE_POLICY, "protocol negotiation failed").await;
            false
        }
    }
}

/// Serves one agent connection until it ends.
pub(super) async fn serve_agent<E: Env>(mon: Arc<VmMonitor<E>>, mut ws: WebSocket) {
    // Take over from any older connection, then speak.
    // (The number is taken inside the bump, so that two agents connecting
    // at once cannot both believe they are the latest.)
    let mut me = 0;
    mon.agents.send_modify(|g| {
        *g += 1;
        me = *g;
    });
    let mut agents = mon.agents.subscribe();
    if !negotiate(&mon.env, &mut ws).await {
        return;
    }
    let mut history = mon.history.clone();
    history.mark_unchanged();
    loop {
        tokio::select! {
            biased;
            _ = async { agents.wait_for(|g| *g != me).await.map(|_| ()) } => {
                tracing::info!("vm-monitor: a newer agent connected; closing this connection");
                close(&mut ws, CLOSE_NORMAL, "replaced by a newer agent connection").await;
                return;
            }
            changed = history.changed() => {
                if changed.is_err() {
                    return;
                }
                let h = *history.borrow_and_update();
                if let Some(req) = mon.upscale_request(&h) {
                    if !send(&mut ws, &req).await {
                        return;
                    }
                }
            }
            frame = ws.recv() => {
                let reply = match frame {
                    None | Some(Ok(Message::Close(_))) => {
                        tracing::info!("vm-monitor: the agent closed the connection");
                        return;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "vm-monitor: websocket error (a frame over {} bytes, or a protocol violation); closing the connection", super::MAX_MESSAGE_BYTES);
                        close(&mut ws, CLOSE_POLICY, "websocket error").await;
                        return;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Binary(_))) => Some(invalid(None, "binary frames are not part of the protocol; send JSON text frames".into())),
                    Some(Ok(Message::Text(t))) => match protocol::parse_inbound(t.as_str()) {
                        Err(bad) => {
                            tracing::warn!(error = %bad, "vm-monitor: invalid message from the agent");
                            Some(invalid(bad.id, bad.error))
                        }
                        Ok(msg) => handle(&mon, msg).await,
                    },
                };
                if let Some(reply) = reply {
                    if !send(&mut ws, &reply).await {
                        return;
                    }
                }
            }
        }
    }
}

fn invalid(id: Option<u64>, error: String) -> Outbound {
    Outbound::new(OutboundKind::InvalidMessage { error }, id.unwrap_or(0))
}

/// The answer to one message from the agent.
async fn handle<E: Env>(mon: &VmMonitor<E>, msg: Inbound) -> Option<Outbound> {
    let Inbound { kind, id } = msg;
    if matches!(kind, InboundKind::HealthCheck {}) {
        tracing::debug!(id, "vm-monitor: health check");
    } else {
        tracing::info!(id, message = ?kind, "vm-monitor: received");
    }
    let reply = match kind {
        InboundKind::HealthCheck {} => OutboundKind::HealthCheck {},
        InboundKind::UpscaleNotification { granted } => {
            let usable = rules::usable(granted.mem);
            if let Err(e) = mon.resize_file_cache(usable).await {
                return Some(Outbound::new(
                    OutboundKind::InternalError {
                        error: format!("upscale not applied: {e}"),
                    },
                    id,
                ));
            }
            let (old, new) = mon.adopt(usable);
            tracing::info!(
                old_threshold_mib = rules::mib(old),
                new_threshold_mib = rules::mib(new),
                usable_mib = rules::mib(usable),
                "vm-monitor: upscale: new memory total adopted"
            );
            OutboundKind::UpscaleConfirmation {}
        }
        InboundKind::DownscaleRequest { target } => {
            let history = *mon.history.borrow();
            match rules::judge_downscale(target.mem, &history, mon.env.now()) {
                Downscale::Stale(error) => OutboundKind::InternalError { error },
                Downscale::Refuse(status) => {
                    tracing::info!(status, "vm-monitor: downscale refused");
                    OutboundKind::DownscaleResult { ok: false, status }
                }
                Downscale::Accept { usable, threshold } => {
                    // Shrink the cache first, then lower the threshold.
                    let mut status = Vec::new();
                    match mon.resize_file_cache(usable).await {
                        Ok(Some(mib)) => status.push(format!("set file cache size to {mib} MiB")),
                        Ok(None) => {}
                        Err(e) => {
                            return Some(Outbound::new(
                                OutboundKind::InternalError {
                                    error: format!("downscale not applied: {e}"),
                                },
                                id,
                            ));
                        }
                    }
                    let (old, new) = mon.adopt(usable);
                    debug_assert_eq!(new, threshold);
                    status.push(format!(
                        "set cgroup memory threshold from {} MiB to {} MiB, of new total {} MiB",
                        rules::mib(old),
                        rules::mib(new),
                        rules::mib(usable)
                    ));
                    let status = status.join("; ");
                    tracing::info!(status, "vm-monitor: downscale accepted");
                    OutboundKind::DownscaleResult { ok: true, status }
                }
            }
        }
        InboundKind::InvalidMessage { error } => {
            tracing::warn!(
                id,
                error,
                "vm-monitor: the agent could not parse one of our messages"
            );
            return None;
        }
        InboundKind::InternalError { error } => {
            tracing::warn!(
                id,
                error,
                "vm-monitor: the agent reported an internal error"
            );
            return None;
        }
    };
    Some(Outbound::new(reply, id))
}
