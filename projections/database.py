"""Which PostgreSQL the projections use, and connecting to it."""

from __future__ import annotations

from notifier.settings import Settings


class DatabaseNotConfiguredError(RuntimeError):
    """Neither DATABASE_URL nor a running embedded server."""


def database_url(settings: Settings) -> str:
    """DATABASE_URL when set, else the embedded server that `make up` started."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    url_file = settings.stack_dir / "postgres.url"
    if url_file.exists():
        return url_file.read_text().strip()
    raise DatabaseNotConfiguredError(
        f"no DATABASE_URL and no embedded PostgreSQL for stack '{settings.stack}' "
        f"({url_file} is missing): run `make up` or set DATABASE_URL"
    )
