"""How much cheaper is the analytic complexity count than measuring a model? Goal: cheap enough to screen thousands of specs.

    python bench/complexity_speed.py [--repeat 25]

Times, in the same run, on every preset at its natural image size:
  baseline  build the model on the meta device and count with torch's
            FlopCounterMode (what tests/models/test_complexity.py compares against);
  analytic  models.complexity(spec), which builds nothing.
Prints milliseconds per spec and the speed-up; not a pass/fail test
(docs/STYLE: measure, don't assert speed).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

# Run from a checkout without installing: the repository root holds `models`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from models import build, complexity, natural_image_size, preset, presets  # noqa: E402


def measured(name: str) -> int:
    """MACs of preset `name` counted by running it on the meta device."""
    spec = preset(name)
    size = natural_image_size(spec)
    with torch.device("meta"):
        model = build(spec).eval()
        x = torch.empty(1, spec.in_channels, size, size)
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=25, help="analytic passes over the presets")
    args = parser.parse_args()
    names = presets()
    start = time.perf_counter()
    for name in names:
        measured(name)
    baseline_ms = (time.perf_counter() - start) * 1000 / len(names)
    specs = [preset(name) for name in names]
    start = time.perf_counter()
    for _ in range(args.repeat):
        for spec in specs:
            complexity(spec)
    analytic_ms = (time.perf_counter() - start) * 1000 / (len(specs) * args.repeat)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"baseline (meta build + FlopCounterMode): {baseline_ms:8.2f} ms/spec over {len(names)} presets")
    print(f"analytic (models.complexity):            {analytic_ms:8.3f} ms/spec over {len(specs) * args.repeat} calls")
    print(f"speed-up: {baseline_ms / analytic_ms:.0f}x; 10,000 specs take {analytic_ms * 10:.1f} s analytically")


if __name__ == "__main__":
    main()
