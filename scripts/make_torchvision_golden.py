"""Write tests/models/golden/torchvision_state_dicts.json from torchvision itself, and check outputs.

Run in an environment that has torchvision (PyPI's torchvision does not import
beside the CPU torch 2.13 this project pins, so this is a separate venv):

    python -m venv /tmp/tvenv && /tmp/tvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 pyyaml
    PYTHONPATH=. /tmp/tvenv/bin/python scripts/make_torchvision_golden.py

Besides the names and shapes, it loads each torchvision model's state_dict
into the matching resnas preset with strict=True and prints the largest output
difference on the same input.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torchvision

import models

NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
         "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2"]


def main() -> None:
    golden = {"torchvision": torchvision.__version__, "torch": torch.__version__, "models": {}}
    for name in NAMES:
        torch.manual_seed(0)
        reference = getattr(torchvision.models, name)().eval()
        state = reference.state_dict()
        golden["models"][name] = {k: list(v.shape) for k, v in state.items()}
        ours = models.build(models.preset(name)).eval()
        ours.load_state_dict(state, strict=True)
        x = torch.randn(2, 3, 224, 224)
        with torch.no_grad():
            diff = (ours(x) - reference(x)).abs().max().item()
        print(f"{name:18s} {len(state):4d} tensors, strict load ok, max |out diff| = {diff:.3g}")
    path = Path(__file__).resolve().parents[1] / "tests/models/golden/torchvision_state_dicts.json"
    path.write_text(json.dumps(golden, separators=(",", ":")) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
