"""Use cases: record, score, tune, activate / roll back. No HTTP types here."""
