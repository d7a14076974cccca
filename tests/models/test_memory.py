"""models.training_memory against what torch holds: exactly for weights, gradients and optimizer state,
within 10% for the activations autograd saves, and within a stated factor of the peak memory measured on CPU.

Measured accuracy (2-core CPU, torch 2.13, one thread; `pytest tests/models/test_memory.py -k "peak or autograd"
-s` prints the peaks): the activations autograd saves match the count within 3% on every case below. The peak
resident memory (VmHWM) of three training steps grew by 411 MiB for an estimate of 205 MiB (ResNet-20, SGD,
batch 128) and by 378 MiB for 222 MiB (a wide net, AdamW, batch 4): on CPU the estimate is low by up to 2x for
small networks, of which about 100-160 MiB is the runtime (oneDNN's primitive cache, the allocator's arenas)
and the rest the backward pass's temporaries. The test allows 0.5x to 2x plus 160 MiB. No GPU was available
to check the CUDA peak (`torch.cuda.max_memory_allocated`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

import models
from commands import ROOT
from models import ArchSpec, MemoryBudget, build, training_memory, trial_memory_budget
from models import _memory

GiB = 2**30
MiB = 2**20


def _spec(**fields) -> ArchSpec:
    stages = fields.pop("stages", ({"depth": 2, "width": 16, "stride": 1}, {"depth": 2, "width": 32, "stride": 2}))
    return ArchSpec(stages=stages, num_classes=10, **{"stem": "cifar", "stem_width": 16, **fields})


# Presets of every stem and block, and specs for what no preset has (pre-activation, shortcuts A/C/D, groups).
SPECS = {
    **{name: models.preset(name) for name in ("cifar_resnet20", "cifar_plain20", "resnet18", "resnet50",
                                              "resnet50_d", "resnext50_32x4d", "resnet50_stride_1x1")},
    "preact_basic A": _spec(block="preact_basic", shortcut="A"),
    "preact_bottleneck C": _spec(block="preact_bottleneck", shortcut="C", stem_width=32),
    "bottleneck D deep stem": _spec(block="bottleneck", shortcut="D", stem="deep", stem_width=32),
    "grouped bottleneck": _spec(block="bottleneck", groups=4, bottleneck_ratio=0.5),
}


def _side(spec: ArchSpec) -> int:
    return 32 if spec.stem == "cifar" else 64  # 64: ImageNet nets still end at 2x2


@pytest.mark.parametrize("name", models.presets())
def test_weights_and_gradients_are_the_model_tensors(name):
    spec = models.preset(name)
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = build(spec)
    estimate = training_memory(spec, batch_size=1)
    params = sum(p.numel() for p in model.parameters())
    assert estimate.gradients == 4 * params
    assert estimate.weights == 4 * sum(t.numel() for t in model.state_dict().values())


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_optimizer_state_is_what_torch_allocates(optimizer):
    from space import OPTIMIZERS, TrainSettings

    assert sorted(OPTIMIZERS) == sorted(_memory.OPTIMIZER_STATE_COPIES)  # every optimizer has its count
    spec = _spec()
    model = build(spec)
    step = OPTIMIZERS[optimizer](list(model.parameters()), TrainSettings(optimizer=optimizer))
    F.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1])).backward()
    step.step()
    state = sum(value.numel() for per_param in step.state.values() for key, value in per_param.items()
                if torch.is_tensor(value) and key != "step")
    assert training_memory(spec, 32, 2, optimizer).optimizer_state == 4 * state


def _saved_by_autograd(spec: ArchSpec, side: int, batch: int) -> int:
    """Bytes of the distinct activation storages autograd keeps for the backward pass of one step."""
    model = build(spec)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    x = torch.randn(batch, spec.in_channels, side, side)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        F.cross_entropy(model(x), torch.zeros(batch, dtype=torch.long))
    return sum(saved.values())


@pytest.mark.parametrize("name", SPECS)
def test_counted_activations_are_what_autograd_saves(name):
    spec = SPECS[name]
    side, batch = _side(spec), 2
    counter = _memory._walk(spec, side)
    counted = batch * (4 * counter.saved + counter.index_bytes)
    assert 0.9 < counted / _saved_by_autograd(spec, side, batch) < 1.1


def test_activations_grow_with_the_batch_and_halve_in_bf16():
    spec = models.preset("cifar_resnet20")
    one, many = training_memory(spec, batch_size=1), training_memory(spec, batch_size=256)
    assert many.activations == 256 * one.activations
    assert (many.weights, many.gradients, many.optimizer_state) == (one.weights, one.gradients, one.optimizer_state)
    bf16 = training_memory(spec, batch_size=256, activation_bytes=2)
    assert bf16.activations < 0.55 * many.activations
    assert training_memory(spec, batch_size=1, optimizer="adamw").optimizer_state == 2 * one.optimizer_state


@pytest.mark.parametrize("bad, message", [
    ({"optimizer": "lion"}, "optimizer: got 'lion'; allowed: sgd, adamw"),
    ({"batch_size": 0}, "batch_size: got 0; allowed: a positive integer"),
    ({"activation_bytes": 8}, "activation_bytes: got 8; allowed: 4 (fp32) or 2 (bf16)"),
    ({"image_size": 0}, "image_size: got 0; allowed: a positive integer"),
])
def test_bad_arguments_are_value_errors(bad, message):
    with pytest.raises(ValueError, match=rf"^{message.replace('(', '[(]').replace(')', '[)]')}$"):
        training_memory(models.preset("cifar_resnet20"), **bad)


# --------------------------------------------------- measured peak on CPU
_PEAK_SCRIPT = textwrap.dedent("""\
    import json, sys
    import torch, torch.nn.functional as F
    import models

    def peak_resident():
        # VmHWM: this process's own high-water mark (getrusage's ru_maxrss keeps the parent's across exec).
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024

    spec = models.ArchSpec.from_json(sys.argv[1])
    side, batch, optimizer = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(batch, spec.in_channels, side, side).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, spec.num_classes, (batch,))
    before = peak_resident()
    model = models.build(spec).to(memory_format=torch.channels_last)
    params = list(model.parameters())
    step = (torch.optim.SGD(params, lr=0.01, momentum=0.9) if optimizer == "sgd"
            else torch.optim.AdamW(params, lr=1e-3))
    for _ in range(2):  # as search.train.fit; the second step holds weights, gradients and optimizer state at once
        loss = F.cross_entropy(model(x), y)
        step.zero_grad(set_to_none=True)
        loss.backward()
        step.step()
    print(json.dumps(peak_resident() - before))
""")
# What the runtime adds whatever the network: oneDNN's primitive cache, the allocator's arenas, thread stacks.
RUNTIME_BYTES = 160 * MiB

PEAK_CASES = {
    # activations dominate
    "cifar_resnet20, sgd, batch 128": (models.preset("cifar_resnet20"), 32, 128, "sgd"),
    # weights, gradients and two AdamW moments dominate
    "wide basic, adamw, batch 4": (_spec(stem_width=64, stages=({"depth": 2, "width": 256, "stride": 1},
                                                               {"depth": 2, "width": 512, "stride": 2})), 32, 4,
                                   "adamw"),
}


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM from Linux's /proc")
@pytest.mark.parametrize("name", PEAK_CASES)
def test_estimate_is_within_a_factor_of_the_measured_cpu_peak(name):
    spec, side, batch, optimizer = PEAK_CASES[name]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, spec.to_json(), str(side), str(batch), optimizer],
                          capture_output=True, text=True, env=environment, timeout=300, check=True)
    measured = json.loads(done.stdout)
    estimate = training_memory(spec, side, batch, optimizer).total
    print(f"{name}: measured peak growth {measured / MiB:.0f} MiB, estimate {estimate / MiB:.0f} MiB")
    # Not more than twice too high, and not more than twice too low beyond the fixed runtime.
    assert 0.5 * estimate <= measured <= 2 * estimate + RUNTIME_BYTES


# --------------------------------------------------------------- budgets
def test_cpu_budget_is_the_machine_divided_by_the_trials_at_once(monkeypatch):
    monkeypatch.setattr(_memory, "host_memory", lambda: 32 * GiB)
    monkeypatch.setattr(_memory, "host_cpus", lambda: 8)
    assert trial_memory_budget(gpus=0, cpus=1) == MemoryBudget(4 * GiB, "this machine's 32 GiB / 8 trials at once")
    assert trial_memory_budget(gpus=0, cpus=4).bytes == 16 * GiB
    assert trial_memory_budget(gpus=0, cpus=1, max_concurrent=2).bytes == 16 * GiB
    assert trial_memory_budget(gpus=0, cpus=16).bytes == 32 * GiB  # one trial, even if it wants more cores


def test_gpu_budget_is_the_share_of_one_device(monkeypatch):
    monkeypatch.setattr(_memory, "gpu_memory", lambda index=0: (80 * GiB, "NVIDIA H100"))
    assert trial_memory_budget(gpus=0.5, cpus=1).describe() == "40 GiB (0.5 of the 80 GiB of one NVIDIA H100)"
    assert trial_memory_budget(gpus=2, cpus=1).bytes == 80 * GiB  # a trial trains on one device
    monkeypatch.setattr(_memory, "gpu_memory", lambda index=0: None)
    assert trial_memory_budget(gpus=0.5, cpus=1).bytes is None


def test_refusal_says_estimate_and_budget():
    budget = MemoryBudget(1 * GiB, "this machine's 2 GiB / 2 trials at once")
    spec = models.preset("cifar_resnet20")
    assert budget.refusal(training_memory(spec, batch_size=128)) is None
    refusal = budget.refusal(training_memory(spec, batch_size=4096))
    assert refusal.startswith("needs about 6.") and "activations 6." in refusal and "at batch 4096) to train" in refusal
    assert refusal.endswith("more than the 1 GiB (this machine's 2 GiB / 2 trials at once) it may use")
    assert MemoryBudget(None, "unknown").refusal(training_memory(spec, batch_size=4096)) is None


def test_the_real_machine_has_memory_and_cores():
    assert _memory.host_memory() > 256 * MiB and _memory.host_cpus() >= 1
