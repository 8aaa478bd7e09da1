"""Reading catalog sources: where their files are, what they hold, and whether they changed."""

from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass
from pathlib import Path

import duckdb

from dossierhub.state.home import Home
from dossierhub.state.models import SourceSpec


class SourceUnavailable(Exception):
    """A source's location is missing or unreadable; the message names the source, not a fix."""


@dataclass(frozen=True)
class SourceFiles:
    name: str
    spec: SourceSpec
    files: tuple[Path, ...]

    def scan_sql(self) -> str:
        """A DuckDB table expression over the source's files (raw paths: never stored anywhere)."""
        paths = ", ".join(_quote(str(p)) for p in self.files)
        fmt = self.spec.file_format
        if fmt == "csv":
            return f"read_csv([{paths}], header = true, union_by_name = true)"
        if fmt == "json":
            return f"read_json_auto([{paths}], union_by_name = true)"
        return f"read_parquet([{paths}], union_by_name = true)"

    def fingerprint(self) -> str:
        """Changes when any file is added, removed, rewritten or touched (like make and rsync)."""
        digest = hashlib.sha256()
        for path in self.files:
            stat = path.stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def locate(home: Home, name: str, spec: SourceSpec) -> SourceFiles:
    """Resolve a location (path or glob, relative to HOME or absolute) to readable files."""
    location = Path(spec.location).expanduser()
    if not location.is_absolute():
        location = home.root / location
    if glob.has_magic(str(location)):
        files = sorted(Path(p) for p in glob.glob(str(location), recursive=True))
        files = [f for f in files if f.is_file()]
        if not files:
            raise SourceUnavailable(
                f"source '{name}': no file matches its location {spec.location!r}"
            )
    else:
        if not location.exists():
            raise SourceUnavailable(
                f"source '{name}': its location {spec.location!r} does not exist"
            )
        if location.is_dir():
            raise SourceUnavailable(
                f"source '{name}': its location {spec.location!r} is a "
                "folder; use a glob such as folder/*.parquet"
            )
        files = [location]
    for path in files:
        try:
            with path.open("rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise SourceUnavailable(
                f"source '{name}': {path.name} cannot be read ({exc.strerror})"
            ) from None
    return SourceFiles(name, spec, tuple(files))


def read_schema(con: duckdb.DuckDBPyConnection, source: SourceFiles) -> dict[str, str]:
    """Column name -> DuckDB type, as DuckDB reads the files."""
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {source.scan_sql()}").fetchall()
    except duckdb.Error as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise SourceUnavailable(
            f"source '{source.name}' cannot be read as {source.spec.file_format} ({first_line})"
        ) from None
    return {row[0]: row[1] for row in rows}
