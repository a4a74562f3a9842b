"""``hjepa pretrain``: LightningCLI over ``HJEPAModule`` and ``VideoDataModule``.

    hjepa pretrain                                   # tiny default, synthetic data, CPU, minutes
    hjepa pretrain --config configs/pretrain/synthetic_long.yaml --trainer.max_steps=2000
    hjepa pretrain --run_dir runs/a --ckpt_path last # resume a killed run
    hjepa pretrain --print_config                    # the resolved config, every key

A run killed at any point (``kill -9`` included) and resumed with ``--ckpt_path last`` ends with
the weights, optimizer state and logged metrics of the run that was never stopped: the
checkpoint holds the data loader's position and sampler state, the random streams and every
model buffer. Checkpoints are read with ``weights_only=True``: a file that would run code is
refused.

Unknown or misspelt keys are refused with their name (jsonargparse). The run folder gets
``config.yaml`` (resolved), ``provenance.json`` (git revision), ``checkpoints/`` (``last.ckpt``
and every ``--checkpoint_every`` steps, written atomically), ``csv/`` metrics, ``wandb/``
(offline unless ``--logger.online true`` or ``HJEPA_WANDB_ONLINE=1``) and ``summary.json``.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Optional

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from hjepa.errors import UserError
from hjepa.train.checkpoint_io import AtomicCheckpointIO
from hjepa.train.csv_resume import CSVCheckpointSync, ResumableCSVLogger
from hjepa.train.datamodule import VideoDataModule
from hjepa.train.module import HJEPAModule
from hjepa.train.provenance import provenance
from hjepa.train.summary import SummaryCallback

RUN_DIR_ENV = "HJEPA_RUN_DIR"  # shared with DDP worker processes, which re-run this command

TRAINER_DEFAULTS: dict[str, Any] = {
    "max_steps": 1000,
    "log_every_n_steps": 5,
    "gradient_clip_val": 1.0,
    "num_sanity_val_steps": 0,
    "limit_val_batches": 4,
    "val_check_interval": None,
    "check_val_every_n_epoch": 1,
    "enable_model_summary": False,
}


def wandb_logger(run_dir: Path, online: bool, project: str, entity: Optional[str]):
    """A WandbLogger that stays offline unless asked: no login, no network call, never waits on one."""
    if not online:
        os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_DISABLE_GIT", "true")
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(
        save_dir=str(run_dir),
        project=project,
        entity=entity,
        name=run_dir.name,
        offline=not online,
        log_model=False,
    )


class PretrainCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--run_dir", type=Optional[str], default=None,
                            help="run folder (default: runs/pretrain/<date-time>)")
        parser.add_argument("--ckpt_path", type=Optional[str], default=None,
                            help="resume from this checkpoint, or 'last' for <run_dir>/checkpoints/last.ckpt")
        parser.add_argument("--checkpoint_every", type=int, default=100,
                            help="also keep a checkpoint every N optimizer steps")
        parser.add_argument("--logger.wandb", type=bool, default=True, help="log to Weights & Biases")
        parser.add_argument("--logger.online", type=bool, default=False,
                            help="sync wandb online (needs a login); env HJEPA_WANDB_ONLINE=1 does the same")
        parser.add_argument("--logger.project", type=str, default="hjepa", help="wandb project")
        parser.add_argument("--logger.entity", type=Optional[str], default=None, help="wandb entity")
        # One truth for the window length: the model's, copied to the data.
        parser.link_arguments("model.arch.frames_per_window", "data.frames_per_window")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        cfg = self.config
        run_dir = Path(cfg.run_dir or os.environ.get(RUN_DIR_ENV) or Path("runs/pretrain") / time.strftime("%Y%m%d-%H%M%S"))
        # A resume without its checkpoint is refused before anything is written into the folder.
        self.ckpt_file = resolve_ckpt_path(cfg.ckpt_path, run_dir)
        os.environ[RUN_DIR_ENV] = str(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        # A resumed run continues the killed run's metrics.csv (cut back to its checkpoint).
        csv_logger = ResumableCSVLogger(str(run_dir), name="csv", version="", resume=cfg.ckpt_path is not None)
        loggers: list[Any] = [csv_logger]
        online = bool(cfg.logger.online) or os.environ.get("HJEPA_WANDB_ONLINE", "") == "1"
        if cfg.logger.wandb:
            loggers.append(wandb_logger(run_dir, online, cfg.logger.project, cfg.logger.entity))
        callbacks = list(kwargs.pop("callbacks", None) or [])
        callbacks += [
            ModelCheckpoint(
                dirpath=str(run_dir / "checkpoints"),
                filename="step{step:06d}",
                every_n_train_steps=cfg.checkpoint_every,
                save_top_k=-1,
                save_last=True,
                auto_insert_metric_name=False,
            ),
            SummaryCallback(run_dir),
            CSVCheckpointSync(csv_logger),
        ]
        if kwargs.get("logger") not in (None, True):
            raise UserError("set loggers with --logger.* (CSV is always on; wandb offline by default), not --trainer.logger")
        kwargs["logger"] = loggers
        kwargs["callbacks"] = callbacks
        kwargs["default_root_dir"] = str(run_dir)
        kwargs["plugins"] = [AtomicCheckpointIO()]
        trainer = super().instantiate_trainer(**kwargs)
        if trainer.is_global_zero:
            self.parser.save(self.config, str(run_dir / "config.yaml"), skip_none=False, overwrite=True, skip_validation=True)
            (run_dir / "provenance.json").write_text(json.dumps(provenance(), indent=2) + "\n")
        return trainer


class MissingCheckpoint(UserError, FileNotFoundError):
    """``--ckpt_path`` names no file."""


def resolve_ckpt_path(ckpt_path: Optional[str], run_dir: Path) -> Optional[str]:
    """``--ckpt_path`` as a file path (``last``: the run folder's ``checkpoints/last.ckpt``)."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise MissingCheckpoint(
                f"--ckpt_path last: there is no {last}. Pass the --run_dir of the run to resume "
                "(it must have written a checkpoint), or leave out --ckpt_path to start a new run"
            )
        return str(last)
    if not Path(ckpt_path).is_file():
        raise MissingCheckpoint(f"--ckpt_path {ckpt_path}: no such file. Give the path of a .ckpt file, or 'last'")
    return ckpt_path


def build_cli(argv: list[str], cli_class: type[PretrainCLI] = PretrainCLI) -> PretrainCLI:
    """Parse ``argv`` and build model, data and trainer (nothing runs yet)."""
    return cli_class(
        HJEPAModule,
        VideoDataModule,
        args=argv,
        run=False,
        save_config_callback=None,
        trainer_defaults=TRAINER_DEFAULTS,
        seed_everything_default=0,
        parser_kwargs={"prog": "hjepa pretrain", "description": "Pretrain an H-JEPA (LightningCLI conventions)."},
    )


def fit(cli: PretrainCLI) -> dict[str, Any]:
    """Train (resuming when ``--ckpt_path`` says so) and return the run's summary."""
    ckpt = cli.ckpt_file
    # weights_only: a checkpoint is a pickle; resume accepts tensors and plain values only
    # (AtomicCheckpointIO enforces it whatever is passed here).
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt, weights_only=True)
    return next((c.summary for c in cli.trainer.callbacks if isinstance(c, SummaryCallback)), {})


def main(argv: list[str]) -> dict[str, Any]:
    """Run ``hjepa pretrain`` with ``argv`` (the arguments after the subcommand); return the summary."""
    # The console script hands argv over explicitly (sys.argv also holds the subcommand).
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    return fit(build_cli(argv))
