"""Operations (top room): the process. The ``gencharge`` command (cli), start-up and
shutdown (runtime), several worker processes on one port (workers), the embedded
PostgreSQL and MongoDB servers (embedded), migrations (pgmigrate), reference and demo
data (seed) and the background scheduler that ticks the domains' jobs (scheduler)."""
