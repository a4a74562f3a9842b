#!/usr/bin/env python
"""Level-1 JEPA training step, ours vs transformers' VJEPA2Model (see hjepa/bench/model_step.py).

    python tools/benchmark_model.py [--model small] [--frames 16] [--size 128] [--batch 4] [--bf16] [--device cuda] [--json F]
"""

from hjepa.bench.model_step import main

if __name__ == "__main__":
    main()
