#!/usr/bin/env python
"""hjepa pretrain's training step beside V-JEPA 2's (transformers), see hjepa/bench/model_step.py.

    python tools/benchmark_model.py [--config F | --model small --frames 16 --size 128] [--batch 4]
        [--precision bf16] [--compile] [--windows 1 2 4 8] [--device cuda] [--json F]
"""

from hjepa.bench.model_step import main

if __name__ == "__main__":
    main()
