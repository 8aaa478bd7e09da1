"""One apply at a time across pods: a PostgreSQL advisory lock in the hub's database.

On Kubernetes apply runs as a Job (the CronJob's, or one an operator creates from it) and
nothing stops two from running at once: `concurrencyPolicy: Forbid` covers one CronJob's own
runs only. A file lock on HOME's network share is not a lock (NFS and SMB honour `flock`
partly or not at all), so an installation whose hub database is PostgreSQL (`hub.db_url`,
which `audit.store: postgresql` needs too) takes a session-level advisory lock there for the
whole apply. The lock belongs to the database session: when apply's process dies, however it
dies, the server closes the session and the lock with it, so a crash leaves nothing to clean
up. On one machine (SQLite) the file locks of each dossier's extracts stay the way.

The connection is apply's own, outside any pool (closing it ends the session), and in
autocommit, so the lock is held without a transaction left open for the whole apply.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator

from psycopg.errors import LockNotAvailable
from sqlalchemy import Engine, create_engine, exc, text
from sqlalchemy.pool import NullPool

from dossierhub.state import database
from dossierhub.state.settings import Settings

# a 64-bit key of its own (advisory locks share one key space per database): the first 8
# bytes of a hash of the name, as a signed bigint
APPLY_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"dossierhub apply").digest()[:8], "big", signed=True
)


WAIT_SECONDS = 3600.0  # longer than any apply; a holder past it is stuck, not busy


class ApplyLockError(Exception):
    """The hub's database cannot be reached to take apply's lock; the message names the
    database (never its password) and what went wrong."""


@contextlib.contextmanager
def apply_lock(settings: Settings, on_wait: Callable[[], None]) -> Iterator[None]:
    """Hold apply's lock for the block (PostgreSQL only; without it, nothing to hold).
    `on_wait` is called once when another apply holds it, before waiting for it."""
    if not database.is_postgresql(settings):
        yield
        return
    url = database.postgresql_url(settings)
    where = database.describe(url)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with _locked(engine, on_wait, where):
            yield
    finally:
        engine.dispose()


@contextlib.contextmanager
def _locked(engine: Engine, on_wait: Callable[[], None], where: str) -> Iterator[None]:
    try:
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    except exc.SQLAlchemyError as error:
        raise ApplyLockError(_failed(where, error)) from None
    with conn:
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": APPLY_LOCK_KEY})
            if not got.scalar():
                on_wait()
                # bounded: a session that never lets go (an apply hung on a dead share, or
                # anyone else with the hub's database login) must not stop every later
                # apply for good (the CronJob starts none while one runs)
                conn.execute(text(f"SET lock_timeout = {int(WAIT_SECONDS * 1000)}"))
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": APPLY_LOCK_KEY})
                conn.execute(text("SET lock_timeout = 0"))
        except exc.DBAPIError as error:
            if isinstance(error.orig, LockNotAvailable):
                raise ApplyLockError(
                    f"another apply has held apply's lock in the hub's database {where} for "
                    f"over {WAIT_SECONDS:.0f} s; nothing was built. If no apply is running, "
                    f"the session holding it shows in pg_locks as advisory lock key "
                    f"{APPLY_LOCK_KEY}: end it with pg_terminate_backend"
                ) from None
            raise ApplyLockError(_failed(where, error)) from None
        except exc.SQLAlchemyError as error:
            raise ApplyLockError(_failed(where, error)) from None
        try:
            yield
        finally:
            # closing the connection ends the session and so the lock; unlocking first
            # lets the next apply go on without waiting for the server to notice the close
            with contextlib.suppress(exc.SQLAlchemyError):
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": APPLY_LOCK_KEY})


def _failed(where: str, error: exc.SQLAlchemyError) -> str:
    said = str(getattr(error, "orig", None) or error.__class__.__name__).splitlines()[0]
    return f"apply's lock in the hub's database {where} cannot be taken: {said}"
