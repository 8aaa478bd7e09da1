"""The `dossierhub` command line (DESIGN.md, "Command line"): exit 0 ok, 1 refused or failed,
2 malformed command line; reasons on stderr, results on stdout."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import click
from rich.console import Console
from rich.table import Table

from . import __version__
from .apply import ApplyReport, apply
from .audit import AuditLog
from .extracts import Progress
from .home import Home, init_home
from .policy import load_installation
from .problems import Problem, RefusedError
from .progress import BarProgress, PlainProgress
from .pseudonym import MasterKeyError
from .sources import SourceUnavailable

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Failed(click.ClickException):
    """Exit 1 with the message on stderr (already printed in full where it is long)."""

    exit_code = 1

    def show(self, file: object = None) -> None:
        if self.message:
            err.print(f"[bold red]error:[/] {self.message}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    ctx.obj = Home.from_option(home_dir)


@main.command()
@click.pass_obj
def init(home: Home) -> None:
    """Create HOME (folders, empty catalog, master key 0600) if missing; never overwrites."""
    result = init_home(home)
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


@main.command()
@click.pass_obj
def validate(home: Home) -> None:
    """Check catalog.yaml and dossiers/*.yaml against each other and the data."""
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
    try:
        with _progress() as progress:
            report = apply(home, ids, progress, force=force)
    except RefusedError as exc:
        _print_problems(exc.problems)
        raise Failed(f"{len(exc.problems)} error(s); nothing was applied.") from None
    except (MasterKeyError, SourceUnavailable) as exc:
        AuditLog(home).append("apply.failed", dossiers=ids or "all", error=str(exc))
        raise Failed(f"{exc}; the previous extracts are unchanged.") from None
    _print_problems(report.warnings)
    _print_summary(report)
    for result in report.failed:
        err.print(f"[bold red]error:[/] {result.dossier_id}: apply failed: {result.note}")
    if report.failed:
        raise Failed("")
    return report


@contextlib.contextmanager
def _progress() -> Iterator[Progress]:
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
        err.print(f"{label} {problem}", markup=True)


@main.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command()
@click.pass_obj
def verify(home: Home) -> None:
    """Check the hash chain; exit 1 naming the first bad record."""
    result = AuditLog(home).verify()
    if not result.ok:
        raise Failed(f"audit log broken at record {result.first_bad}: {result.message}")
    out.print(f"audit log ok: {result.message}")


@main.command()
@click.option(
    "--size",
    default=1_000_000,
    show_default=True,
    type=click.IntRange(min=100),
    help="Number of synthetic residents.",
)
@click.option("--seed", default=2026, show_default=True, type=int, help="Random seed.")
@click.pass_obj
def demo(home: Home, size: int, seed: int) -> None:
    """Create HOME with seeded synthetic city data and three dossiers, then apply them."""
    from .demo import write_demo

    init_home(home)
    written = write_demo(home, size=size, seed=seed, log=lambda text: err.print(text))
    AuditLog(home).append("demo", size=size, seed=seed, files=written)
    report = run_apply(home, [])
    _print_demo_guide(home, report)


def _print_demo_guide(home: Home, report: ApplyReport) -> None:
    out.print(f"\nDemo home: {home.root}")
    for result in report.results:
        target = home.extract_dir(result.dossier_id) / "catalog.duckdb"
        if target.exists():
            out.print(f"  {result.dossier_id}: {home.relative(target)} ({len(result.views)} views)")
        else:
            out.print(f"  {result.dossier_id}: {result.note or result.status}")
    out.print(
        "Query a dossier's views, for example:\n"
        f"  DOSSIER_CATALOG={home.extract_dir('armoede')}/catalog.duckdb "
        '.venv/bin/python -c "import dossier_kernel as d; print(d.sources())"'
    )


def run() -> None:
    """Console-script entry point."""
    main(prog_name="dossierhub")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
