"""BackupService: backups of PostgreSQL and MongoDB, schedules, the job log, restore
drills (docs/backups.md). The parts, as in every domain package: servicer, convert,
flows, domain, queries, plus jobs.py (the job lock: one backup or restore at a time
across replicas). ListBackups, GetBackup, ListBackupRestoreLogs and the schedule RPCs
are served; CreateBackup, VerifyBackup, RestoreBackup and DeleteBackup answer
UNIMPLEMENTED until their jobs are wired."""
