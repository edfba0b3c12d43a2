"""State on disk and in the database: accounts, repositories on disk, the push log, feature flags."""
