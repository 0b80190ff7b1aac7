"""Database migrations shipped with GenCharge.

``migrations/postgres`` is the Alembic script folder for PostgreSQL (driven
programmatically by :mod:`server.ops.pgmigrate`, no ``alembic.ini`` needed).
"""
