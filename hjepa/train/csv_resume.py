"""``metrics.csv`` that survives a kill and a resume with the rows of the uninterrupted run.

Lightning's ``CSVLogger`` falls short of that three ways: it keeps rows in memory until every
100th step (a kill loses them), a new process deletes the ``metrics.csv`` it finds, and when it
first writes it rewrites the file with only the columns the new process has logged so far.
Here:

* :class:`ResumableCSVLogger` keeps the existing file when the run resumes (and starts a
  fresh one otherwise) and carries its columns on;
* :class:`CSVCheckpointSync` writes the rows out whenever a checkpoint is saved and records
  in the checkpoint how many rows the file then held, with the row of the batch being
  checkpointed (logged only after the save); on resume the file is cut back to those rows and
  that row is added, so rows a killed run logged after its last checkpoint (which the resumed
  run logs again) are not there twice, and none is missing.
"""

from __future__ import annotations

import csv
import os
from typing import Any

import lightning as L
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.fabric.utilities.apply_func import convert_tensors_to_scalars
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

CHECKPOINT_KEY = "hjepa_csv_rows"


class _KeepingWriter(ExperimentWriter):
    """An ``ExperimentWriter`` that continues an existing ``metrics.csv`` instead of deleting it."""

    def __init__(self, log_dir: str, keep: bool) -> None:
        self._keep = keep
        super().__init__(log_dir)
        if keep and os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                header = next(csv.reader(f), [])
            self.metrics_keys = sorted(header)  # later writes keep these columns

    def _check_log_dir_exists(self) -> None:
        if not self._keep:
            super()._check_log_dir_exists()  # a new run: Lightning's warning and a fresh file

    def rows_on_disk(self) -> int:
        if not os.path.isfile(self.metrics_file_path):
            return 0
        with open(self.metrics_file_path, newline="") as f:
            return max(sum(1 for _ in csv.reader(f)) - 1, 0)

    def truncate(self, rows: int) -> None:
        """Keep the header and the first ``rows`` rows (written to a temporary file, then renamed)."""
        if not os.path.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="") as f:
            lines = list(csv.reader(f))
        if len(lines) - 1 <= rows:
            return
        tmp = self.metrics_file_path + ".tmp"
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(lines[: rows + 1])
        os.replace(tmp, self.metrics_file_path)


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` that continues its ``metrics.csv`` when ``resume`` is true (module docstring)."""

    def __init__(self, *args: Any, resume: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resume = resume

    @property
    @rank_zero_experiment
    def experiment(self) -> _KeepingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(self.log_dir, keep=self.resume)
        return self._experiment


def _pending_train_row(trainer: L.Trainer) -> dict[str, Any] | None:
    """The row the training loop will log for the batch that is ending (None if it logs none).

    A checkpoint is saved in ``on_train_batch_end``, before the loop logs that batch's metrics,
    so the row must travel in the checkpoint: a kill between the two would lose it, and the
    resumed run starts after that batch. This mirrors what Lightning's logger connector does
    next (its ``update_train_step_metrics``), through its private attributes.
    """
    connector = trainer._logger_connector
    if trainer.fit_loop._should_accumulate() or not (connector.should_update_logs or trainer.fast_dev_run):
        return None
    metrics = convert_tensors_to_scalars(connector.metrics["log"])
    if not metrics:
        return None
    metrics.setdefault("epoch", trainer.current_epoch)
    return {"metrics": metrics, "step": int(trainer.fit_loop.epoch_loop._batches_that_stepped)}


class CSVCheckpointSync(L.Callback):
    """Ties ``metrics.csv`` to the checkpoints (module docstring)."""

    def __init__(self, logger: ResumableCSVLogger) -> None:
        self.logger = logger
        self._batch_row_pending = False

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._batch_row_pending = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # Lightning runs ModelCheckpoint's batch-end hook after every other callback's, and logs
        # the batch's row after all of them: a checkpoint saved from here on precedes that row.
        self._batch_row_pending = True

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._batch_row_pending = False

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._batch_row_pending = False

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if not trainer.is_global_zero:
            return
        self.logger.save()
        state: dict[str, Any] = {"rows": self.logger.experiment.rows_on_disk(), "pending": None}
        if self._batch_row_pending:
            state["pending"] = _pending_train_row(trainer)
        checkpoint[CHECKPOINT_KEY] = state

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(CHECKPOINT_KEY)
        if state is None or not trainer.is_global_zero:
            return
        self.logger.experiment.truncate(int(state["rows"]))
        pending = state.get("pending")
        if pending is not None:
            self.logger.log_metrics(pending["metrics"], pending["step"])
            self.logger.save()
