//! Readiness beyond "Postgres answers": a replica that lags its source by
//! more than `--max-ready-lag` is not ready (as Patroni and CloudNativePG
//! gate replicas), so that a Service sends reads only to replicas that are
//! close enough; a primary with safekeepers whose quorum does not stream is
//! not ready either (its commits would wait). Pure: the verdicts are taken
//! from the state the watchers keep ([`crate::storage::ReplicationStatus`],
//! [`crate::storage::QuorumStatus`]); the limit, [`MaxLag`], is a parameter
//! (`params.rs`), so `params` needs nothing of this module.

use std::fmt;

use crate::params::MaxLag;
use crate::storage::{QuorumStatus, ReplicationStatus, SafekeeperStatus};

/// Why a replica is not ready under `max`, or `None` when it is. A
/// primary (no replication state, or mode `primary`) and a static compute
/// (paused at its LSN by design) are never held back by lag. The lag is
/// measured against the source itself (`storage::replication`): bytes are
/// the source's position minus the replay LSN, time is how long ago the
/// source was last seen at a position replay has reached. A replica whose
/// lag cannot be told (not streaming, its source cannot be asked, nothing
/// read yet) is not ready: it serves data of unknown age.
pub fn lag_verdict(max: MaxLag, replication: Option<&ReplicationStatus>) -> Option<String> {
    let r = replication?;
    if r.mode != "replica" {
        return None;
    }
    if !r.streaming {
        let why = r
            .not_streaming_reason
            .as_deref()
            .unwrap_or("the WAL receiver is not streaming");
        return Some(format!(
            "the replica's lag is unknown (--max-ready-lag {max}): {why}"
        ));
    }
    let positions = || {
        format!(
            "source {}, receive {}, replay {}",
            shown(r.source_lsn),
            shown(r.receive_lsn),
            shown(r.replay_lsn)
        )
    };
    if let Some(why) = &r.source_error {
        return Some(format!(
            "the replica's lag behind its source is unknown (--max-ready-lag {max}): {why}; last known: {}, lag {} bytes",
            positions(),
            shown(r.replay_lag_bytes)
        ));
    }
    match max {
        MaxLag::Bytes(limit) => match r.replay_lag_bytes {
            None => Some(format!(
                "the replica's lag behind its source is not known yet (--max-ready-lag {max}; {})",
                positions()
            )),
            Some(lag) if lag > limit => Some(format!(
                "the replica lags its source by {lag} bytes of WAL not yet replayed ({}), more than --max-ready-lag {max}",
                positions()
            )),
            Some(_) => None,
        },
        MaxLag::Time(limit) => match r.replay_lag_ms {
            None => Some(format!(
                "the replica has not replayed any position its source was seen at yet (--max-ready-lag {max}; {})",
                positions()
            )),
            Some(ms) if u128::from(ms) > limit.as_millis() => Some(format!(
                "the replica lags its source by {ms} ms: the source was last at a position replay has reached {ms} ms ago ({}), more than --max-ready-lag {max}",
                positions()
            )),
            Some(_) => None,
        },
    }
}

/// Why a primary with safekeepers is not ready, or `None` when a quorum
/// of them streams from it (or it has none: `quorum` is `None`). Its
/// commits wait for the quorum (`synchronous_standby_names`), so without
/// one a write would hang; the reason names each safekeeper that does not
/// stream and why.
pub fn quorum_verdict(quorum: Option<(&QuorumStatus, &[SafekeeperStatus])>) -> Option<String> {
    let (q, members) = quorum?;
    if q.holds {
        return None;
    }
    let missing: Vec<String> = members
        .iter()
        .filter(|m| m.state != "streaming")
        .map(|m| match &m.reason {
            Some(why) => format!("{} ({}): {}: {why}", m.name, m.safekeeper, m.state),
            None => format!("{} ({}): {}", m.name, m.safekeeper, m.state),
        })
        .collect();
    Some(format!(
        "the safekeeper quorum does not hold: {} of {} safekeepers stream, commits need {} ({}); not streaming: {}",
        q.streaming,
        q.total,
        q.need,
        q.quorum,
        if missing.is_empty() {
            "none reported yet".to_string()
        } else {
            missing.join("; ")
        }
    ))
}

fn shown<T: fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "unknown".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn replica(streaming: bool, bytes: Option<u64>, ms: Option<u64>) -> ReplicationStatus {
        ReplicationStatus {
            mode: "replica".into(),
            streaming,
            replay_lag_bytes: bytes,
            replay_lag_ms: ms,
            not_streaming_reason: (!streaming).then(|| "the WAL receiver is starting".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_replica_over_the_limit_is_not_ready_and_says_by_how_much() {
        let max = MaxLag::Bytes(1000);
        assert_eq!(
            lag_verdict(max, Some(&replica(true, Some(1000), Some(5)))),
            None
        );
        let why = lag_verdict(max, Some(&replica(true, Some(1001), Some(5)))).unwrap();
        assert!(
            why.contains("1001 bytes") && why.contains("1000 bytes"),
            "{why}"
        );
        let max = MaxLag::Time(Duration::from_secs(2));
        assert_eq!(
            lag_verdict(max, Some(&replica(true, Some(9), Some(2000)))),
            None
        );
        let why = lag_verdict(max, Some(&replica(true, Some(9), Some(2001)))).unwrap();
        assert!(why.contains("2001 ms"), "{why}");
        let why = lag_verdict(max, Some(&replica(true, Some(9), None))).unwrap();
        assert!(why.contains("not replayed any position"), "{why}");
    }

    #[test]
    fn the_lag_is_the_sources_position_not_what_the_replica_received() {
        // Streaming, all it received replayed, but the source is 2 MB ahead.
        let r = ReplicationStatus {
            receive_lsn: Some(crate::storage::Lsn(0x100_0000)),
            replay_lsn: Some(crate::storage::Lsn(0x100_0000)),
            source_lsn: Some(crate::storage::Lsn(0x120_0000)),
            ..replica(true, Some(0x20_0000), Some(3000))
        };
        let why = lag_verdict(MaxLag::Bytes(1 << 20), Some(&r)).unwrap();
        assert!(
            why.contains("by 2097152 bytes")
                && why.contains("source 0/1200000, receive 0/1000000, replay 0/1000000"),
            "{why}"
        );
    }

    #[test]
    fn a_source_that_cannot_be_asked_is_not_ready_with_the_last_known_values() {
        let r = ReplicationStatus {
            replay_lsn: Some(crate::storage::Lsn(0x100_0000)),
            source_lsn: Some(crate::storage::Lsn(0x100_0000)),
            source_error: Some("the source host=s port=1 cannot be asked: refused".into()),
            ..replica(true, Some(0), Some(0))
        };
        for max in [
            MaxLag::Bytes(1 << 30),
            MaxLag::Time(Duration::from_secs(60)),
        ] {
            let why = lag_verdict(max, Some(&r)).unwrap();
            assert!(
                why.contains("cannot be asked: refused")
                    && why.contains("last known: source 0/1000000")
                    && why.contains("lag 0 bytes"),
                "{why}"
            );
        }
    }

    fn member(name: &str, state: &str, reason: Option<&str>) -> SafekeeperStatus {
        SafekeeperStatus {
            name: format!("sk_{name}"),
            safekeeper: format!("host={name} port=5432"),
            state: state.into(),
            reason: reason.map(str::to_string),
            flush_lsn: None,
            replay_lsn: None,
        }
    }

    #[test]
    fn a_primary_without_its_safekeeper_quorum_is_not_ready_and_says_which_are_missing() {
        let members = vec![
            member("a", "streaming", None),
            member("b", "unreachable", Some("connection refused")),
            member("c", "catching_up", None),
        ];
        let q = QuorumStatus::of(
            &members,
            &crate::storage::Promoted::at(2, crate::storage::Lsn(0)),
        );
        assert!(!q.holds);
        let why = quorum_verdict(Some((&q, &members))).unwrap();
        assert!(
            why.contains("1 of 3 safekeepers stream, commits need 2 (2 of 3)"),
            "{why}"
        );
        assert!(
            why.contains("sk_b (host=b port=5432): unreachable: connection refused"),
            "{why}"
        );
        assert!(
            why.contains("sk_c (host=c port=5432): catching_up"),
            "{why}"
        );
        assert!(!why.contains("sk_a"), "{why}");

        let members = vec![
            member("a", "streaming", None),
            member("b", "streaming", None),
            member("c", "diverged", Some("past the fork")),
        ];
        let q = QuorumStatus::of(
            &members,
            &crate::storage::Promoted::at(2, crate::storage::Lsn(0)),
        );
        assert_eq!(quorum_verdict(Some((&q, &members))), None);
        assert_eq!(
            quorum_verdict(None),
            None,
            "no safekeepers: nothing to wait for"
        );
    }

    #[test]
    fn unknown_lag_is_not_ready_but_primaries_and_static_computes_never_wait() {
        let max = MaxLag::Bytes(1 << 20);
        let why = lag_verdict(max, Some(&replica(false, None, None))).unwrap();
        assert!(why.contains("unknown") && why.contains("starting"), "{why}");
        assert!(lag_verdict(max, Some(&replica(true, None, None))).is_some());
        assert_eq!(lag_verdict(max, None), None);
        for mode in ["primary", "static"] {
            let mut r = replica(false, Some(u64::MAX), Some(u64::MAX));
            r.mode = mode.into();
            assert_eq!(lag_verdict(max, Some(&r)), None, "{mode}");
        }
    }
}
