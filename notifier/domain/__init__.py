"""Pure decision logic: tiers, ids, templates, error classification. No I/O here."""
