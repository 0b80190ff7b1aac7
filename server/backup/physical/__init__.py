"""Physical backups of PostgreSQL and point-in-time recovery (docs/backups.md, "Physical
backups and point-in-time recovery"): ``pg_basebackup`` full and incremental backups,
``pg_verifybackup``, ``pg_combinebackup`` (:mod:`.basebackup`), tar packing for sealing
(:mod:`.packing`), the WAL archive (:mod:`.wal`) and recovery to a point in time into a
scratch server (:mod:`.pitr`). A library: the backup flows call it."""
