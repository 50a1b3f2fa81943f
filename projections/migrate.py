"""Apply the numbered SQL migrations in projections/migrations/ (yoyo records what ran)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


@dataclass(frozen=True)
class MigrationResult:
    """Which migrations this run applied and which were applied before."""

    applied: list[str]
    already: list[str]


def _backend_url(url: str) -> str:
    # yoyo picks its driver from the scheme; psycopg 3 is "postgresql+psycopg"
    scheme, _, rest = url.partition("://")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return url


def migrate(url: str) -> MigrationResult:
    """Apply pending migrations under yoyo's lock; running it again applies nothing."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(_backend_url(url))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    try:
        with backend.lock():
            pending = backend.to_apply(migrations)
            pending_ids = [m.id for m in pending]
            already = [m.id for m in migrations if m.id not in pending_ids]
            backend.apply_migrations(pending)
    finally:
        backend.connection.close()
    return MigrationResult(applied=pending_ids, already=already)
