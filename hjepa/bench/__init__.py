"""Throughput benchmarks, each beside a reference measured in the same run.

- ``model_step``: one level-1 JEPA training step of our VideoViT vs transformers' VJEPA2Model.
- ``decoding``: decord and PyAV readers vs PyAV's plain decode loop; DataModule clips/s.

Run them with ``hjepa benchmark`` or ``tools/benchmark_model.py`` / ``tools/benchmark_data.py``.
"""
