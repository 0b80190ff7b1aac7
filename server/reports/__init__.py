"""Reports: the DDS 7.2 MongoDB aggregation pipelines (see :mod:`server.reports.pipelines`)."""
