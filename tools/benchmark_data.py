#!/usr/bin/env python
"""Decoding and loader throughput: decord, PyAV, PyAV's plain loop (see hjepa/bench/decoding.py).

    python tools/benchmark_data.py [--videos ../shared/data/videos] [--quick] [--json F]
"""

from hjepa.bench.decoding import main

if __name__ == "__main__":
    main()
