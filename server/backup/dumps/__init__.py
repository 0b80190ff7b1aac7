"""Logical dumps and restores of both databases, and the checks that prove them
(docs/backups.md, "Logical dumps and checks"):

- :mod:`.checks`: row counts and content hashes per table / collection, the ledger
  invariant, comparisons;
- :mod:`.postgres`: ``pg_dump`` from an exported snapshot, scratch and live restores;
- :mod:`.mongo`: full and incremental BSON exports and their restores;
- :mod:`.scratch`: throwaway databases for drills;
- :mod:`.queries`: their SQL.

A library for the backup flows (server/backup/flows.py); it wires no RPC.
"""
