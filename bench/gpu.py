"""Speed and memory of SmolVLM2-2.2B and OpenFlamingo-3B at real size, random weights.

GPU (any CUDA machine, no network, no weights needed):
    python bench/gpu.py --scale real --out gpu.json
CPU run of the same measurements on tiny configs:
    python bench/gpu.py --scale tiny --out tiny.json

The same as `roadscene bench gpu ...` (options: --help). Tables on stderr, the JSON document on
stdout or --out. See docs/performance.md.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

if __name__ == "__main__":
    from roadscene.cli.app import main

    sys.argv = ["roadscene", "bench", "gpu", *sys.argv[1:]]
    main()
