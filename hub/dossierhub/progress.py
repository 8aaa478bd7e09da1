"""How apply shows its work: a progress bar per source on a terminal, plain lines otherwise."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from dossierhub.data.extracts import Progress as ProgressBase
from dossierhub.data.extracts import ViewResult


class PlainProgress(ProgressBase):
    def __init__(self, console: Console):
        self.console = console

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def view_started(self, dossier_id: str, view: str) -> Callable[[float], None]:
        self.console.print(f"{dossier_id}/{view}: building", highlight=False)
        return lambda fraction: None

    def view_finished(self, dossier_id: str, view: str, result: ViewResult) -> None:
        self.console.print(
            f"{dossier_id}/{view}: {result.rows_in:,} rows in, {result.rows_out:,} rows out "
            f"({result.seconds:.1f} s)",
            highlight=False,
        )


class BarProgress(ProgressBase):
    """rich progress bars, fed by DuckDB's own query progress."""

    def __init__(self, console: Console):
        self.console = console
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console,
        )

    def __enter__(self) -> BarProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def message(self, text: str) -> None:
        self.bars.console.print(text, highlight=False)

    def view_started(self, dossier_id: str, view: str) -> Callable[[float], None]:
        task = self.bars.add_task(f"{dossier_id}/{view}", total=1.0)
        return lambda fraction: self.bars.update(task, completed=fraction)

    def view_finished(self, dossier_id: str, view: str, result: ViewResult) -> None:
        self.bars.console.print(
            f"{dossier_id}/{view}: {result.rows_in:,} rows in, {result.rows_out:,} rows out",
            highlight=False,
        )
