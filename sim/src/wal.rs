//! The WAL model of a primary with safekeepers (issue 21): what each WAL
//! holder (the compute's Postgres, each safekeeper, the pageserver) has
//! durably, as a list of records with their timeline, and the rules that
//! Postgres applies when one server streams from another.
//!
//! A record is one client commit (`id`, 0 for none) at an LSN, every
//! record [`RECORD_BYTES`] after the one before. Each record carries a
//! hash `chain` of the whole history up to it (and `prev`, the chain it
//! extends): two WALs agree up to an LSN exactly when their chains there
//! are equal. Postgres does not see chains; it decides by timelines
//! ([`Wal::can_stream`]); the checkers use chains as the ground truth
//! ("two histories mixed").
//!
//! Lives in `SharedInner::wal`, outside the hosts: a safekeeper's or the
//! pageserver's WAL is durable (it survives a crash of its host); the
//! compute's is its PGDATA's, made afresh by every start.

use std::collections::BTreeMap;

/// The LSN before the first record.
pub const WAL_START: u64 = 0x0100_0000;
/// The size of one record.
pub const RECORD_BYTES: u64 = 128;
/// The chain of an empty WAL.
pub const GENESIS: u64 = 0x5EED_0000_0000_0001;

/// One WAL record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub lsn: u64,
    pub tli: u32,
    /// The client commit it holds (0: none).
    pub id: u64,
    /// The chain this record extends.
    pub prev: u64,
    /// The chain of the history up to and including this record.
    pub chain: u64,
}

impl Record {
    /// `lsn,tli,id,prev,chain`, for the line protocol.
    pub fn encode(&self) -> String {
        format!(
            "{},{},{},{},{}",
            self.lsn, self.tli, self.id, self.prev, self.chain
        )
    }

    pub fn decode(s: &str) -> Option<Self> {
        let mut it = s.split(',').map(|v| v.parse::<u64>().ok());
        Some(Self {
            lsn: it.next()??,
            tli: u32::try_from(it.next()??).ok()?,
            id: it.next()??,
            prev: it.next()??,
            chain: it.next()??,
        })
    }
}

fn mix(prev: u64, lsn: u64, tli: u32, id: u64) -> u64 {
    // splitmix64 over the fields: a stand-in for the content of the record.
    let mut z = prev ^ lsn.rotate_left(17) ^ u64::from(tli).rotate_left(41) ^ id.rotate_left(29);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Why a server does not stream WAL to a standby that asked from
/// (`tli`, `lsn`), in Postgres' words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The standby is ahead of this server's WAL (it retries).
    Ahead { lsn: u64, end: u64 },
    /// The standby's timeline ended here before where it stands: it holds
    /// WAL this server's history does not (it can never follow).
    Diverged { tli: u32, lsn: u64, switch: u64 },
    /// The standby's timeline is not in this server's history.
    UnknownTimeline { tli: u32 },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = |v: u64| compute_ctl::storage::Lsn(v).to_string();
        match self {
            Refusal::Ahead { lsn, end } => write!(
                f,
                "requested starting point {} is ahead of the WAL flush position of this server {}",
                l(*lsn),
                l(*end)
            ),
            Refusal::Diverged { tli, lsn, switch } => write!(
                f,
                "requested starting point {} on timeline {tli} is not in this server's history: timeline {tli} ended at {}",
                l(*lsn),
                l(*switch)
            ),
            Refusal::UnknownTimeline { tli } => write!(
                f,
                "requested timeline {tli} is not in this server's history"
            ),
        }
    }
}

/// One server's WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wal {
    pub records: Vec<Record>,
    /// Ancestor timelines and the LSN where each ended (its history file).
    pub history: Vec<(u32, u64)>,
    /// The timeline it is on.
    pub tli: u32,
}

impl Default for Wal {
    fn default() -> Self {
        Self {
            records: Vec::new(),
            history: Vec::new(),
            tli: 1,
        }
    }
}

impl Wal {
    /// Where its WAL ends.
    pub fn end(&self) -> u64 {
        self.records.last().map_or(WAL_START, |r| r.lsn)
    }

    /// The chain at its end.
    pub fn chain(&self) -> u64 {
        self.records.last().map_or(GENESIS, |r| r.chain)
    }

    /// A primary writes a record (a commit `id`, or 0).
    pub fn append(&mut self, id: u64) -> Record {
        let prev = self.chain();
        let lsn = self.end() + RECORD_BYTES;
        let rec = Record {
            lsn,
            tli: self.tli,
            id,
            prev,
            chain: mix(prev, lsn, self.tli, id),
        };
        self.records.push(rec);
        rec
    }

    /// The records after `lsn`.
    pub fn after(&self, lsn: u64) -> &[Record] {
        let i = self.records.partition_point(|r| r.lsn <= lsn);
        &self.records[i..]
    }

    /// A standby writes what it received: the records past its end (a
    /// resent record is skipped).
    pub fn receive(&mut self, recs: &[Record]) {
        let end = self.end();
        self.records
            .extend(recs.iter().copied().filter(|r| r.lsn > end));
    }

    /// The commits it holds.
    pub fn ids(&self) -> Vec<u64> {
        self.records
            .iter()
            .filter(|r| r.id != 0)
            .map(|r| r.id)
            .collect()
    }

    /// The timeline of its newest WAL segment, as `pg_wal`'s file names
    /// say: its last record's, or with no record the timeline its WAL
    /// began on. A standby that fetched a newer timeline's history file
    /// but received none of its WAL has no segment of it.
    pub fn segment_tli(&self) -> u32 {
        match self.records.last() {
            Some(r) => r.tli,
            None => self.history.first().map_or(self.tli, |h| h.0),
        }
    }

    /// What a server in recovery tells a standby that streams from it or
    /// backs it up: the timeline it replays ([`segment_tli`](Self::segment_tli))
    /// and the history up to it (a cascading walsender reports its replay
    /// timeline, not the newer history files it fetched).
    pub fn replayed_view(&self) -> Wal {
        let tli = self.segment_tli();
        Wal {
            records: self.records.clone(),
            history: self.history.iter().copied().filter(|h| h.0 < tli).collect(),
            tli,
        }
    }

    /// The content of the history file of the timeline it follows (its
    /// ancestors and where each ended), as Postgres writes it.
    pub fn history_file(&self) -> String {
        self.history
            .iter()
            .map(|(t, end)| {
                format!(
                    "{t}\t{}\tno recovery target specified\n",
                    compute_ctl::storage::Lsn(*end)
                )
            })
            .collect()
    }

    /// The newest timeline whose history file it holds (0: none; timeline
    /// 1 has none).
    pub fn history_tli(&self) -> u32 {
        let newest = self.history.iter().map(|h| h.0).fold(self.tli, u32::max);
        if newest >= 2 { newest } else { 0 }
    }

    /// `pg_promote()`: a new timeline, one past every timeline it knows,
    /// forking at its end. Returns (timeline, fork LSN).
    pub fn promote(&mut self) -> (u32, u64) {
        self.promote_past(0, 0)
    }

    /// [`promote`](Self::promote) when `pg_wal` also holds history files up
    /// to `reserved` (placeholders a start wrote to promote onto the
    /// timeline it claimed); `salt` tells this promotion's end-of-recovery
    /// record apart from another's at the same place (Postgres' holds a
    /// timestamp).
    pub fn promote_past(&mut self, reserved: u32, salt: u64) -> (u32, u64) {
        let end = self.end();
        let newest = self
            .history
            .iter()
            .map(|h| h.0)
            .chain(self.records.iter().map(|r| r.tli))
            .fold(self.tli.max(reserved), u32::max);
        self.history.push((self.tli, end));
        self.tli = newest + 1;
        // Postgres writes its end-of-recovery record at once.
        let prev = self.chain();
        let lsn = end + RECORD_BYTES;
        self.records.push(Record {
            lsn,
            tli: self.tli,
            id: 0,
            prev,
            chain: mix(prev ^ salt.rotate_left(7), lsn, self.tli, 0),
        });
        (self.tli, end)
    }

    /// A standby follows its upstream onto the upstream's timeline (the
    /// walsender sends the history file first).
    pub fn adopt_history(&mut self, up_history: &[(u32, u64)], up_tli: u32) {
        self.history = up_history.to_vec();
        self.tli = up_tli;
    }

    /// Whether this server (the upstream) streams to a standby on `tli`
    /// whose WAL ends at `lsn`, as Postgres' walsender decides: the same
    /// timeline up to this server's end, or an ancestor timeline up to the
    /// point where it ended here.
    pub fn can_stream(&self, tli: u32, lsn: u64) -> Result<(), Refusal> {
        if tli == self.tli {
            return if lsn <= self.end() {
                Ok(())
            } else {
                Err(Refusal::Ahead {
                    lsn,
                    end: self.end(),
                })
            };
        }
        match self.history.iter().find(|h| h.0 == tli) {
            Some(&(_, switch)) if lsn <= switch => Ok(()),
            Some(&(_, switch)) => Err(Refusal::Diverged { tli, lsn, switch }),
            None => Err(Refusal::UnknownTimeline { tli }),
        }
    }

    /// The history line the walsender sends: `tli:end,...;current`.
    pub fn encode_history(&self) -> String {
        let h: Vec<String> = self
            .history
            .iter()
            .map(|(t, e)| format!("{t}:{e}"))
            .collect();
        format!("{};{}", h.join(","), self.tli)
    }

    pub fn decode_history(s: &str) -> Option<(Vec<(u32, u64)>, u32)> {
        let (h, cur) = s.split_once(';')?;
        let history = h
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (t, e) = p.split_once(':')?;
                Some((t.parse().ok()?, e.parse().ok()?))
            })
            .collect::<Option<Vec<_>>>()?;
        Some((history, cur.parse().ok()?))
    }
}

/// One WAL sender of the compute (a row of `pg_stat_replication`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// Which connection (a newer one of the same name replaces it).
    pub conn: u64,
    pub flush: u64,
}

/// The compute's Postgres, as far as WAL goes.
#[derive(Debug, Clone, Default)]
pub struct ComputeWal {
    /// Its PGDATA's WAL (from the base backup, then replayed and written).
    pub wal: Wal,
    /// A standby (catching up) until promoted.
    pub in_recovery: bool,
    /// Where it started to write as a primary (its fork point).
    pub primary_since: Option<u64>,
    /// The compute host's boot in which it was last promoted.
    pub promoted_boot: Option<u64>,
    /// Its WAL senders by `application_name`.
    pub senders: BTreeMap<String, Sender>,
    /// A smart or fast shutdown began: no new transaction commits.
    pub shutting_down: bool,
}

/// One safekeeper: a streaming standby whose WAL is durable.
#[derive(Debug, Clone, Default)]
pub struct SafekeeperWal {
    pub wal: Wal,
    /// The timeline of its last restartpoint, once one was made since it
    /// was cloned (a `CHECKPOINT`, or the clone's own): what
    /// `pg_control_checkpoint()` shows, which lags a timeline switch that
    /// replay made since.
    pub restartpoint_tli: Option<u32>,
    /// `primary_conninfo` in effect (the last reload's).
    pub conninfo: String,
    /// `ALTER SYSTEM SET primary_conninfo` not yet reloaded.
    pub pending_conninfo: Option<String>,
    /// Its WAL receiver streams now.
    pub streaming: bool,
    /// How long it takes to flush what it received (its lag).
    pub flush_delay_ms: u64,
    /// The extra flush delay of a `SafekeeperLag` fault while it lasts.
    pub fault_delay_ms: u64,
    /// The timeline a start claimed on it (`compute_ctl.claimed_timeline`
    /// in its `postgresql.auto.conf`: it survives a crash).
    pub claimed: Option<u32>,
}

impl SafekeeperWal {
    /// Whether it can ever stream from a primary with WAL `primary`: its
    /// WAL stays on the primary's history (it may only lag). The storage
    /// re-clones one that cannot (`reclone_diverged`), and `/status` must
    /// call it `diverged` (`checkers/diverged_report.rs`).
    pub fn can_follow(&self, primary: &Wal) -> bool {
        !matches!(
            primary.can_stream(self.wal.tli, self.wal.end()),
            Err(Refusal::Diverged { .. } | Refusal::UnknownTimeline { .. })
        )
    }

    /// `pg_control_checkpoint()`'s timeline: its last restartpoint's, else
    /// the timeline its WAL began on.
    pub fn checkpoint_tli(&self) -> u32 {
        self.restartpoint_tli.unwrap_or_else(|| {
            self.wal
                .records
                .first()
                .map_or_else(|| self.wal.segment_tli(), |r| r.tli)
        })
    }
}

/// Every WAL holder of the world.
#[derive(Debug, Clone, Default)]
pub struct WalWorld {
    /// The durable-primary model is in use (the scenario's safekeepers stream).
    pub enabled: bool,
    pub compute: ComputeWal,
    pub safekeepers: BTreeMap<String, SafekeeperWal>,
    /// The pageserver (`storage`): ingests what a majority of the
    /// safekeepers flushed, while its host runs.
    pub pageserver: Wal,
    /// The next client commit's id.
    pub next_commit: u64,
    /// The next walsender connection's number.
    pub next_conn: u64,
    /// The safekeeper sets whose majorities the storage counts as the
    /// commit LSN (the control plane tells it, as Neon's storage
    /// controller does): each must hold a record for the pageserver to
    /// ingest it; both sets while a move runs. Empty: every safekeeper
    /// host is one set.
    pub quorum_sets: Vec<Vec<String>>,
    /// How many promotions happened (each end-of-recovery record's salt).
    pub promotions: u64,
}

impl WalWorld {
    /// The WAL the base backup of `host` copies.
    pub fn source(&self, host: &str) -> Option<&Wal> {
        if host == crate::names::STORAGE {
            return Some(&self.pageserver);
        }
        self.safekeepers.get(host).map(|s| &s.wal)
    }

    /// The pageserver takes what a majority of the safekeepers flushed on
    /// one history (as Neon's pageserver ingests the commit LSN): the
    /// records of the safekeeper whose chain a majority shares furthest.
    pub fn ingest_pageserver(&mut self) {
        let n = self.safekeepers.len();
        let need = compute_ctl::storage::majority(n);
        let mut best: Option<&Wal> = None;
        let mut best_lsn = self.pageserver.end();
        for sk in self.safekeepers.values() {
            // Walk back from its end to the furthest record a majority holds.
            for r in sk.wal.records.iter().rev() {
                if r.lsn <= best_lsn {
                    break;
                }
                let holds = |o: &SafekeeperWal| chain_at(&o.wal, r.lsn) == Some(r.chain);
                let committed = if self.quorum_sets.is_empty() {
                    self.safekeepers.values().filter(|o| holds(o)).count() >= need
                } else {
                    self.quorum_sets.iter().all(|set| {
                        let held = set
                            .iter()
                            .filter(|m| self.safekeepers.get(*m).is_some_and(holds))
                            .count();
                        held >= compute_ctl::storage::majority(set.len())
                    })
                };
                if committed {
                    best = Some(&sk.wal);
                    best_lsn = r.lsn;
                    break;
                }
            }
        }
        let Some(src) = best else { return };
        let own = self.pageserver.end();
        // Only a continuation of its own history.
        if chain_at(src, own) != Some(self.pageserver.chain()) && own != WAL_START {
            return;
        }
        let recs: Vec<Record> = src
            .after(own)
            .iter()
            .take_while(|r| r.lsn <= best_lsn)
            .copied()
            .collect();
        let (h, t) = (src.history.clone(), src.tli);
        self.pageserver.receive(&recs);
        self.pageserver.adopt_history(&h, t);
    }
}

/// The chain of `wal` at `lsn` (None past its end or before its start).
pub fn chain_at(wal: &Wal, lsn: u64) -> Option<u64> {
    if lsn == WAL_START {
        return Some(GENESIS);
    }
    let i = wal.records.partition_point(|r| r.lsn < lsn);
    wal.records.get(i).filter(|r| r.lsn == lsn).map(|r| r.chain)
}

/// Whether a commit at `lsn` is acknowledged, per the compute's loaded
/// `synchronous_commit` and `synchronous_standby_names` (`ANY q (..)`,
/// `FIRST q (..)` or a plain list, which waits for its first name) and the
/// flush LSNs of its WAL senders.
pub fn commit_acknowledged(
    conf: &BTreeMap<String, String>,
    senders: &BTreeMap<String, Sender>,
    lsn: u64,
) -> bool {
    let commit = conf
        .get("synchronous_commit")
        .map(|v| v.to_ascii_lowercase())
        .unwrap_or_else(|| "on".into());
    if matches!(commit.as_str(), "off" | "local" | "false" | "no" | "0") {
        return true;
    }
    let names = conf
        .get("synchronous_standby_names")
        .map(String::as_str)
        .unwrap_or("");
    let Some((need, list)) = parse_standby_names(names) else {
        return true;
    };
    let flushed = list
        .iter()
        .filter(|n| senders.get(*n).is_some_and(|s| s.flush >= lsn))
        .count();
    flushed >= need
}

/// `(how many, names)` of `synchronous_standby_names`; None when empty.
pub fn parse_standby_names(v: &str) -> Option<(usize, Vec<String>)> {
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    let (need, list) = match v.find('(') {
        Some(open) => {
            let head: Vec<&str> = v[..open].split_whitespace().collect();
            let n = head.last().and_then(|n| n.parse().ok()).unwrap_or(1);
            (n, v[open + 1..].trim_end().trim_end_matches(')'))
        }
        None => (1, v),
    };
    let names = list
        .split(',')
        .map(|n| n.trim().trim_matches('"').to_string())
        .filter(|n| !n.is_empty())
        .collect();
    Some((need, names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_promotion_forks_a_new_timeline_that_an_old_standby_past_the_fork_cannot_follow() {
        let mut old = Wal::default();
        for id in 1..=5 {
            old.append(id);
        }
        // A new primary from the first three records.
        let mut new = Wal {
            records: old.records[..3].to_vec(),
            ..Wal::default()
        };
        let (tli, fork) = new.promote();
        assert_eq!((tli, fork), (2, old.records[2].lsn));
        new.append(6);
        assert!(new.can_stream(1, old.records[2].lsn).is_ok());
        assert!(matches!(
            new.can_stream(1, old.end()),
            Err(Refusal::Diverged { .. })
        ));
        assert!(matches!(
            new.can_stream(2, new.end() + RECORD_BYTES),
            Err(Refusal::Ahead { .. })
        ));
        // The chains tell the two histories apart at the same LSN.
        assert_eq!(chain_at(&new, fork), chain_at(&old, fork));
        let after = fork + RECORD_BYTES;
        assert_ne!(chain_at(&new, after), chain_at(&old, after));
    }

    #[test]
    fn a_commit_waits_for_the_quorum_its_settings_name() {
        let conf = |names: &str, commit: &str| {
            BTreeMap::from([
                ("synchronous_standby_names".to_string(), names.to_string()),
                ("synchronous_commit".to_string(), commit.to_string()),
            ])
        };
        let senders = BTreeMap::from([
            ("a".to_string(), Sender { conn: 1, flush: 10 }),
            ("b".to_string(), Sender { conn: 2, flush: 5 }),
        ]);
        let any2 = conf("ANY 2 (\"a\", \"b\", \"c\")", "on");
        assert!(commit_acknowledged(&any2, &senders, 5));
        assert!(!commit_acknowledged(&any2, &senders, 6));
        assert!(commit_acknowledged(
            &conf("ANY 2 (\"a\", \"b\")", "local"),
            &senders,
            99
        ));
        assert!(commit_acknowledged(&conf("", "on"), &senders, 99));
        assert_eq!(
            parse_standby_names("ANY 2 (\"a\", \"b\", \"c\")"),
            Some((2, vec!["a".into(), "b".into(), "c".into()]))
        );
    }

    #[test]
    fn records_and_histories_round_trip_the_line_protocol() {
        let mut w = Wal::default();
        let r = w.append(7);
        assert_eq!(Record::decode(&r.encode()), Some(r));
        w.promote();
        let (h, t) = Wal::decode_history(&w.encode_history()).unwrap();
        assert_eq!((h, t), (w.history.clone(), w.tli));
    }
}
