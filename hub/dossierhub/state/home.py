"""HOME: all state of one installation, and the one place its file names are spelled.

Every file and folder under HOME is named here, once; the module that owns it (reads and writes
it through one typed model) is given in each docstring and in docs/reference.md, which a test
keeps equal to this class. Nothing else joins a file name onto HOME.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from dossier_kernel.provenance import CATALOG_FILE, PROVENANCE_FILE
from dossier_kernel.published import PUBLISHED_DIR

DEFAULT_HOME = "./var"

LogKind = Literal["workspace", "reports"]


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def from_option(cls, value: str | os.PathLike[str] | None) -> Home:
        """--home, else $DOSSIERHUB_HOME, else ./var (the embedded default)."""
        chosen = value or os.environ.get("DOSSIERHUB_HOME") or DEFAULT_HOME
        return cls(Path(chosen).expanduser().absolute())

    @property
    def catalog_file(self) -> Path:
        """The data sources, described by their stewards (owner: data/policy.py, through
        state/models.py Catalog)."""
        return self.root / "catalog.yaml"

    @property
    def dossiers_dir(self) -> Path:
        """One manifest per dossier, written by the admin (owner: data/policy.py)."""
        return self.root / "dossiers"

    def manifest_file(self, dossier_id: str) -> Path:
        """dossiers/<id>.yaml (owner: state/models.py read_dossier; checked by data/policy.py)."""
        return self.dossiers_dir / f"{dossier_id}.yaml"

    @property
    def master_key_file(self) -> Path:
        """The one secret every pseudonym key derives from (owner: state/masterkey.py)."""
        return self.root / "secrets" / "master.key"

    @property
    def extracts_dir(self) -> Path:
        """One folder per dossier, what its workspace may read (owner: data/extracts.py)."""
        return self.root / "extracts"

    def extract_dir(self, dossier_id: str) -> Path:
        """A dossier's extracts as atomic generations (owner: data/extracts.py, built with
        data/generations.py); its file names are the contract's, dossier_kernel.provenance."""
        return self.extracts_dir / dossier_id

    def extract_catalog(self, dossier_id: str) -> Path:
        """The dossier's catalog.duckdb through its stable link: what its workspace and report
        kernels open as DOSSIER_CATALOG (written by data/extracts.py)."""
        return self.extract_dir(dossier_id) / CATALOG_FILE

    def extract_provenance(self, dossier_id: str) -> Path:
        """The current generation's provenance.json through its stable link (written by
        data/extracts.py; typed as dossier_kernel.provenance.ExtractProvenance)."""
        return self.extract_dir(dossier_id) / PROVENANCE_FILE

    @property
    def workspaces_dir(self) -> Path:
        """One shared folder per dossier (owner: isolation/unixusers.py)."""
        return self.root / "workspaces"

    def workspace_dir(self, dossier_id: str) -> Path:
        """The dossier's shared folder, its workspace identity's to write (owner:
        isolation/unixusers.py, which makes it; workspaces/chores.py clears it as that identity)."""
        return self.workspaces_dir / dossier_id

    @property
    def templates_dir(self) -> Path:
        """The installation's own report templates, <name>.ipynb (owner: state/templates.py)."""
        return self.root / "templates"

    @property
    def reports_dir(self) -> Path:
        """One folder per dossier, one per run in it (owner: state/init.py)."""
        return self.root / "reports"

    def runs_dir(self, dossier_id: str) -> Path:
        """A dossier's report runs, one folder each (owner: reports/collect.py make_run_folder)."""
        return self.reports_dir / dossier_id

    def run_folder(self, dossier_id: str, run_id: str) -> RunFolder:
        """One report run's folder and the names of its files (RunFolder)."""
        return RunFolder(self.runs_dir(dossier_id) / run_id)

    def release_files(self) -> list[Path]:
        """Every released run's release.json, of every dossier (owner: reports/records.py;
        state/audit.py verifies the audit head each carries)."""
        return sorted(self.reports_dir.glob(f"*/*/{RunFolder.RELEASE_NAME}"))

    @property
    def scratch_dir(self) -> Path:
        """Report runs in progress: one folder per run, owned by the dossier's report identity
        (owner: state/init.py)."""
        return self.root / "scratch"

    def scratch_parent(self, dossier_id: str) -> Path:
        """scratch/<id>/: the dossier's runs in progress (owner: isolation/unixusers.py)."""
        return self.scratch_dir / dossier_id

    @property
    def logs_dir(self) -> Path:
        """What workspaces and report kernels print, one folder per dossier (root only) (owner:
        state/logs.py)."""
        return self.root / "logs"

    def dossier_log_file(self, dossier_id: str, kind: LogKind) -> Path:
        """logs/<id>/workspace.log or reports.log: what the workspace's or the report kernels'
        processes print (owner: state/logs.py open_log, which rotates it to <kind>.log.1)."""
        return self.dossier_logs_dir(dossier_id) / f"{kind}.log"

    def dossier_logs_dir(self, dossier_id: str) -> Path:
        """logs/<id>/: workspace.log and reports.log, rotated (owner: state/logs.py)."""
        return self.logs_dir / dossier_id

    @property
    def audit_dir(self) -> Path:
        """The file audit log, its head and its witness state (root only) (owner:
        state/auditstore.py)."""
        return self.root / "audit"

    @property
    def hub_dir(self) -> Path:
        """The hub's private folder (root only): its database, tokens, and serve's state (owner:
        workspaces/serve.py)."""
        return self.root / "hub"

    @property
    def settings_file(self) -> Path:
        """settings.yaml, written by the admin (owner: state/settings.py)."""
        return self.root / "settings.yaml"

    @property
    def serve_state_file(self) -> Path:
        """Where the running hub and service listen (owner: workspaces/servestate.py)."""
        return self.hub_dir / "serve.json"

    @property
    def directory_file(self) -> Path:
        """Who is in which dossier, for the hub (owner: state/directory.py)."""
        return self.hub_dir / "directory.json"

    @property
    def passwords_file(self) -> Path:
        """Salted password hashes of the local login (owner: workspaces/hub_auth.py)."""
        return self.hub_dir / "passwords.json"

    @property
    def proxy_token_file(self) -> Path:
        """The hub's key to the proxy's routes (owner: workspaces/tokens.py)."""
        return self.hub_dir / "proxy.token"

    @property
    def service_token_file(self) -> Path:
        """The dossierhub service's hub API token (owner: workspaces/tokens.py)."""
        return self.hub_dir / "service.token"

    @property
    def effective_settings_file(self) -> Path:
        """The settings serve started with, for the hub process (owner: workspaces/serve.py)."""
        return self.hub_dir / "settings.effective.json"

    @property
    def hub_pid_file(self) -> Path:
        """JupyterHub's own pid file (owner: JupyterHub; named in workspaces/hubconfig.py)."""
        return self.hub_dir / "jupyterhub.pid"

    @property
    def hub_db_file(self) -> Path:
        """JupyterHub's database when it is SQLite (owner: JupyterHub)."""
        return self.hub_dir / "jupyterhub.sqlite"

    @property
    def cookie_secret_file(self) -> Path:
        """JupyterHub's cookie secret (owner: JupyterHub)."""
        return self.hub_dir / "cookie_secret"

    @property
    def hub_config_file(self) -> Path:
        """The jupyterhub_config.py serve writes at every start (owner: workspaces/serve.py)."""
        return self.hub_dir / "jupyterhub_config.py"

    @property
    def demo_password_file(self) -> Path:
        """The demo's one password for its people, demo HOMEs only (owner: demo.py)."""
        return self.hub_dir / "demo-password"

    @property
    def raw_dir(self) -> Path:
        """raw/: source data kept inside HOME, as the demo does (root only; owner: demo.py for
        the demo's synthetic data). An installation's sources may live anywhere catalog.yaml
        says."""
        return self.root / "raw"

    @property
    def demo_marker_file(self) -> Path:
        """raw/.demo.json: the size and seed of the demo's synthetic data (owner: demo.py)."""
        return self.raw_dir / ".demo.json"

    @property
    def audit_log_file(self) -> Path:
        """The hash-chained audit log, one JSON record per line (owner: state/auditstore.py)."""
        return self.audit_dir / "audit.jsonl"

    @property
    def audit_head_file(self) -> Path:
        """The authenticated head of the audit chain (owner: state/auditstore.py)."""
        return self.audit_dir / "head.json"

    @property
    def audit_witness_file(self) -> Path:
        """What the syslog witness last did, sent or failed (owner: state/auditstore.py
        FileStore, read by AuditLog.witness_state)."""
        return self.audit_dir / "witness.json"

    @property
    def audit_index_file(self) -> Path:
        """The executions of the file audit log as rows the pages read, kept in step with it
        (root only; SQLite; owner: state/auditindex.py)."""
        return self.audit_dir / "executions.sqlite"

    @property
    def execution_spool_root(self) -> Path:
        """Executions a workspace's bridge saw, waiting for the service to take them into the
        audit log, one folder per dossier (root only; owner: state/executions.py)."""
        return self.audit_dir / "spool"

    def execution_spool_dir(self, dossier_id: str) -> Path:
        """One dossier's waiting batches of executions (owner: state/executions.py)."""
        return self.execution_spool_root / dossier_id

    @property
    def locks_dir(self) -> Path:
        """Lock files only, never data: who may change what at a time (owner: state/init.py)."""
        return self.root / "extracts" / ".locks"

    def extract_lock_file(self, dossier_id: str) -> Path:
        """One apply at a time per dossier's extracts (owner: data/extracts.py)."""
        return self.locks_dir / f"{dossier_id}.lock"

    @property
    def identities_lock_file(self) -> Path:
        """One change to the Unix identities at a time (owner: isolation/unixusers.py)."""
        return self.locks_dir / "identities.lock"

    @property
    def pod_ids_file(self) -> Path:
        """Each dossier's numeric uid/gid for its workspace pods, handed out once and never
        again (owner: isolation/podids.py)."""
        return self.hub_dir / "pod-ids.json"

    @property
    def pod_ids_lock_file(self) -> Path:
        """One hand-out of a pod uid/gid at a time (owner: isolation/podids.py)."""
        return self.locks_dir / "pod-ids.lock"

    @property
    def audit_lock_file(self) -> Path:
        """One append to the file audit log at a time (owner: state/auditstore.py)."""
        return self.audit_dir / ".lock"

    def run_slot_file(self, dossier_id: str, slot: int) -> Path:
        """The lock a run holds while it uses slot `slot` of its dossier's queue (owner:
        reports/execute.py run_slot)."""
        return self.locks_dir / "runs" / dossier_id / f"slot-{slot}.lock"

    def review_lock_file(self, dossier_id: str, run_id: str) -> Path:
        """Held while a run's review.html is drawn, so it is drawn once (owner:
        reports/release.py review_page)."""
        return self.locks_dir / f"review-{dossier_id}-{run_id}.lock"

    def release_lock_file(self, dossier_id: str) -> Path:
        """Held while one of a dossier's runs is released (owner: reports/differencing.py)."""
        return self.locks_dir / "releases" / f"{dossier_id}.lock"

    @property
    def spill_dir(self) -> Path:
        """DuckDB's temporary files while building; raw-derived, so never inside extracts/<id>
        (owner: data/extracts.py)."""
        return self.root / "extracts" / ".spill"

    def relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def exists(self) -> bool:
        return self.catalog_file.exists() or self.master_key_file.exists()


@dataclass(frozen=True)
class RunFolder:
    """reports/<dossier>/<run>/: the files of one report run, each named once here. While the
    run is in progress the folder is root's alone; once finished it is locked down, read-only
    to the workspace's group (reports/collect.py)."""

    path: Path
    RELEASE_NAME: ClassVar[str] = "release.json"

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def record(self) -> Path:
        """The run record, provenance.json: who ran what on which extracts, its state
        (owner: reports/records.py RunRecord)."""
        return self.path / "provenance.json"

    @property
    def checks(self) -> Path:
        """The output checks' results, one entry per table or chart (owner:
        reports/records.py read_checks / write_checks)."""
        return self.path / "checks.json"

    @property
    def release(self) -> Path:
        """Who released the run and under which audit head (owner: reports/records.py
        Release); its presence is what makes a run released."""
        return self.path / self.RELEASE_NAME

    @property
    def notebook(self) -> Path:
        """The executed notebook, report.ipynb (papermill writes it: reports/execute.py)."""
        return self.path / "report.ipynb"

    @property
    def report_html(self) -> Path:
        """What viewers read: the checked outputs only (owner: reports/airlock.py)."""
        return self.path / "report.html"

    @property
    def review_html(self) -> Path:
        """Every output, marked, for the team; drawn when first opened (owner:
        reports/airlock.py render_review, reports/release.py review_page)."""
        return self.path / "review.html"

    @property
    def outputs_index(self) -> Path:
        """The notebook's outputs with ids and hashes, outputs.json (owner: reports/airlock.py)."""
        return self.path / "outputs.json"

    @property
    def published(self) -> Path:
        """The tables and charts publish() wrote, copied from scratch (owner:
        reports/collect.py; the files' names: dossier_kernel.published)."""
        return self.path / PUBLISHED_DIR

    def unhashed(self) -> tuple[Path, ...]:
        """The files a run's recorded hashes leave out: the records written after the hashes,
        and review.html, drawn later from the hashed files."""
        return (self.record, self.checks, self.release, self.review_html)
