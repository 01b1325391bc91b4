//! What the Postgres binary in use says about its settings: its catalogue
//! (`--version`, `--describe-config`), the base units and the verdicts
//! `config_check` asked of it. Read once per run; with `--settings-cache`
//! kept across runs too (`pg::settings_cache`), so that a start on a binary
//! met before spawns none of those processes beside its base backup.

use std::sync::Arc;

use super::Compute;
use crate::env::Env;
use crate::pg::{
    self,
    settings_cache::{self, BinaryAnswers, CacheEntry, Verdict},
};

/// The binary's listing as it answered, kept to rewrite its cache file
/// when more is learnt.
pub(super) struct KeptListing {
    entry: CacheEntry,
    version: String,
    listing: String,
    /// Asked of the binary and not written yet: the first check of a spec
    /// writes it once, with the units and verdicts it learnt.
    unsaved: std::sync::atomic::AtomicBool,
}

impl<E: Env> Compute<E> {
    /// The settings of the binary in use, read at first need and kept
    /// (`None` when `postgres --describe-config` cannot be run: then only
    /// the check of the written file guards the config).
    pub async fn settings_catalogue(&self) -> Option<Arc<pg::SettingsCatalogue>> {
        self.settings_catalogue
            .get_or_init(|| self.read_settings_catalogue())
            .await
            .clone()
    }

    async fn read_settings_catalogue(&self) -> Option<Arc<pg::SettingsCatalogue>> {
        let pgbin = &self.params.pgbin;
        let cached = match &self.params.settings_cache {
            Some(dir) => settings_cache::lookup(&self.env, dir, pgbin).await,
            None => None,
        };
        let (entry, answers) = cached.map_or((None, None), |(e, a)| (Some(e), a));
        let recalled = answers.and_then(|a| {
            let catalogue =
                pg::SettingsCatalogue::from_listing(pgbin, &a.version, &a.describe_config).ok()?;
            Some((catalogue, a))
        });
        let from_cache = recalled.is_some();
        let (catalogue, version, listing) = match recalled {
            Some((catalogue, answers)) => {
                let (version, listing) = self.recall(answers);
                (catalogue, version, listing)
            }
            None => {
                let read = pg::ask_settings_listing(&self.env, &self.params)
                    .await
                    .and_then(|(version, listing)| {
                        let c = pg::SettingsCatalogue::from_listing(pgbin, &version, &listing)?;
                        Ok((c, version, listing))
                    });
                match read {
                    Ok(read) => read,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the settings catalogue; settings are checked only in the written file, before the reload");
                        return None;
                    }
                }
            }
        };
        tracing::info!(
            major = catalogue.major,
            settings = catalogue.len(),
            from_cache,
            "settings catalogue read"
        );
        self.state
            .send_modify(|st| st.pg_major = Some(catalogue.major));
        if let Some(entry) = entry {
            let _ = self.binary_listing.set(KeptListing {
                entry,
                version,
                listing,
                unsaved: (!from_cache).into(),
            });
        }
        Some(Arc::new(catalogue))
    }

    /// Takes the cached units and verdicts as learnt; gives back the listing.
    fn recall(&self, answers: BinaryAnswers) -> (String, String) {
        if let Ok(mut m) = self.setting_units.lock() {
            for (name, unit) in answers.units {
                m.entry(name).or_insert(unit);
            }
        }
        if let Ok(mut m) = self.judged_settings.lock() {
            for v in answers.verdicts {
                let verdict = match v.refused {
                    Some(reason) => Err(reason),
                    None => Ok(()),
                };
                m.entry((v.name, v.value)).or_insert(Some(verdict));
            }
        }
        (answers.version, answers.describe_config)
    }

    /// Whether the binary's listing was asked and is not in the cache yet.
    pub(super) fn binary_answers_unsaved(&self) -> bool {
        self.binary_listing
            .get()
            .is_some_and(|k| k.unsaved.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Writes what the binary has answered so far to its cache file (when
    /// the cache is on). A failed write costs the next run the asking, so
    /// it is logged, not raised.
    pub(super) async fn keep_binary_answers(&self) {
        if let Err((file, e)) = self.store_binary_answers().await {
            tracing::info!(
                file = %file.display(),
                error = %e,
                "cannot write the settings cache; the next start asks the binary again (make the directory writable, or run with --no-settings-cache)"
            );
        }
    }

    /// [`keep_binary_answers`](Self::keep_binary_answers), the failure
    /// given back; the file written (`None`: the cache is off).
    async fn store_binary_answers(
        &self,
    ) -> Result<Option<&std::path::Path>, (&std::path::Path, std::io::Error)> {
        let Some(kept) = self.binary_listing.get() else {
            return Ok(None);
        };
        let units = self
            .setting_units
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let verdicts = self
            .judged_settings
            .lock()
            .map(|m| {
                m.iter()
                    .filter_map(|((name, value), verdict)| {
                        Some(Verdict {
                            name: name.clone(),
                            value: value.clone(),
                            refused: verdict.clone()?.err(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let answers = BinaryAnswers {
            version: kept.version.clone(),
            describe_config: kept.listing.clone(),
            units,
            verdicts,
        };
        // One attempt per new answer: where nothing can be written (a
        // read-only file system), a notify must not retry it every time.
        kept.unsaved
            .store(false, std::sync::atomic::Ordering::Relaxed);
        settings_cache::store(&self.env, &kept.entry, &answers)
            .await
            .map(|()| Some(kept.entry.file.as_path()))
            .map_err(|e| (kept.entry.file.as_path(), e))
    }

    /// Fills the settings cache of the binary in use: its listing and the
    /// base unit of every setting that has one (`--write-settings-cache`,
    /// for an image build). Says what it wrote.
    pub async fn fill_settings_cache(&self) -> Result<String, FillCacheError> {
        let binary = self.params.pgbin.display().to_string();
        let catalogue = self
            .settings_catalogue()
            .await
            .ok_or_else(|| FillCacheError::Listing(binary.clone()))?;
        let learn: Vec<(String, pg::SettingDef)> = catalogue
            .iter()
            .filter(|(name, def)| {
                self.unit_of(name).is_none() && pg::BaseUnit::probe(def).is_some()
            })
            .map(|(name, def)| (name.to_string(), def.clone()))
            .collect();
        // A few at a time: each is a `postgres` process.
        for chunk in learn.chunks(8) {
            let units = futures::future::join_all(
                chunk
                    .iter()
                    .map(|(n, def)| pg::learn_base_unit(&self.env, &self.params, n, def)),
            )
            .await;
            if let Ok(mut m) = self.setting_units.lock() {
                m.extend(chunk.iter().map(|(n, _)| n.clone()).zip(units));
            }
        }
        let units = self
            .setting_units
            .lock()
            .map(|m| m.values().filter(|u| u.is_some()).count())
            .unwrap_or(0);
        match self.store_binary_answers().await {
            Ok(Some(file)) => Ok(format!(
                "{}: PostgreSQL {} at {binary}, {} settings, {units} base units",
                file.display(),
                catalogue.major,
                catalogue.len()
            )),
            Ok(None) => Err(FillCacheError::NoStamp(binary)),
            Err((file, e)) => Err(FillCacheError::Write {
                file: file.display().to_string(),
                source: e,
            }),
        }
    }
}

/// Why `--write-settings-cache` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum FillCacheError {
    #[error(
        "cannot read the settings of {0} (`--version`, `--describe-config`; the log says why); pass the postgres server binary with -b"
    )]
    Listing(String),
    #[error(
        "cannot read the size and modification time of {0}; pass the path of the postgres server binary with -b"
    )]
    NoStamp(String),
    #[error("cannot write {file}: {source}; make the --settings-cache directory writable")]
    Write {
        file: String,
        source: std::io::Error,
    },
}
