"""A small progress bar over env steps (rich), silent when disabled."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress


class Progress:
    def __init__(self, total: int, label: str, enabled: bool = True):
        self.enabled = enabled
        self.total = total
        self.label = label
        self._bar = None

    def __enter__(self):
        if self.enabled:
            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("env steps  eval return {task.fields[ret]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total, ret="-")
        return self

    def update(self, t_env: int, eval_return: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=min(t_env, self.total), ret=f"{eval_return:.2f}")

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False
