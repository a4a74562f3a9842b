"""``hjepa export --ckpt C --out DIR``: weights as safetensors + config.json.

The folder loads with ``hjepa.load_pretrained(DIR)`` without Lightning, and without pickle.
Its ``config.json`` carries the model config and the record of the clips the model was trained
on (``input_settings``), so every task on an export sees what it would on the checkpoint.
"""

from __future__ import annotations

from hjepa.cli.function_cli import run_function_cli


def export(ckpt: str, out: str) -> str:
    """Export a pretraining checkpoint.

    Args:
        ckpt: a ``.ckpt`` written by ``hjepa pretrain``.
        out: output folder (``model.safetensors``, ``config.json``).
    """
    from hjepa.export import export_model
    from hjepa.input_settings import RECORD_KEY
    from hjepa.loading import load_pretrained
    from hjepa.train.provenance import provenance

    model = load_pretrained(ckpt)
    config = {"model_config": model.config.to_dict(), **provenance(), "source": str(ckpt)}
    if model.input_settings is not None:  # the clips it was trained on travel with the weights
        config[RECORD_KEY] = model.input_settings.to_dict()
    path = export_model(model, config, out)
    print(f"exported {ckpt} -> {path}")
    return str(path)


def main(argv: list[str]) -> None:
    run_function_cli(export, argv, "hjepa export", "Export a checkpoint as safetensors + JSON config.")
