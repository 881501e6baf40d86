//! Schema versions: the migrations embedded in this binary against those a database has
//! applied. Shared by both adapters; the SQL that reads `_sqlx_migrations` lives in each.

use std::collections::BTreeSet;

use sqlx::migrate::{MigrateError, Migrator};

use crate::{Error, MigrationReport, Result};

/// One row of sqlx's `_sqlx_migrations` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Applied {
    pub version: i64,
    pub success: bool,
    pub checksum: Vec<u8>,
}

/// Newest migration version `migrator` embeds (0 if it has none).
pub(crate) fn latest(migrator: &Migrator) -> i64 {
    migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// Checks that the applied migrations are ones this binary knows, unchanged and complete.
///
/// Refuses, in this order: versions newer than any embedded one ([`Error::SchemaTooNew`]);
/// unknown older versions, failed (dirty) or edited migrations ([`Error::Migrate`]); and,
/// with `require_current`, embedded migrations not applied yet ([`Error::SchemaOutdated`]).
pub(crate) fn check(migrator: &Migrator, applied: &[Applied], require_current: bool) -> Result<()> {
    let supported = latest(migrator);
    let found = applied.iter().map(|a| a.version).max();
    if let Some(found) = found.filter(|&v| v > supported) {
        return Err(Error::SchemaTooNew { found, supported });
    }
    for a in applied {
        let known = migrator
            .iter()
            .find(|m| m.version == a.version && !m.migration_type.is_down_migration());
        let Some(known) = known else {
            return Err(Error::Migrate(MigrateError::VersionMissing(a.version)));
        };
        if !a.success {
            return Err(Error::Migrate(MigrateError::Dirty(a.version)));
        }
        if *known.checksum != *a.checksum {
            return Err(Error::Migrate(MigrateError::VersionMismatch(a.version)));
        }
    }
    if require_current {
        let applied: BTreeSet<i64> = applied.iter().map(|a| a.version).collect();
        let pending = migrator
            .iter()
            .any(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version));
        if pending {
            return Err(Error::SchemaOutdated {
                found,
                required: supported,
            });
        }
    }
    Ok(())
}

/// Maps an error of `Migrator::run`, turning a migration applied by a newer binary in the
/// meantime (between [`check`] and the run) into [`Error::SchemaTooNew`].
pub(crate) fn run_error(migrator: &Migrator, error: MigrateError) -> Error {
    let supported = latest(migrator);
    match error {
        MigrateError::VersionMissing(found) if found > supported => {
            Error::SchemaTooNew { found, supported }
        }
        other => Error::Migrate(other),
    }
}

/// What a migration run changed, from the applied rows before and after it.
pub(crate) fn report(before: &[Applied], after: &[Applied]) -> MigrationReport {
    let before: BTreeSet<i64> = before.iter().map(|a| a.version).collect();
    let applied = after
        .iter()
        .filter(|a| !before.contains(&a.version))
        .count();
    MigrationReport {
        applied: u64::try_from(applied).unwrap_or(u64::MAX),
        version: after.iter().map(|a| a.version).max().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType};

    use super::*;

    fn migrator() -> Migrator {
        let migration = |version: i64, sql: &'static str| {
            Migration::new(
                version,
                Cow::Borrowed("test"),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        };
        Migrator::with_migrations(vec![migration(1, "SELECT 1"), migration(2, "SELECT 2")])
    }

    fn applied(migrator: &Migrator, versions: &[i64]) -> Vec<Applied> {
        versions
            .iter()
            .map(|&version| Applied {
                version,
                success: true,
                checksum: migrator
                    .iter()
                    .find(|m| m.version == version)
                    .map(|m| m.checksum.to_vec())
                    .unwrap_or_default(),
            })
            .collect()
    }

    #[test]
    fn current_and_pending_schemas() {
        let m = migrator();
        assert_eq!(latest(&m), 2);
        assert!(check(&m, &applied(&m, &[1, 2]), true).is_ok());
        assert!(check(&m, &applied(&m, &[1]), false).is_ok());
        assert!(matches!(
            check(&m, &applied(&m, &[1]), true),
            Err(Error::SchemaOutdated {
                found: Some(1),
                required: 2
            })
        ));
        assert!(matches!(
            check(&m, &[], true),
            Err(Error::SchemaOutdated {
                found: None,
                required: 2
            })
        ));
    }

    #[test]
    fn newer_unknown_edited_and_dirty_schemas_are_refused() {
        let m = migrator();
        let err = check(&m, &applied(&m, &[1, 2, 3]), false).expect_err("newer");
        assert!(matches!(
            err,
            Error::SchemaTooNew {
                found: 3,
                supported: 2
            }
        ));

        let mut gap = applied(&m, &[1, 2]);
        gap[0].version = 0;
        let err = check(&m, &gap, false).expect_err("unknown older");
        assert!(matches!(
            err,
            Error::Migrate(MigrateError::VersionMissing(0))
        ));

        let mut edited = applied(&m, &[1, 2]);
        edited[1].checksum = vec![0];
        let err = check(&m, &edited, false).expect_err("edited");
        assert!(matches!(
            err,
            Error::Migrate(MigrateError::VersionMismatch(2))
        ));

        let mut dirty = applied(&m, &[1, 2]);
        dirty[1].success = false;
        let err = check(&m, &dirty, false).expect_err("dirty");
        assert!(matches!(err, Error::Migrate(MigrateError::Dirty(2))));
    }

    #[test]
    fn run_errors_for_newer_versions_read_as_too_new() {
        let m = migrator();
        assert!(matches!(
            run_error(&m, MigrateError::VersionMissing(9)),
            Error::SchemaTooNew {
                found: 9,
                supported: 2
            }
        ));
        assert!(matches!(
            run_error(&m, MigrateError::VersionMissing(0)),
            Error::Migrate(MigrateError::VersionMissing(0))
        ));
    }

    #[test]
    fn report_counts_new_versions() {
        let m = migrator();
        let r = report(&applied(&m, &[1]), &applied(&m, &[1, 2]));
        assert_eq!(
            r,
            MigrationReport {
                applied: 1,
                version: 2
            }
        );
        let r = report(&applied(&m, &[1, 2]), &applied(&m, &[1, 2]));
        assert_eq!(
            r,
            MigrationReport {
                applied: 0,
                version: 2
            }
        );
    }
}
