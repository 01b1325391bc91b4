//! The autoscaler-agent <-> vm-monitor wire protocol (version 1), as Neon's
//! `libs/vm_monitor/src/protocol.rs` defines it.
//!
//! - Negotiation: the agent's first frame is `{"min":1,"max":1}`; we answer
//!   `{"version":1}` or `{"error":"..."}`.
//! - The agent sends adjacently tagged messages:
//!   `{"type":"DownscaleRequest","content":{"target":{"cpu":0.25,"mem":1073741824}},"id":2}`.
//! - We send flat ones, the fields beside `type` and `id`:
//!   `{"type":"DownscaleResult","Ok":true,"Status":"...","id":2}` (the
//!   capitalised `Ok`/`Status` are the agent's Go field names).
//!
//! Ids: the agent's are even; ours (for `UpscaleRequest`) odd. A reply
//! carries the id of the message it answers.

use serde::{Deserialize, Serialize};

/// The protocol versions we speak (inclusive).
pub const MIN_VERSION: u8 = 1;
pub const MAX_VERSION: u8 = 1;

/// Resources as the agent counts them: vCPUs and bytes of memory.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    pub cpu: f64,
    pub mem: u64,
}

/// A message from the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inbound {
    #[serde(flatten)]
    pub kind: InboundKind,
    pub id: u64,
}

/// What the agent can send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "content")]
pub enum InboundKind {
    /// We sent something the agent could not parse.
    InvalidMessage { error: String },
    /// The agent failed while handling one of our messages.
    InternalError { error: String },
    /// More resources were granted; answer `UpscaleConfirmation`.
    UpscaleNotification { granted: Allocation },
    /// The agent wants to shrink the VM; answer `DownscaleResult`.
    DownscaleRequest { target: Allocation },
    /// The agent's heartbeat (every 5 s); echo it.
    HealthCheck {},
}

/// A message to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outbound {
    #[serde(flatten)]
    pub kind: OutboundKind,
    pub id: u64,
}

/// What we can send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum OutboundKind {
    /// The agent sent something we could not parse (the reference drops
    /// the connection instead; see the README).
    InvalidMessage { error: String },
    /// We failed while handling the agent's message.
    InternalError { error: String },
    /// An `UpscaleNotification` was handled.
    UpscaleConfirmation {},
    /// Memory is short: please upscale now.
    UpscaleRequest {},
    /// The answer to a `DownscaleRequest`.
    DownscaleResult {
        #[serde(rename = "Ok")]
        ok: bool,
        #[serde(rename = "Status")]
        status: String,
    },
    /// The echo of the agent's heartbeat.
    HealthCheck {},
}

impl Outbound {
    pub fn new(kind: OutboundKind, id: u64) -> Self {
        Self { kind, id }
    }

    /// The frame text.
    pub fn to_json(&self) -> String {
        // A map of strings, numbers and bools: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A frame we could not use: what was wrong, and its id if it had one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct BadMessage {
    pub id: Option<u64>,
    pub error: String,
}

/// Parses one text frame from the agent.
pub fn parse_inbound(text: &str) -> Result<Inbound, BadMessage> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| BadMessage {
        id: None,
        error: format!("message is not JSON: {e}"),
    })?;
    let id = value.get("id").and_then(serde_json::Value::as_u64);
    serde_json::from_value(value).map_err(|e| BadMessage {
        id,
        error: format!(
            "cannot understand the message: {e}; expected {{\"type\":T,\"content\":{{...}},\"id\":N}} with T one of DownscaleRequest, UpscaleNotification, HealthCheck, InvalidMessage, InternalError"
        ),
    })
}

/// The agent's first frame: the range of versions it speaks (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct VersionRange {
    pub min: u8,
    pub max: u8,
}

/// Our answer to the agent's range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum VersionAnswer {
    Version(u8),
    Error(String),
}

impl VersionAnswer {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The highest version both sides speak, or the error to send back.
pub fn negotiate(first_frame: &str) -> Result<u8, String> {
    let agent: VersionRange = serde_json::from_str(first_frame).map_err(|e| {
        format!("cannot read the protocol version range: {e}; expected {{\"min\":1,\"max\":1}}")
    })?;
    if agent.min > agent.max {
        return Err(format!(
            "invalid protocol version range: min {} is greater than max {}",
            agent.min, agent.max
        ));
    }
    if agent.max < MIN_VERSION || agent.min > MAX_VERSION {
        return Err(format!(
            "protocol versions {}..={} do not overlap with the monitor's {MIN_VERSION}..={MAX_VERSION}",
            agent.min, agent.max
        ));
    }
    Ok(agent.max.min(MAX_VERSION))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn inbound(v: Value) -> Inbound {
        parse_inbound(&v.to_string()).unwrap()
    }

    fn wire(m: OutboundKind, id: u64) -> Value {
        serde_json::from_str(&Outbound::new(m, id).to_json()).unwrap()
    }

    const GIB: u64 = 1 << 30;

    #[test]
    fn agent_messages_are_adjacently_tagged() {
        assert_eq!(
            inbound(
                json!({"type":"DownscaleRequest","content":{"target":{"cpu":0.25,"mem":GIB}},"id":2})
            ),
            Inbound {
                kind: InboundKind::DownscaleRequest {
                    target: Allocation {
                        cpu: 0.25,
                        mem: GIB
                    }
                },
                id: 2
            }
        );
        assert_eq!(
            inbound(
                json!({"type":"UpscaleNotification","content":{"granted":{"cpu":2.0,"mem":4*GIB}},"id":4})
            ),
            Inbound {
                kind: InboundKind::UpscaleNotification {
                    granted: Allocation {
                        cpu: 2.0,
                        mem: 4 * GIB
                    }
                },
                id: 4
            }
        );
        assert_eq!(
            inbound(json!({"type":"HealthCheck","content":{},"id":6})).kind,
            InboundKind::HealthCheck {}
        );
        assert_eq!(
            inbound(json!({"type":"InvalidMessage","content":{"error":"bad"},"id":8})).kind,
            InboundKind::InvalidMessage {
                error: "bad".into()
            }
        );
        assert_eq!(
            inbound(json!({"type":"InternalError","content":{"error":"oops"},"id":10})).kind,
            InboundKind::InternalError {
                error: "oops".into()
            }
        );
    }

    #[test]
    fn agent_messages_round_trip() {
        for text in [
            json!({"type":"DownscaleRequest","content":{"target":{"cpu":0.5,"mem":123}},"id":2}),
            json!({"type":"HealthCheck","content":{},"id":6}),
            json!({"type":"InternalError","content":{"error":"x"},"id":12}),
        ] {
            let m = inbound(text.clone());
            assert_eq!(serde_json::to_value(&m).unwrap(), text);
        }
    }

    #[test]
    fn monitor_messages_are_flat_with_capitalised_downscale_fields() {
        assert_eq!(
            wire(
                OutboundKind::DownscaleResult {
                    ok: false,
                    status: "too low".into()
                },
                2
            ),
            json!({"type":"DownscaleResult","Ok":false,"Status":"too low","id":2})
        );
        assert_eq!(
            wire(OutboundKind::UpscaleRequest {}, 3),
            json!({"type":"UpscaleRequest","id":3})
        );
        assert_eq!(
            wire(OutboundKind::UpscaleConfirmation {}, 4),
            json!({"type":"UpscaleConfirmation","id":4})
        );
        assert_eq!(
            wire(OutboundKind::HealthCheck {}, 6),
            json!({"type":"HealthCheck","id":6})
        );
        assert_eq!(
            wire(OutboundKind::InternalError { error: "e".into() }, 8),
            json!({"type":"InternalError","error":"e","id":8})
        );
        assert_eq!(
            wire(OutboundKind::InvalidMessage { error: "e".into() }, 0),
            json!({"type":"InvalidMessage","error":"e","id":0})
        );
    }

    #[test]
    fn monitor_messages_round_trip() {
        let m = Outbound::new(
            OutboundKind::DownscaleResult {
                ok: true,
                status: "fine".into(),
            },
            10,
        );
        assert_eq!(serde_json::from_str::<Outbound>(&m.to_json()).unwrap(), m);
    }

    #[test]
    fn bad_frames_say_what_is_wrong_and_keep_the_id() {
        let e = parse_inbound("{not json").unwrap_err();
        assert_eq!(e.id, None);
        assert!(e.error.contains("not JSON"), "{e}");
        let e = parse_inbound(r#"{"type":"Bogus","content":{},"id":14}"#).unwrap_err();
        assert_eq!(e.id, Some(14));
        assert!(
            e.error.contains("Bogus") && e.error.contains("DownscaleRequest"),
            "{e}"
        );
        let e =
            parse_inbound(r#"{"type":"DownscaleRequest","content":{"target":{"cpu":1}},"id":16}"#)
                .unwrap_err();
        assert_eq!(e.id, Some(16));
        assert!(e.error.contains("mem"), "{e}");
        assert!(parse_inbound(r#"{"type":"HealthCheck","content":{}}"#).is_err());
    }

    #[test]
    fn negotiation_picks_the_highest_shared_version() {
        assert_eq!(negotiate(r#"{"min":1,"max":1}"#), Ok(1));
        assert_eq!(negotiate(r#"{"min":1,"max":3}"#), Ok(1));
        assert_eq!(VersionAnswer::Version(1).to_json(), r#"{"version":1}"#);
        assert_eq!(
            serde_json::from_str::<Value>(&VersionAnswer::Error("no".into()).to_json()).unwrap(),
            json!({"error":"no"})
        );
    }

    #[test]
    fn negotiation_refuses_ranges_that_do_not_overlap() {
        let e = negotiate(r#"{"min":2,"max":4}"#).unwrap_err();
        assert!(e.contains("do not overlap"), "{e}");
        let e = negotiate(r#"{"min":0,"max":0}"#).unwrap_err();
        assert!(e.contains("do not overlap"), "{e}");
        let e = negotiate(r#"{"min":3,"max":1}"#).unwrap_err();
        assert!(e.contains("greater than"), "{e}");
        let e = negotiate(r#"{"version":1}"#).unwrap_err();
        assert!(e.contains("expected"), "{e}");
    }
}
