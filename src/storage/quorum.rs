//! The quorum of a primary with safekeepers: each safekeeper's stable
//! `application_name` (the name it streams under and the name in
//! `synchronous_standby_names`), the setting itself (`ANY q (names)`, q =
//! a majority), and what `pg_stat_replication` on the compute says of each.

use serde::Serialize;

use super::{Endpoint, EndpointError, Lsn, Promoted, majority};
pub use crate::spec::{safekeeper_name, synchronous_standby_names};

/// One safekeeper: its parsed address and the name it streams under.
#[derive(Debug, Clone)]
pub struct Safekeeper {
    pub name: String,
    pub endpoint: Endpoint,
}

/// Parses `connstrings` (in order); the first that cannot be used fails.
pub fn safekeepers(connstrings: &[String], user: &str) -> Result<Vec<Safekeeper>, EndpointError> {
    connstrings
        .iter()
        .map(|c| {
            let endpoint = Endpoint::parse(c, user)?;
            Ok(Safekeeper {
                name: safekeeper_name(&endpoint.host, endpoint.port),
                endpoint,
            })
        })
        .collect()
}

/// Reads every WAL sender of the compute in one row (JSON).
pub const STAT_REPLICATION_SQL: &str = "SELECT coalesce(json_agg(json_build_object(\
     'name', application_name, 'state', state, 'flush', flush_lsn::text, 'replay', replay_lsn::text)), '[]')::text \
     FROM pg_stat_replication";

/// One row of `pg_stat_replication`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Sender {
    pub name: Option<String>,
    pub state: Option<String>,
    pub flush: Option<String>,
    pub replay: Option<String>,
}

/// Parses the answer of [`STAT_REPLICATION_SQL`].
pub fn parse_senders(json: &str) -> Result<Vec<Sender>, String> {
    serde_json::from_str(json).map_err(|e| format!("unexpected pg_stat_replication answer: {e}"))
}

/// A safekeeper as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SafekeeperStatus {
    /// Its `application_name` (in `synchronous_standby_names`).
    pub name: String,
    /// Its connection string, credentials redacted.
    pub safekeeper: String,
    /// `streaming`, `catching_up`, `unreachable` or `diverged`.
    pub state: String,
    /// Why it is not streaming (null while it streams).
    pub reason: Option<String>,
    /// Flushed on the safekeeper (from `pg_stat_replication`).
    pub flush_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
}

/// The quorum as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuorumStatus {
    /// `q of n`.
    pub quorum: String,
    pub need: usize,
    pub total: usize,
    /// Safekeepers streaming now.
    pub streaming: usize,
    /// Whether a commit is acknowledged now (`streaming >= need`).
    pub holds: bool,
    /// This compute's timeline (from its promotion at start) and where it
    /// forked: a safekeeper's WAL must stay on this compute's history to
    /// follow (else `diverged`).
    #[serde(flatten)]
    pub own: Promoted,
}

impl QuorumStatus {
    pub fn of(members: &[SafekeeperStatus], own: &Promoted) -> Self {
        let total = members.len();
        let need = majority(total);
        let streaming = members.iter().filter(|m| m.state == "streaming").count();
        Self {
            quorum: format!("{need} of {total}"),
            need,
            total,
            streaming,
            holds: streaming >= need,
            own: own.clone(),
        }
    }
}

/// The states of `safekeepers` from the compute's WAL senders; those
/// without a sender are `catching_up` with `absent` as the reason, to be
/// refined by asking the safekeeper ([`super::announce::explain_absent`]).
pub fn states_from_senders(
    safekeepers: &[Safekeeper],
    senders: &[Sender],
    absent: &str,
) -> Vec<SafekeeperStatus> {
    safekeepers
        .iter()
        .map(|sk| {
            let sender = senders
                .iter()
                .find(|s| s.name.as_deref() == Some(sk.name.as_str()));
            let lsn = |v: Option<&String>| v.and_then(|s| s.parse::<Lsn>().ok());
            match sender {
                Some(s) => {
                    let streaming = s.state.as_deref() == Some("streaming");
                    SafekeeperStatus {
                        name: sk.name.clone(),
                        safekeeper: sk.endpoint.shown.clone(),
                        state: if streaming {
                            "streaming"
                        } else {
                            "catching_up"
                        }
                        .into(),
                        reason: (!streaming).then(|| {
                            format!(
                                "its WAL sender is in state {}",
                                s.state.as_deref().unwrap_or("unknown")
                            )
                        }),
                        flush_lsn: lsn(s.flush.as_ref()),
                        replay_lsn: lsn(s.replay.as_ref()),
                    }
                }
                None => SafekeeperStatus {
                    name: sk.name.clone(),
                    safekeeper: sk.endpoint.shown.clone(),
                    state: "catching_up".into(),
                    reason: Some(absent.to_string()),
                    flush_lsn: None,
                    replay_lsn: None,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_plain_and_short() {
        assert_eq!(safekeeper_name("127.0.0.1", 5454), "sk_127_0_0_1_5454");
        assert_eq!(safekeeper_name("SK-1.example", 1), "sk_sk_1_example_1");
        let long = "a".repeat(100);
        let n = safekeeper_name(&long, 1);
        assert_eq!(n.len(), 63);
        assert_eq!(n, safekeeper_name(&long, 1));
        assert_ne!(n, safekeeper_name(&long, 2));
    }

    #[test]
    fn standby_names_ask_a_majority() {
        let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            synchronous_standby_names(&n(&["a", "b", "c"])),
            "ANY 2 (\"a\", \"b\", \"c\")"
        );
        assert_eq!(synchronous_standby_names(&n(&["a"])), "ANY 1 (\"a\")");
        assert_eq!(
            synchronous_standby_names(&n(&["a", "b", "c", "d"])),
            "ANY 3 (\"a\", \"b\", \"c\", \"d\")"
        );
    }

    #[test]
    fn senders_give_each_safekeeper_a_state() {
        let sks = safekeepers(&["127.0.0.1:1".into(), "127.0.0.1:2".into()], "u").unwrap();
        let senders = parse_senders(
            r#"[{"name":"sk_127_0_0_1_1","state":"streaming","flush":"0/10","replay":"0/8"}]"#,
        )
        .unwrap();
        let st = states_from_senders(&sks, &senders, "not connected");
        assert_eq!(st[0].state, "streaming");
        assert_eq!(st[0].flush_lsn, Some(Lsn(0x10)));
        assert_eq!(st[1].state, "catching_up");
        let q = QuorumStatus::of(&st, &Promoted::at(2, Lsn(1)));
        assert_eq!((q.quorum.as_str(), q.holds), ("2 of 2", false));
    }
}
