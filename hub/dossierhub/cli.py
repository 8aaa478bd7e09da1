"""The `dossierhub` command line (docs/reference.md, "Command line"): exit 0 ok, 1 refused or
failed, 2 malformed command line; reasons on stderr, results on stdout."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dossierhub import __version__
from dossierhub.state.audit import AuditLog, GenesisRefused, Verification, set_channel
from dossierhub.state.auditstore import AuditStoreError
from dossierhub.state.home import Home
from dossierhub.state.init import InitResult, init_home
from dossierhub.state.problems import Problem, RefusedError

if TYPE_CHECKING:
    from dossierhub.apply import ApplyReport
    from dossierhub.data.extracts import Progress
    from dossierhub.state.settings import Settings

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Failed(click.ClickException):
    """Exit 1 with the message on stderr (already printed in full where it is long)."""

    exit_code = 1

    def show(self, file: object = None) -> None:
        if self.message:
            err.print(f"[bold red]error:[/] {escape(self.message)}")


class _Group(click.Group):
    """Every command: an audit log that cannot be opened (its table unreachable, or an invalid
    settings.yaml that asks for the table) is one sentence, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except AuditStoreError as exc:
            raise Failed(str(exc)) from None
        except RefusedError as exc:  # the commands that expect one report it themselves
            raise Failed(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    "home_dir",
    envvar="DOSSIERHUB_HOME",
    default="./var",
    show_default=True,
    type=click.Path(file_okay=False),
    help="The installation's home folder (also $DOSSIERHUB_HOME).",
)
@click.version_option(__version__, prog_name="dossierhub")
@click.pass_context
def main(ctx: click.Context, home_dir: str) -> None:
    """dossierhub: shared analysis workspaces for dossier teams."""
    set_channel("cli")
    ctx.obj = Home.from_option(home_dir)


@main.command()
@click.pass_obj
def init(home: Home) -> None:
    """Create HOME (folders, empty catalog, master key 0600) if missing; never overwrites."""
    result = init_home(home)
    _begin_log(home, result)
    AuditLog(home).append(
        "init", home=str(home.root), created=result.created_dirs, created_key=result.created_key
    )
    out.print(f"home: {home.root}")
    for folder in result.created_dirs:
        out.print(f"  created {folder}/")
    if result.created_key:
        out.print(f"  created {home.relative(home.master_key_file)} (mode 0600)")
        err.print(
            "[bold yellow]Back up secrets/master.key now[/] and keep it apart from the "
            "data: losing it changes every pseudonym, and anyone holding it can link them."
        )
    if not (result.created_dirs or result.created_key or result.created_catalog):
        out.print("  already initialised; nothing changed")


def _begin_log(home: Home, result: InitResult) -> None:
    """A new installation's log starts with its genesis. Only a new master key makes one:
    re-running init on a HOME whose log was deleted must not make the deletion pass."""
    log = AuditLog(home)
    if result.created_key and not log.read():
        log.write_genesis("init")


@main.command()
@click.pass_obj
def validate(home: Home) -> None:
    """Check catalog.yaml and dossiers/*.yaml against each other and the data."""
    from dossierhub.data.policy import load_installation

    inst = load_installation(home)
    _print_problems(inst.problems.items)
    if inst.problems.errors:
        AuditLog(home).append("validate.refused", problems=[str(p) for p in inst.problems.errors])
        raise Failed(f"{len(inst.problems.errors)} error(s); nothing was changed.")
    expired = [d for d in inst.dossiers.values() if d.is_expired()]
    out.print(
        f"valid: {len(inst.catalog.sources) if inst.catalog else 0} source(s), "
        f"{len(inst.dossiers)} dossier(s)"
        + (f" ({len(expired)} expired)" if expired else "")
        + (f", {len(inst.problems.warnings)} warning(s)" if inst.problems.warnings else "")
    )


@main.command(name="apply")
@click.argument("ids", nargs=-1)
@click.option("--force", is_flag=True, help="Rebuild every view even when nothing changed.")
@click.pass_obj
def apply_command(home: Home, ids: tuple[str, ...], force: bool) -> None:
    """Provision or update dossiers (all, or the IDS given): extracts and catalog.duckdb."""
    run_apply(home, list(ids), force=force)


def run_apply(home: Home, ids: list[str], *, force: bool = False) -> ApplyReport:
    from dossierhub.apply import apply
    from dossierhub.data.sources import SourceUnavailable
    from dossierhub.state.applylock import ApplyLockError
    from dossierhub.state.masterkey import MasterKeyError

    try:
        with _progress() as progress:
            report = apply(home, ids, progress, force=force)
    except RefusedError as exc:
        _print_problems(exc.problems)
        raise Failed(f"{len(exc.problems)} error(s); nothing was applied.") from None
    except (MasterKeyError, SourceUnavailable, ApplyLockError) as exc:
        AuditLog(home).append("apply.failed", dossiers=ids or "all", error=str(exc))
        raise Failed(f"{exc}; the previous extracts are unchanged.") from None
    _print_problems(report.warnings)
    _print_summary(report)
    for result in report.failed:
        err.print(f"[bold red]error:[/] {result.dossier_id}: apply failed: {result.note}")
    if report.hub_error:
        # the extracts are built and recorded; the hub keeps its roles and members until
        # the next apply reaches it
        err.print(f"[bold red]error:[/] the hub was not told: {escape(report.hub_error)}")
    if report.failed or report.hub_error:
        raise Failed("")
    return report


@contextlib.contextmanager
def _progress() -> Iterator[Progress]:
    from dossierhub.progress import BarProgress, PlainProgress

    if err.is_terminal:
        with BarProgress(err) as bars:
            yield bars
    else:
        yield PlainProgress(err)


def _print_summary(report: ApplyReport) -> None:
    table = Table(title="dossierhub apply", title_justify="left")
    for column in ("dossier", "view", "status", "rows in", "rows out", "pseudonymised / note"):
        table.add_column(column, justify="right" if column.startswith("rows") else "left")
    for result in report.results:
        if not result.views:
            table.add_row(result.dossier_id, "-", result.status, "", "", result.note)
        for view in result.views:
            table.add_row(
                result.dossier_id,
                view.view,
                view.status,
                f"{view.rows_in:,}",
                f"{view.rows_out:,}",
                ", ".join(view.pseudonymized) or "-",
            )
    out.print(table)
    for result in report.results:
        if result.status == "up to date":
            out.print(f"{result.dossier_id}: up to date ({result.note})")


def _print_problems(problems: list[Problem]) -> None:
    for problem in problems:
        label = "[bold red]error:[/]" if problem.severity == "error" else "[yellow]warning:[/]"
        # the text quotes the input: a key such as '[/x]' is shown, not taken for markup
        err.print(f"{label} {escape(str(problem))}")


@main.command(name="serve")
@click.option("--ip", default=None, help="Address the hub listens on (default 127.0.0.1).")
@click.option(
    "--port",
    default=None,
    type=click.IntRange(1, 65533),
    help="Public port (default 8000); the proxy API and hub use the next two.",
)
@click.pass_obj
def serve_command(home: Home, ip: str | None, port: int | None) -> None:
    """Run JupyterHub for HOME: proxy, hub and one workspace per dossier."""
    run_serve(home, ip, port)


def _serve_settings(home: Home, ip: str | None, port: int | None) -> Settings:
    """settings.yaml with serve's --ip and --port over it: what serve really listens on."""
    from dossierhub.state.settings import load_settings

    try:
        settings = load_settings(home)
    except RefusedError as exc:
        _print_problems(exc.problems)
        raise Failed("settings.yaml is not valid; nothing was started.") from None
    hub = settings.hub.model_copy(
        update={k: v for k, v in (("ip", ip), ("port", port)) if v is not None}
    )
    return settings.model_copy(update={"hub": hub})


def run_serve(home: Home, ip: str | None, port: int | None) -> None:
    from dossierhub.workspaces.serve import ServeError, serve

    settings = _serve_settings(home, ip, port)
    try:
        code = serve(home, settings, say=lambda text: err.print(text, highlight=False))
    except ServeError as exc:
        raise Failed(str(exc)) from None
    if code:
        raise Failed("")


@main.command()
@click.argument("user")
@click.option(
    "--note",
    default="dossierhub token",
    show_default=True,
    help="Note stored with the token in the hub.",
)
@click.pass_obj
def token(home: Home, user: str, note: str) -> None:
    """Print a new API token for USER (the hub must be running)."""
    from dossierhub.state.decisions import dossiers_of
    from dossierhub.workspaces.hubapi import HubAPI, HubUnavailable

    try:
        api = HubAPI.for_home(home)
        try:
            if api.user(user) is None:
                raise Failed(
                    f"the hub has no user {user!r}: name a person of a manifest or a "
                    "workspace account dossier-<id>"
                )
            value = api.new_token(user, note)
        finally:
            api.close()
    except HubUnavailable as exc:
        raise Failed(str(exc)) from None
    # in the trail of every dossier the token reaches: the workspace's, or the person's
    AuditLog(home).append("hub.token", user=user, note=note, dossiers=dossiers_of(home, user))
    out.print(value)


@main.command()
@click.argument("user")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input instead of prompting.",
)
@click.pass_obj
def passwd(home: Home, user: str, password_stdin: bool) -> None:
    """Set the password of a local account (embedded login); stored as a scrypt hash."""
    from dossierhub.state.directory import WORKSPACE_PREFIX, read_directory
    from dossierhub.workspaces.hub_auth import set_password

    name = user.strip().lower()
    if name.startswith(WORKSPACE_PREFIX):
        raise Failed(f"{name} is a workspace account; workspace accounts never log in")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise Failed("the password is too short: use at least 8 characters")
    home.hub_dir.mkdir(parents=True, exist_ok=True)
    set_password(home.passwords_file, name, password)
    AuditLog(home).append("passwd", user=name)
    known = any(e.role_of(name) for e in read_directory(home))
    out.print(
        f"password set for {name}" + ("" if known else " (not yet a member of any applied dossier)")
    )


@main.group()
def report() -> None:
    """Parameterised report runs: run, list, show, release."""


@report.command(name="run")
@click.argument("dossier_id", metavar="ID")
@click.argument("template")
@click.option("--user", "user", required=True, help="The person running it (lead or analyst).")
@click.option(
    "-p",
    "--parameter",
    "parameters",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="A template parameter; repeat for more.",
)
@click.pass_obj
def report_run(
    home: Home, dossier_id: str, template: str, user: str, parameters: tuple[tuple[str, str], ...]
) -> None:
    """Run TEMPLATE for dossier ID; prints the run id and its final status."""
    from dossierhub.reports.runs import run_report
    from dossierhub.state.problems import ReportRefused

    raw: dict[str, str] = {}
    for name, value in parameters:
        if name in raw:
            raise Failed(f"parameter '{name}' is given twice")
        raw[name] = value
    try:  # decided and audited (report.run or report.run.refused) in run_report
        outcome = run_report(home, dossier_id, template, user.lower(), raw)
    except ReportRefused as exc:
        raise Failed(f"{exc}; nothing was run.") from None
    out.print(f"{outcome.run_id} {outcome.status}")
    if not outcome.succeeded:
        raise Failed(
            f"run {outcome.run_id} failed: {outcome.error} (partial notebook kept "
            f"in {home.relative(outcome.folder)})"
        )


@report.command(name="execute-job")
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
def report_execute_job(folder: Path) -> None:
    """Inside a report run's Kubernetes Job: execute FOLDER's template.ipynb (parameterised
    by the service) into output.ipynb (reports/jobrunner.py); exit 1 when a cell failed."""
    from dossierhub.reports.jobrunner import execute_job

    sys.exit(execute_job(folder))


@report.command(name="list")
@click.argument("dossier_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def report_list(home: Home, dossier_id: str, as_json: bool) -> None:
    """The runs of dossier ID with status, who and when."""
    import json

    from dossierhub.reports.listing import list_runs

    runs = list_runs(home, dossier_id)
    if as_json:
        out.print(json.dumps([r.as_json() for r in runs], default=str), markup=False)
        return
    table = Table(title=f"reports of {dossier_id}", title_justify="left")
    for column in ("run", "template", "status", "checks", "released", "who", "started"):
        table.add_column(column)
    for run in runs:
        record = run.record
        table.add_row(
            record.run_id,
            record.template,
            record.status,
            "passed" if record.checks_passed else "failed" if record.succeeded else "-",
            run.release.words() or "-",
            record.user,
            str(record.started or record.queued),
        )
    out.print(table)


@report.command(name="show")
@click.argument("dossier_id", metavar="ID")
@click.argument("run_id", metavar="RUN")
@click.pass_obj
def report_show(home: Home, dossier_id: str, run_id: str) -> None:
    """One run: provenance, output checks and where its files are."""
    import json

    from dossierhub.reports.listing import show_run
    from dossierhub.state.problems import ReportRefused

    try:
        run = show_run(home, dossier_id, run_id)
    except ReportRefused as exc:
        raise Failed(str(exc)) from None
    out.print(json.dumps(run.as_json(), indent=2, default=str), markup=False)


@report.command(name="release")
@click.argument("dossier_id", metavar="ID")
@click.argument("run_id", metavar="RUN")
@click.option("--user", "user", required=True, help="The releasing lead (not the run's author).")
@click.option(
    "--justification",
    default=None,
    help="Why a run whose output checks failed may still leave (recorded).",
)
@click.option(
    "--include",
    "include",
    nargs=2,
    multiple=True,
    metavar="OUTPUT WHY",
    help="Show viewers an unchecked output (its id in `report show`, e.g. c5.o0), with why "
    "(recorded). Repeatable. Every other unchecked output stays withheld.",
)
@click.pass_obj
def report_release(
    home: Home,
    dossier_id: str,
    run_id: str,
    user: str,
    justification: str | None,
    include: tuple[tuple[str, str], ...],
) -> None:
    """Release a run to the dossier's viewers (four eyes)."""
    from dossierhub.reports.release import release_run
    from dossierhub.state.decisions import decide, release_facts
    from dossierhub.state.problems import ReportRefused

    name = user.lower()
    try:
        record = decide(
            home,
            "report.release",
            name,
            dossier_id,
            lambda: release_run(
                home, dossier_id, run_id, name, justification, dict(include)
            ).as_json(),
            release_facts,
            run=run_id,
        )
    except ReportRefused as exc:
        raise Failed(f"{exc}.") from None
    out.print(f"{run_id} released by {record['by']}")


@main.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command()
@click.option(
    "--syslog",
    "syslog_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A syslog file (or a SIEM's export) whose witnessed heads the log must hold.",
)
@click.pass_obj
def verify(home: Home, syslog_file: Path | None) -> None:
    """Check the chain, head, genesis, release heads (and a syslog file); exit 1 naming the
    first bad record and which of them disagrees."""
    log = AuditLog(home)
    _print_verification(log, log.verify(syslog_file))


def _check_execution_index(log: AuditLog) -> None:
    """The executions index the pages read against the log it is derived from (after the log
    verified): one changed outside dossierhub is rebuilt, and verify fails saying so."""
    from dossierhub.state.auditindex import ExecutionIndex

    index = ExecutionIndex.for_log(log)
    problem = index.check()
    if problem is not None:
        index.rebuild()
        raise Failed(f"{problem}; it was rebuilt from the log, which verified")
    out.print("  executions index: in step with the log")


def _print_verification(log: AuditLog, result: Verification) -> None:
    """`audit verify`'s output, the same for the file and the table."""
    if not result.ok:
        if result.first_bad is None:
            raise Failed(result.message)
        raise Failed(f"audit log broken at record {result.first_bad}: {result.message}")
    out.print(f"audit log ok: {result.message}")
    for line in [*result.notes, *log.witness_report()]:
        out.print(f"  {escape(line)}")
    _check_execution_index(log)


@audit.command()
@click.pass_obj
def migrate(home: Home) -> None:
    """Move the file log (audit/audit.jsonl) into the table in the hub's PostgreSQL database
    (hub.db_url) and verify it there; then set audit.store: postgresql. Safe to run again."""
    from dossierhub.state.auditmigrate import MigrationRefused, migrate_to_table

    try:
        done = migrate_to_table(home)
    except MigrationRefused as exc:
        raise Failed(str(exc)) from None
    source = home.relative(home.audit_log_file)
    if done.moved:
        out.print(f"moved {done.moved} records from {source} to {done.table.describe()}")
    else:
        out.print(f"{done.table.describe()} already holds every record of {source}: none moved")
    _print_verification(AuditLog(home, store=done.table), done.verification)
    if AuditLog(home).store.kind != "postgresql":
        out.print(
            f"next: set audit.store: postgresql in settings.yaml; {source} stays as it was, "
            "and nothing appends to it from then on"
        )


@audit.command()
@click.option(
    "--out",
    "out_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the keys (a new file, mode 0600; never overwritten).",
)
@click.pass_obj
def key(home: Home, out_file: Path) -> None:
    """Write the audit keys, derived from the master key, for processes that append without
    it (settings.yaml: audit.key_file; on Kubernetes a Secret of the hub and the service)."""
    from dossierhub.state.audit import write_key_file
    from dossierhub.state.masterkey import MasterKeyError

    try:
        write_key_file(home, out_file)
    except MasterKeyError as exc:
        raise Failed(f"{exc} Nothing was written.") from None
    except FileExistsError:
        raise Failed(f"{out_file} exists; it is never overwritten. Nothing was written.") from None
    except OSError as exc:
        raise Failed(
            f"{out_file} cannot be written ({exc.strerror}). Nothing was written."
        ) from None
    out.print(
        f"audit keys written to {out_file} (0600): set audit.key_file to its path where it is "
        "mounted; it gives no pseudonym key and not the master key"
    )


@audit.command()
@click.pass_obj
def genesis(home: Home) -> None:
    """Write the genesis record once, for a log begun before dossierhub wrote one at init."""
    log = AuditLog(home)
    if (found := log.genesis()) is not None:
        raise Failed(
            f"the audit log already has its genesis (record {found.get('seq')}, written "
            f"{found.get('time')}); nothing was changed"
        )
    result = log.verify()
    if result.witness != "genesis":
        raise Failed(
            f"audit log broken at record {result.first_bad}: {result.message}; no genesis is "
            "written over a broken log"
        )
    try:
        record = log.write_genesis("explicit")
    except GenesisRefused as exc:
        raise Failed(f"{exc}; nothing was changed") from None
    details = record["details"]
    out.print(f"genesis written: record {record['seq']}, installation {details['installation']}")
    if details["reason"] == "adopted":
        err.print(
            f"[yellow]warning:[/] it vouches for the {details['records_before']} records before "
            f"it, written from {details['first_time']} to {details['last_time']}: if this HOME "
            "was in use before the first, its log was deleted and begun again; investigate "
            "instead (docs/audit.md)"
        )
    else:
        err.print(
            "[yellow]warning:[/] the log was empty: if this HOME was in use before, its log was "
            "deleted; releases and syslog still hold the heads it had (docs/audit.md)"
        )


@audit.command(name="export")
@click.option("--person", "name", required=True, help="Whose executions (their hub name).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="The file's format.",
)
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE (new, mode 0600; never overwritten) instead of stdout.",
)
@click.pass_obj
def audit_export(home: Home, name: str, fmt: str, out_file: Path | None) -> None:
    """Exactly one person's code executions and kernel calls in every dossier's workspace,
    oldest first (an access request); recorded as executions.export."""
    from dossierhub.portal import activity_export, export_facts
    from dossierhub.state.audit import current_actor
    from dossierhub.state.decisions import decide
    from dossierhub.state.problems import ReportRefused

    target = _new_file(out_file) if out_file is not None else None  # before anything leaves
    try:
        export = decide(
            home,
            "executions.export",
            current_actor(),
            None,
            lambda: activity_export(home, name, fmt),
            export_facts,
            person=name,
            format=fmt,
        )
    except ReportRefused as exc:
        if out_file is not None:
            out_file.unlink(missing_ok=True)
        raise Failed(f"{exc}. Nothing was written.") from None
    if target is None or out_file is None:
        sys.stdout.buffer.write(export.data)
        sys.stdout.buffer.flush()
        return
    _write_whole(target, out_file, export.data)
    err.print(
        f"{export.count} execution(s) of {escape(name)} in "
        f"{len(export.dossiers)} dossier(s) written to {escape(str(out_file))} (0600)"
    )


def _new_file(path: Path) -> int:
    """A new file of the owner alone (it will hold a person's activity); never an existing
    one. Made before the export is decided, so a refused file leaves no export record."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise Failed(f"{path} exists; it is never overwritten. Nothing was written.") from None
    except OSError as exc:
        raise Failed(f"{path} cannot be written ({exc.strerror}). Nothing was written.") from None


def _write_whole(fd: int, path: Path, data: bytes) -> None:
    """All of it or no file: a disk that fills up midway leaves nothing half-done."""
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise Failed(
            f"{path} could not be written whole ({exc.strerror}); it was removed."
        ) from None


@main.group()
def k8s() -> None:
    """Kubernetes: values for the Zero to JupyterHub chart (docs/operating-on-kubernetes.md)."""


@k8s.command(name="values")
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the values to FILE (default: stdout).",
)
@click.pass_obj
def k8s_values(home: Home, out_file: Path | None) -> None:
    """Print z2jh's values from settings.yaml: Secrets by name only, never a secret's value."""
    from dossierhub.state.settings import load_settings
    from dossierhub.workspaces.k8svalues import ValuesError, dump_values, z2jh_values

    try:
        values = z2jh_values(load_settings(home))
    except RefusedError as exc:
        _print_problems(exc.problems)
        raise Failed("settings.yaml is not valid; no values were written.") from None
    except ValuesError as error:
        raise Failed(str(error)) from None
    text = dump_values(values)
    if out_file is None:
        click.echo(text, nl=False)
    else:
        out_file.write_text(text, encoding="utf-8")
        out.print(f"z2jh values written to {escape(str(out_file))}")


@main.command()
@click.option(
    "--size",
    default=1_000_000,
    show_default=True,
    type=click.IntRange(min=100),
    help="Number of synthetic residents.",
)
@click.option("--seed", default=2026, show_default=True, type=int, help="Random seed.")
@click.option("--no-serve", is_flag=True, help="Stop after apply instead of running the hub.")
@click.option(
    "--no-examples", is_flag=True, help="Make no example runs (a released one, one waiting...)."
)
@click.option("--ip", default=None, help="As for serve.")
@click.option("--port", default=None, type=click.IntRange(1, 65533), help="As for serve.")
@click.pass_obj
def demo(
    home: Home,
    size: int,
    seed: int,
    no_serve: bool,
    no_examples: bool,
    ip: str | None,
    port: int | None,
) -> None:
    """Create HOME with seeded synthetic city data and three dossiers, apply, make an example
    run in each state, serve the hub."""
    from dossierhub.demo import (
        SERVICE,
        accounts,
        demo_password,
        demo_url,
        make_examples,
        write_demo,
    )

    _begin_log(home, init_home(home))
    written = write_demo(home, size=size, seed=seed, log=lambda text: err.print(text))
    AuditLog(home).append("demo", size=size, seed=seed, files=written)
    report = run_apply(home, [])
    settings = _serve_settings(home, ip, port)  # the URL printed is the one served
    password = demo_password(home)
    examples = [] if no_examples else make_examples(home, lambda text: err.print(text))
    _print_demo_guide(home, report)
    url = demo_url(settings)
    out.print(f"\nOpen {url} and log in (password for every demo account: {password}):")
    for line in accounts(home, settings):
        out.print(f"  {escape(line)}")
    if examples:
        out.print("Example runs:")
        for line in examples:
            out.print(f"  {url}{SERVICE}dossiers/{escape(line)}")
    if no_serve:
        out.print(
            "Start the hub with: dossierhub serve; the password is also in hub/demo-password."
        )
        return
    out.print("Stop with Ctrl-C; the password is also in hub/demo-password.")
    run_serve(home, ip, port)


def _print_demo_guide(home: Home, report: ApplyReport) -> None:
    out.print(f"\nDemo home: {home.root}")
    for result in report.results:
        target = home.extract_catalog(result.dossier_id)
        if target.exists():
            out.print(f"  {result.dossier_id}: {home.relative(target)} ({len(result.views)} views)")
        else:
            out.print(f"  {result.dossier_id}: {result.note or result.status}")


def run() -> None:
    """Console-script entry point."""
    main(prog_name="dossierhub")


if __name__ == "__main__":  # pragma: no cover
    run()
