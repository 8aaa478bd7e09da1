"""Build a dossier's extracts: minimised, filtered, pseudonymised parquet + catalog.duckdb.

HOME/extracts/<id>/ holds atomic generations (data/generations.py): each build is one
folder with <view>.parquet per approved view, catalog.duckdb and provenance.json (the typed
contract dossier_kernel.provenance, which every reader shares), made current with one rename;
readers open the stable links extracts/<id>/<name>. So readers always see one complete
generation, whatever moment an apply is killed at.
Views in catalog.duckdb name their parquet file relatively; the kernel resolves it against
extracts/<id> (DuckDB's file_search_path), so no raw path and no absolute path is stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb

from dossier_kernel.provenance import (
    CATALOG_FILE,
    FORMAT_VERSION,
    PROVENANCE_FILE,
    PROVENANCE_VERSION,
    ExtractProvenance,
    ProvenanceError,
    ViewProvenance,
    read_provenance,
    view_file,
)
from dossierhub import __version__
from dossierhub.data.generations import (
    build_generation,
    clean_leftovers,
    current,
    writer_lock,
)
from dossierhub.data.policy import ViewPlan
from dossierhub.data.pseudonym import bind_key, dossier_key, key_id, sql_pseudonym
from dossierhub.data.sources import SourceFiles
from dossierhub.state.home import Home
from dossierhub.state.models import Dossier

MAP_DISTINCT_RATIO = 0.5
"""Below this share of distinct values, hash each distinct value once and join (payments)."""

DEFAULT_MEMORY_LIMIT = os.environ.get("DOSSIERHUB_APPLY_MEMORY_LIMIT", "1GB")


@dataclass
class ViewResult:
    view: str
    source: str
    status: str  # built | reused
    rows_in: int
    rows_out: int
    pseudonymized: tuple[str, ...]
    seconds: float = 0.0


@dataclass
class DossierResult:
    dossier_id: str
    status: str  # built | up to date | removed | absent
    views: list[ViewResult] = field(default_factory=list)
    policy_hash: str = ""
    generation: str = ""
    note: str = ""


class Progress:
    """What apply reports while it works; cli.py has a terminal and a plain implementation."""

    def message(self, text: str) -> None:  # pragma: no cover - interface
        pass

    def view_started(self, dossier_id: str, view: str) -> Callable[[float], None]:
        return lambda fraction: None

    def view_finished(self, dossier_id: str, view: str, result: ViewResult) -> None:
        pass


# ---------------------------------------------------------------- hashes


def view_policy_hash(plan: ViewPlan, kid: str) -> str:
    """Everything that decides a view's content besides the source data itself."""
    policy = {
        "format": FORMAT_VERSION,
        "from": plan.source_name,
        "columns": plan.columns,
        "pseudonymize": plan.pseudonymize,
        "where": plan.where_sql,
        "kinds": {c: plan.source.kind_of(c) for c in plan.columns},
        "key": kid if plan.pseudonymize else None,
    }
    return hashlib.sha256(json.dumps(policy, sort_keys=True).encode()).hexdigest()


def quasi_identifiers(plan: ViewPlan) -> list[str]:
    """The view's columns of kind quasi-identifier: the output checks' k-anonymity keys."""
    return [c for c in plan.columns if plan.source.kind_of(c) == "quasi-identifier"]


def catalog_meta(plans: list[ViewPlan]) -> dict[str, dict[str, object]]:
    """What catalog.duckdb's comments say; changing a description rebuilds only the catalog."""
    meta: dict[str, dict[str, object]] = {}
    for plan in plans:
        spec = plan.source
        columns = {}
        for column in plan.columns:
            kind = spec.kind_of(column)
            label = "pseudonym (identifier)" if column in plan.pseudonymize else kind
            described = spec.columns.get(column)
            text = (
                f"{label}: {described.description}"
                if described and described.description
                else label
            )
            columns[column] = text
        title = spec.title + (f". {spec.description}" if spec.description else "")
        view_text = f"{title} [source {plan.source_name}, {spec.classification}"
        if plan.where_sql:
            view_text += f", rows where {plan.where_sql}"
        meta[plan.view] = {"comment": view_text + "]", "columns": columns}
    return meta


def _hash(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------- reading the current state


def current_provenance(folder: Path) -> ExtractProvenance | None:
    """The provenance of a dossier's current extracts (`folder`: extracts/<id>), or None when
    it has none yet; ProvenanceError, naming the file and the field, when it is malformed."""
    try:
        return read_provenance(current(folder))
    except (FileNotFoundError, NotADirectoryError):
        return None


def _lock(home: Home, dossier_id: str, progress: Progress) -> AbstractContextManager[None]:
    return writer_lock(
        home.extract_lock_file(dossier_id),
        lambda: progress.message(
            f"{dossier_id}: waiting for another apply of this dossier to finish"
        ),
    )


# ---------------------------------------------------------------- apply one dossier


@dataclass
class _Target:
    """What one apply wants extracts/<id> to be, and what is there now."""

    dossier: Dossier
    plans: list[ViewPlan]
    folder: Path
    key: bytes
    wanted: dict[str, tuple[str, str]]  # view -> (source fingerprint, view policy hash)
    meta: dict[str, dict]
    policy_hash: str
    previous: ExtractProvenance | None
    reusable: set[str]

    def up_to_date(self) -> bool:
        previous = self.previous
        return (
            previous is not None
            and self.reusable == set(self.wanted)
            and set(previous.views) == set(self.wanted)
            and previous.policy_hash == self.policy_hash
        )


def build_dossier(
    home: Home,
    dossier: Dossier,
    plans: list[ViewPlan],
    sources: dict[str, SourceFiles],
    master_key: bytes,
    progress: Progress,
    *,
    force: bool = False,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
) -> DossierResult:
    """Bring extracts/<id> in line with the manifest; atomic, serialized, incremental."""
    folder = home.extract_dir(dossier.id)
    with _lock(home, dossier.id, progress):
        clean_leftovers(folder)
        target = _target(dossier, plans, folder, sources, master_key, force, progress)
        if target.up_to_date():
            assert target.previous is not None
            views = [_view_result_from(target.previous, p, "unchanged") for p in plans]
            return DossierResult(
                dossier.id,
                "up to date",
                views,
                target.policy_hash,
                target.previous.generation,
                "sources and policy unchanged: nothing rebuilt",
            )
        generation, results = build_generation(
            folder,
            lambda tmp, generation: _build_generation(
                home, target, sources, tmp, generation, progress, memory_limit
            ),
        )  # a failed build leaves the previous generation current
        return DossierResult(dossier.id, "built", results, target.policy_hash, generation)


def _target(
    dossier: Dossier,
    plans: list[ViewPlan],
    folder: Path,
    sources: dict[str, SourceFiles],
    master_key: bytes,
    force: bool,
    progress: Progress,
) -> _Target:
    key = dossier_key(master_key, dossier.id)
    kid = key_id(key)
    wanted = {
        p.view: (sources[p.source_name].fingerprint(), view_policy_hash(p, kid)) for p in plans
    }
    meta = catalog_meta(plans)
    policy_hash = _hash(
        {
            "views": {v: h for v, (_, h) in wanted.items()},
            "meta": meta,
            "disclosure": dossier.disclosure.model_dump(),
            "provenance": PROVENANCE_VERSION,
        }
    )
    try:
        previous = current_provenance(folder)
    except ProvenanceError as exc:  # nothing of that build can be trusted: build anew
        progress.message(
            f"{dossier.id}: {exc.path} is malformed ({exc.where} {exc.problem}); "
            "rebuilding every view"
        )
        previous = None
    reusable = set() if force else _reusable(folder, previous, wanted)
    return _Target(dossier, plans, folder, key, wanted, meta, policy_hash, previous, reusable)


def _build_generation(
    home: Home,
    target: _Target,
    sources: dict[str, SourceFiles],
    tmp: Path,
    generation: str,
    progress: Progress,
    memory_limit: str,
) -> list[ViewResult]:
    """Fill `tmp` with a complete generation: parquet per view, catalog, provenance."""
    results: list[ViewResult] = []
    entries: dict[str, ViewProvenance] = {}
    con = _build_connection(home, target.key, memory_limit)
    try:
        for plan in target.plans:
            if plan.view in target.reusable and target.previous is not None:
                entry = target.previous.views[plan.view]
                os.link(current(target.folder) / entry.file, tmp / entry.file)
                result = _view_result_from(target.previous, plan, "reused")
            else:
                entry, result = _new_view_file(
                    con, plan, sources[plan.source_name], tmp, target, progress
                )
            entries[plan.view] = replace(
                entry,
                quasi_identifiers=tuple(quasi_identifiers(plan)),  # older builds lack it
                sha256=_file_sha256(tmp / entry.file),
                bytes=(tmp / entry.file).stat().st_size,
            )
            results.append(result)
    finally:
        con.close()
    _write_catalog(tmp, target.plans, target.meta)
    dossier = target.dossier
    provenance = ExtractProvenance(
        dossier=dossier.id,
        title=dossier.title,
        purpose=dossier.purpose,
        expires=dossier.expires.isoformat(),
        generation=generation,
        built_at=_now(),
        tool_version=__version__,
        format=FORMAT_VERSION,
        policy_hash=target.policy_hash,
        key_id=key_id(target.key),
        disclosure=dossier.disclosure.model_dump(),
        views=entries,
    )
    (tmp / PROVENANCE_FILE).write_text(provenance.to_json(), "utf-8")
    return results


def _new_view_file(
    con: duckdb.DuckDBPyConnection,
    plan: ViewPlan,
    source: SourceFiles,
    tmp: Path,
    target: _Target,
    progress: Progress,
) -> tuple[ViewProvenance, ViewResult]:
    """Build one view's parquet file; its provenance entry lacks the file's hash and size,
    which the caller adds (as for a reused file)."""
    report = progress.view_started(target.dossier.id, plan.view)
    started = time.perf_counter()
    file = view_file(plan.view)
    rows_in, rows_out = _build_view(con, plan, source, tmp / file, report)
    fingerprint, view_hash = target.wanted[plan.view]
    entry = ViewProvenance(
        source=plan.source_name,
        source_fingerprint=fingerprint,
        policy_hash=view_hash,
        rows_in=rows_in,
        rows_out=rows_out,
        columns=tuple(plan.columns),
        pseudonymized=tuple(plan.pseudonymize),
        where=plan.where_sql,
        file=file,
        built_at=_now(),
        sha256="",
        bytes=0,
    )
    result = ViewResult(
        plan.view,
        plan.source_name,
        "built",
        rows_in,
        rows_out,
        plan.pseudonymize,
        time.perf_counter() - started,
    )
    progress.view_finished(target.dossier.id, plan.view, result)
    return entry, result


def _reusable(
    folder: Path, previous: ExtractProvenance | None, wanted: dict[str, tuple[str, str]]
) -> set[str]:
    if previous is None or previous.format != FORMAT_VERSION:
        return set()
    keep = set()
    for view, (fingerprint, policy) in wanted.items():
        old = previous.views.get(view)
        if (
            old
            and old.source_fingerprint == fingerprint
            and old.policy_hash == policy
            and (current(folder) / old.file).is_file()
        ):
            keep.add(view)
    return keep


def _view_result_from(previous: ExtractProvenance, plan: ViewPlan, status: str) -> ViewResult:
    old = previous.views[plan.view]
    return ViewResult(
        plan.view, plan.source_name, status, old.rows_in, old.rows_out, plan.pseudonymize
    )


def _build_connection(home: Home, key: bytes, memory_limit: str) -> duckdb.DuckDBPyConnection:
    home.spill_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(home.spill_dir, 0o700)
    con = duckdb.connect(
        config={
            "memory_limit": memory_limit,
            "temp_directory": str(home.spill_dir),
            "preserve_insertion_order": False,
        }
    )
    bind_key(con, key)
    return con


def _build_view(
    con: duckdb.DuckDBPyConnection,
    plan: ViewPlan,
    source: SourceFiles,
    target: Path,
    report: Callable[[float], None],
) -> tuple[int, int]:
    """COPY the approved part of one source into `target`; returns (rows in, rows out)."""
    scan = source.scan_sql()
    where = f" WHERE {plan.where_sql}" if plan.where_sql else ""
    condition = plan.where_sql or "true"
    counts = ", ".join(
        [f"count(*) FILTER (WHERE {condition})", "count(*)"]
        + [f'approx_count_distinct("{c}") FILTER (WHERE {condition})' for c in plan.pseudonymize]
    )
    stats = con.execute(f"SELECT {counts} FROM {scan}").fetchone()
    assert stats is not None
    rows_out_estimate, rows_in = int(stats[0]), int(stats[1])
    distinct = dict(zip(plan.pseudonymize, stats[2:], strict=True))
    mapped = [
        c
        for c in plan.pseudonymize
        if rows_out_estimate and distinct[c] / rows_out_estimate < MAP_DISTINCT_RATIO
    ]
    select = []
    kept = ", ".join(_q(c) for c in plan.columns)
    ctes = [f"src AS NOT MATERIALIZED (SELECT {kept} FROM {scan}{where})"]
    joins = []
    for index, column in enumerate(plan.columns):
        if column in mapped:
            alias = f"m{index}"
            ctes.append(
                f"{alias} AS (SELECT v, {sql_pseudonym('v')} AS p "
                f"FROM (SELECT DISTINCT {_q(column)} AS v FROM src WHERE {_q(column)} IS NOT NULL))"
            )
            joins.append(f"LEFT JOIN {alias} ON src.{_q(column)} = {alias}.v")
            select.append(f"{alias}.p AS {_q(column)}")
        elif column in plan.pseudonymize:
            select.append(f"{sql_pseudonym('src.' + _q(column))} AS {_q(column)}")
        else:
            select.append(f"src.{_q(column)}")
    query = f"WITH {', '.join(ctes)} SELECT {', '.join(select)} FROM src {' '.join(joins)}"
    copy = (
        f"COPY ({query}) TO '{_sql_path(target)}' "
        "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)"
    )
    rows_out = _run_with_progress(con, copy, report)
    return rows_in, rows_out


def _run_with_progress(
    con: duckdb.DuckDBPyConnection, sql: str, report: Callable[[float], None]
) -> int:
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.2):
            try:
                value = con.query_progress()
            except duckdb.Error:
                return
            if value >= 0:
                report(min(value, 100.0) / 100.0)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        row = con.execute(sql).fetchone()
    finally:
        done.set()
        watcher.join()
    report(1.0)
    return int(row[0]) if row else 0


def _write_catalog(folder: Path, plans: list[ViewPlan], meta: dict[str, dict]) -> None:
    path = folder / CATALOG_FILE
    con = duckdb.connect(str(path))
    try:
        con.execute(f"SET file_search_path = '{_sql_path(folder)}'")
        for plan in plans:
            view = _q(plan.view)
            file = _literal(view_file(plan.view))
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet({file})")
            con.execute(f"COMMENT ON VIEW {view} IS {_literal(meta[plan.view]['comment'])}")
            for column, text in meta[plan.view]["columns"].items():
                con.execute(f"COMMENT ON COLUMN {view}.{_q(column)} IS {_literal(text)}")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def remove_extracts(home: Home, dossier_id: str, progress: Progress) -> bool:
    """Delete extracts/<id> whole (expired or deprovisioned); reports and audit stay."""
    folder = home.extract_dir(dossier_id)
    if not folder.exists() and not folder.is_symlink():
        return False
    with _lock(home, dossier_id, progress):
        if folder.is_symlink():
            folder.unlink()
        else:
            shutil.rmtree(folder)
        return True


def existing_extract_ids(home: Home) -> list[str]:
    if not home.extracts_dir.exists():
        return []
    return sorted(
        e.name for e in home.extracts_dir.iterdir() if e.is_dir() and not e.name.startswith(".")
    )


# ---------------------------------------------------------------- small helpers


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
