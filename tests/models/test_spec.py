"""ArchSpec: validation, serialisation and content keys."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

import models
from models import ArchSpec, SpecError, StageSpec, preset, presets
from models._blocks import BLOCK_TYPES, SHORTCUT_MODULES, STRIDE_PLACEMENTS
from models._stems import STEM_TYPES

CIFAR_STAGES = ({"depth": 3, "width": 16, "stride": 1}, {"depth": 3, "width": 32, "stride": 2})


@pytest.mark.parametrize("name", presets())
def test_round_trips_through_yaml_and_json(name: str) -> None:
    spec = preset(name)
    assert ArchSpec.from_yaml(spec.to_yaml()) == spec
    assert ArchSpec.from_json(spec.to_json()) == spec
    assert ArchSpec.from_dict(yaml.safe_load(spec.to_yaml())).key() == spec.key()


def test_random_specs_round_trip(sampled_specs: list[ArchSpec]) -> None:
    for spec in sampled_specs:
        assert ArchSpec.from_json(spec.to_json()) == spec
        assert ArchSpec.from_yaml(spec.to_yaml()).key() == spec.key()


def test_spec_is_frozen() -> None:
    spec = preset("resnet18")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.block = "bottleneck"  # type: ignore[misc]


def test_key_is_stable_and_content_based() -> None:
    a = preset("cifar_resnet20")
    b = ArchSpec.from_dict(a.to_dict())
    assert a.key() == b.key()
    assert len(a.key()) == 16
    # Pinned: a key that changes between releases orphans every stored result.
    assert a.key() == "7a310c4801145f25"
    assert a.replace(shortcut="B").key() != a.key()
    assert ArchSpec(stages=a.stages, stem="cifar", stem_width=16, shortcut="A", num_classes=10,
                    bottleneck_ratio=1).key() == ArchSpec(
        stages=a.stages, stem="cifar", stem_width=16, shortcut="A", num_classes=10,
        bottleneck_ratio=1.0).key()


def test_key_ignores_fields_that_do_nothing_in_basic_blocks() -> None:
    base = preset("resnet18")
    assert base.replace(bottleneck_ratio=0.5).key() == base.key()
    bottleneck = preset("resnet50")
    assert bottleneck.replace(bottleneck_ratio=0.5).key() != bottleneck.key()


def test_stages_accept_mappings() -> None:
    spec = ArchSpec(stages=CIFAR_STAGES, stem="cifar", stem_width=16, shortcut="A")
    assert spec.stages[1] == StageSpec(depth=3, width=32, stride=2)


# One case per rule: (changes to a valid basic spec, field named, allowed text)
INVALID = [
    ({"stages": ()}, "stages", "non-empty"),
    ({"stages": ({"depth": 0, "width": 16},)}, "stages[0].depth", ">= 1"),
    ({"stages": ({"depth": 2, "width": -16},)}, "stages[0].width", ">= 1"),
    ({"stages": ({"depth": 2, "width": 16, "stride": 3},)}, "stages[0].stride", "1 or 2"),
    ({"stages": ({"depth": True, "width": 16},)}, "stages[0].depth", "integer"),
    ({"block": "dense"}, "block", "preact_bottleneck"),
    ({"shortcut": "E"}, "shortcut", "none"),
    ({"stem": "vit"}, "stem", "imagenet"),
    ({"stem_width": 0}, "stem_width", ">= 1"),
    ({"stem": "deep", "stem_width": 33}, "stem_width", "even"),
    ({"block": "bottleneck", "groups": 3}, "groups", "divisor of the inner width"),
    ({"groups": 2}, "groups", "grouped convs need a bottleneck"),
    ({"bottleneck_ratio": 0}, "bottleneck_ratio", "(0, 4]"),
    ({"block": "bottleneck", "bottleneck_ratio": 0.01}, "bottleneck_ratio", "at least one inner channel"),
    ({"bottleneck_stride": "1x1"}, "bottleneck_stride", "only bottlenecks"),
    ({"bottleneck_stride": "5x5", "block": "bottleneck"}, "bottleneck_stride", "3x3"),
    ({"zero_init_residual": True, "block": "preact_basic"}, "zero_init_residual", "pre-activation"),
    ({"zero_init_residual": True, "shortcut": "none"}, "zero_init_residual", "plain net"),
    ({"zero_init_residual": "yes"}, "zero_init_residual", "true or false"),
    ({"shortcut": "A", "stem_width": 64}, "shortcut", "shrinks channels 64 -> 16"),
    ({"num_classes": 0}, "num_classes", ">= 1"),
    ({"in_channels": 0}, "in_channels", ">= 1"),
]


@pytest.mark.parametrize("changes, field, allowed", INVALID, ids=[f"{c[1]}-{i}" for i, c in enumerate(INVALID)])
def test_every_rule_names_field_value_and_allowed(changes: dict, field: str, allowed: str) -> None:
    values = {"stages": CIFAR_STAGES, "stem": "cifar", "stem_width": 16, "shortcut": "B", **changes}
    with pytest.raises(ValueError) as raised:
        ArchSpec(**values)
    message = str(raised.value)
    assert message.startswith(f"{field}: got "), message
    assert allowed in message


def test_from_dict_rejects_unknown_and_missing_fields() -> None:
    good = preset("cifar_resnet20").to_dict()
    with pytest.raises(ValueError, match="shortcutt: unknown ArchSpec field"):
        ArchSpec.from_dict({**good, "shortcutt": "A"})
    with pytest.raises(ValueError, match=r"stages\[0\].depht: unknown stage field"):
        ArchSpec.from_dict({**good, "stages": [{"depht": 3, "width": 16}]})
    with pytest.raises(ValueError, match="stages: missing"):
        ArchSpec.from_dict({k: v for k, v in good.items() if k != "stages"})
    with pytest.raises(ValueError, match="allowed: a mapping"):
        ArchSpec.from_dict(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_flat_has_one_column_per_field_and_stage() -> None:
    flat = preset("resnet50").flat()
    assert flat["block"] == "bottleneck"
    assert flat["stage3.depth"] == 6 and flat["stage4.width"] == 2048 and flat["stage2.stride"] == 2
    assert flat["depths"] == "3-4-6-3"
    assert flat["num_layers"] == 50
    assert all(not isinstance(v, (list, dict, tuple)) for v in flat.values())


@pytest.mark.parametrize("name, layers", [("resnet18", 18), ("resnet34", 34), ("resnet50", 50),
                                          ("resnet101", 101), ("resnet152", 152),
                                          ("cifar_resnet20", 20), ("cifar_resnet56", 56),
                                          ("cifar_resnet1202", 1202), ("cifar_plain44", 44)])
def test_num_layers_matches_the_papers_names(name: str, layers: int) -> None:
    assert preset(name).num_layers == layers


def test_spec_error_carries_field_value_and_allowed() -> None:
    with pytest.raises(SpecError) as raised:
        ArchSpec(stages=({"depth": 2, "width": 16}, {"depth": 0, "width": 32}), stem="cifar", stem_width=16)
    error = raised.value
    assert isinstance(error, ValueError)
    assert (error.path, error.field, error.got, error.allowed) == (("stages", 1, "depth"), "stages[1].depth", 0,
                                                                  "an integer >= 1")
    assert str(error) == "stages[1].depth: got 0; allowed: an integer >= 1"
    with pytest.raises(SpecError) as raised:
        ArchSpec.from_dict({**preset("cifar_resnet20").to_dict(), "shortcutt": "A"})
    assert (raised.value.field, raised.value.what) == ("shortcutt", "unknown ArchSpec field")
    assert "shortcut" in raised.value.allowed.split(", ")


# Each named field of ArchSpec, and the table whose keys are its allowed values.
NAMED_FIELDS = [("block", BLOCK_TYPES, models.BLOCKS), ("shortcut", SHORTCUT_MODULES, models.SHORTCUTS),
                ("stem", STEM_TYPES, models.STEMS), ("bottleneck_stride", STRIDE_PLACEMENTS, models.BOTTLENECK_STRIDES)]


@pytest.mark.parametrize("field, table, names", NAMED_FIELDS, ids=[f for f, _, _ in NAMED_FIELDS])
def test_an_unknown_name_is_told_the_keys_of_its_table(field: str, table: dict, names: tuple) -> None:
    assert names == tuple(table)
    with pytest.raises(SpecError) as raised:
        ArchSpec(**{"stages": CIFAR_STAGES, "stem": "cifar", "stem_width": 16, "block": "bottleneck",
                    field: "nonesuch"})
    assert (raised.value.field, raised.value.got) == (field, "nonesuch")
    assert raised.value.allowed.split(", ") == list(table)


def test_a_stem_row_is_all_a_new_stem_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(STEM_TYPES, "imagenet_copy", STEM_TYPES["imagenet"])
    spec = ArchSpec(stages=CIFAR_STAGES, stem="imagenet_copy", stem_width=16)
    assert models.complexity(spec) == models.complexity(spec.replace(stem="imagenet"))
    with pytest.raises(SpecError, match="allowed: cifar, imagenet, deep, imagenet_copy$"):
        spec.replace(stem="vit")
