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
///
/// A sender counts as `streaming` only once its safekeeper has flushed
/// past `own.fork_lsn`, that is WAL of this compute's timeline. A
/// safekeeper that diverged past our fork in the same WAL segment is
/// streamed that segment's start up to the fork, which its own WAL holds
/// too, before it refuses our timeline and reconnects: its sender reads
/// `streaming` meanwhile, yet it never acknowledges one of our commits.
/// Counted, it made the quorum look held. (Our timeline starts with the
/// promotion's end-of-recovery record, so one that follows passes the fork
/// within its first reply.)
pub fn states_from_senders(
    safekeepers: &[Safekeeper],
    senders: &[Sender],
    absent: &str,
    own: &Promoted,
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
                    let flush_lsn = lsn(s.flush.as_ref());
                    let sending = s.state.as_deref() == Some("streaming");
                    let ours = flush_lsn.is_some_and(|f| f > own.fork_lsn);
                    let reason = match (sending, ours) {
                        (true, true) => None,
                        (true, false) => Some(format!(
                            "its WAL sender streams, but it has flushed nothing of this compute's timeline {} yet (flushed up to {}; the timeline starts at {})",
                            own.timeline,
                            flush_lsn.map_or_else(|| "nothing reported".to_string(), |f| f.to_string()),
                            own.fork_lsn
                        )),
                        (false, _) => Some(format!(
                            "its WAL sender is in state {}",
                            s.state.as_deref().unwrap_or("unknown")
                        )),
                    };
                    SafekeeperStatus {
                        name: sk.name.clone(),
                        safekeeper: sk.endpoint.shown.clone(),
                        state: if reason.is_none() {
                            "streaming"
                        } else {
                            "catching_up"
                        }
                        .into(),
                        reason,
                        flush_lsn,
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
        let own = Promoted::at(2, Lsn(1));
        let st = states_from_senders(&sks, &senders, "not connected", &own);
        assert_eq!(st[0].state, "streaming");
        assert_eq!(st[0].flush_lsn, Some(Lsn(0x10)));
        assert_eq!(st[1].state, "catching_up");
        let q = QuorumStatus::of(&st, &own);
        assert_eq!((q.quorum.as_str(), q.holds), ("2 of 2", false));
    }

    /// A diverged safekeeper's sender streams the shared start of the fork's
    /// segment, then the safekeeper refuses our timeline: it flushed nothing
    /// of ours and must not count toward the quorum.
    #[test]
    fn a_streaming_sender_counts_only_once_past_the_fork() {
        let sks = safekeepers(
            &[
                "127.0.0.1:1".into(),
                "127.0.0.1:2".into(),
                "127.0.0.1:3".into(),
            ],
            "u",
        )
        .unwrap();
        let senders = parse_senders(
            r#"[{"name":"sk_127_0_0_1_1","state":"streaming","flush":"0/5000100","replay":"0/5000100"},
                {"name":"sk_127_0_0_1_2","state":"streaming","flush":"0/5000000","replay":"0/5000000"},
                {"name":"sk_127_0_0_1_3","state":"streaming","flush":null,"replay":null}]"#,
        )
        .unwrap();
        let own = Promoted::at(4, Lsn(0x5000080));
        let st = states_from_senders(&sks, &senders, "not connected", &own);
        let states: Vec<&str> = st.iter().map(|m| m.state.as_str()).collect();
        assert_eq!(states, ["streaming", "catching_up", "catching_up"]);
        let why = st[1].reason.as_deref().unwrap();
        assert!(
            why.contains("flushed nothing of this compute's timeline 4")
                && why.contains("0/5000000")
                && why.contains("0/5000080"),
            "{why}"
        );
        assert!(
            st[2]
                .reason
                .as_deref()
                .unwrap()
                .contains("nothing reported")
        );
        let q = QuorumStatus::of(&st, &own);
        assert_eq!((q.streaming, q.holds), (1, false));
    }
}
