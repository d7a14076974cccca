"""The results Ray Tune hands the driver's recorder for one smoke-study trial: its config, each epoch, the end.

The tracker tests feed these to the Recorder as Tune's callback does, with no Ray.
"""

from __future__ import annotations

import space
from commands import SMOKE
from search._trial import PLAN, TRIAL_NUMBER

EPOCHS = 3


def trial_config(number: int, shortcut: str, seed: int) -> dict:
    """The config of trial `number` of the smoke study at `shortcut` and `seed`, with its plan, as Tune sends it."""
    study = space.load_study(SMOKE, [f"train.epochs={EPOCHS}"])
    plan = space.resolve(study, {"point": f"shortcut={shortcut}", "seed": seed})
    return {"point": f"shortcut={shortcut}", "seed": seed, TRIAL_NUMBER: number, PLAN: plan.to_dict()}


def epoch_result(config: dict, epoch: int) -> dict:
    return {"epoch": epoch, "train_loss": 2.0 / epoch, "val_acc": 0.2 + 0.1 * epoch, "epoch_s": 0.5,
            "images_per_s": 900.0, "lr": 0.1, "config": config}


def final_result(config: dict) -> dict:
    return {**epoch_result(config, EPOCHS), "final": True, "status": "complete", "val_acc_best": 0.5,
            "val_acc_final": 0.5, "test_acc": 0.45, "epochs_run": EPOCHS, "wall_s": 1.5, "params": 1000,
            "macs": 20000, "flops": 40000}
