"""BackupService (backups of PostgreSQL and MongoDB, their manifests, restore drills)
lives here: servicer, convert, domain, flows (a backup spans the dump tools and the
storage), queries, as every domain package. Not built yet: its RPCs answer
UNIMPLEMENTED (server/rpc/services.py registers the generated base servicer)."""
