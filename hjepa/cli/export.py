"""``hjepa export --ckpt C --out DIR``: weights as safetensors + config.json.

The folder loads with ``hjepa.load_pretrained(DIR)`` without Lightning, and without pickle.
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
    from hjepa.loading import load_pretrained
    from hjepa.train.provenance import provenance

    model = load_pretrained(ckpt)
    path = export_model(model, {"model_config": model.config.to_dict(), **provenance(), "source": str(ckpt)}, out)
    print(f"exported {ckpt} -> {path}")
    return str(path)


def main(argv: list[str]) -> None:
    run_function_cli(export, argv, "hjepa export", "Export a checkpoint as safetensors + JSON config.")
