"""Checkpoints that load without executing code: safetensors weights, the spec as YAML, metadata as JSON.

A checkpoint folder holds everything needed to rebuild its network (nanoGPT's
habit of storing the architecture arguments beside the weights):

    model.safetensors   tensors only; loading parses no Python objects
    arch.yaml           the ArchSpec (`ArchSpec.to_yaml()`)
    meta.json           training/data settings, metrics, versions, format version

A folder may hold `model.pt` or `model.pth` (a `torch.save`d state dict)
instead of `model.safetensors`; it is read with `torch.load(weights_only=True)`,
whose unpickler refuses every class but tensors and plain containers, so a
pickle that names any other object fails instead of running.
"""

from __future__ import annotations

import json
import os
import pickle
import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

import runfolder
from runfolder import untrusted

from ._spec import ArchSpec

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "arch.yaml"
META_FILE = "meta.json"
# Read only when there is no model.safetensors, and only with weights_only=True.
PICKLED_WEIGHTS_FILES = ("model.pt", "model.pth")
# Keys under which training scripts commonly nest the state dict in a .pt file.
NESTED_STATE_DICT_KEYS = ("state_dict", "model")
# How many names an error message lists before "and N more".
SHOWN_NAMES = 5


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, corrupt or does not fit its spec."""


def versions(*extra_packages: str) -> dict[str, str]:
    """Versions that decide whether a result reproduces: Python, torch, resnas and `extra_packages`."""
    from importlib import metadata

    found = {"python": platform.python_version()}
    for package in ("resnas", "torch", *extra_packages):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def save_checkpoint(path: str | Path, model: nn.Module, spec: ArchSpec | None = None,
                    **meta: Any) -> Path:
    """Write `model`'s weights, its spec and `meta` (JSON-serialisable) into folder `path`."""
    from safetensors.torch import save_file

    spec = spec if spec is not None else getattr(model, "spec", None)
    if not isinstance(spec, ArchSpec):
        raise ValueError("save_checkpoint: the model carries no ArchSpec; pass spec=")
    folder = Path(path)
    # safetensors wants contiguous tensors that share no storage.
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    document = {"format_version": FORMAT_VERSION, "spec_key": spec.key(), "versions": versions(), **meta}

    def write(staging: Path) -> None:
        save_file(state, str(staging / WEIGHTS_FILE), metadata={"spec_key": spec.key()})
        os.chmod(staging / WEIGHTS_FILE, runfolder.new_file_mode())  # safetensors makes it 0600, not the umask's
        (staging / SPEC_FILE).write_text(spec.to_yaml())
        (staging / META_FILE).write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")

    # Written beside it, then renamed: a reader (models.load, checkpoint pruning) never sees half a folder.
    runfolder.atomic_write_folder(folder, write)
    return folder


# ------------------------------------------------------------------- reading
def shorten(names: list[str], limit: int = SHOWN_NAMES) -> str:
    """The first few names, then how many more: for error messages."""
    shown = ", ".join(names[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def is_checkpoint_folder(folder: Path) -> bool:
    """True when `folder` holds a spec file: the one file every checkpoint has."""
    return (folder / SPEC_FILE).is_file()


def _checked_file(folder: Path, name: str) -> Path:
    """`folder/name`, refused (CheckpointError) when it is a link that leads out of the checkpoint folder.

    A checkpoint folder is read as untrusted input (runfolder._untrusted): its
    files lie inside it, so weights from elsewhere are never loaded under its name.
    """
    path = folder / name
    if path.is_symlink() and not untrusted.is_inside(path, folder):
        raise CheckpointError(f"{path}: a link leading outside the checkpoint folder (to {path.resolve()}); "
                              f"nothing outside it is read")
    return path


def _bounded_text(path: Path, limit: int) -> str:
    try:
        return untrusted.read_text(path, limit)
    except runfolder.RunFolderError as error:
        raise CheckpointError(str(error)) from None


def read_spec(folder: Path) -> ArchSpec:
    """The ArchSpec in `folder/arch.yaml` (safe YAML within the study-file caps, so it cannot build objects)."""
    path = _checked_file(folder, SPEC_FILE)
    if not os.path.lexists(path):
        raise CheckpointError(f"{path}: missing; a checkpoint folder holds {SPEC_FILE}, "
                              f"{WEIGHTS_FILE} and {META_FILE}")
    text = _bounded_text(path, untrusted.MAX_YAML_BYTES)
    try:
        data = untrusted.parse_yaml(text, path)
    except runfolder.RunFolderError as error:  # a YAML error, an unsafe tag, or past the caps
        detail = str(error).removeprefix(str(path)).lstrip(":0123456789 ")
        raise CheckpointError(f"{path}: not a valid spec file ({detail})") from None
    try:
        return ArchSpec.from_dict(data)
    except ValueError as error:
        raise CheckpointError(f"{path}: not a valid ArchSpec: {error}") from None
    except Exception as error:  # a document that is not a mapping of fields
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise CheckpointError(f"{path}: not a valid spec file ({type(error).__name__}: {first_line})") from None


@dataclass(frozen=True)
class CheckpointMeta:
    """A checkpoint's meta.json: what `save_checkpoint` writes, with the defaults a hand-made folder lacks."""

    format_version: int = FORMAT_VERSION
    spec_key: str | None = None                   # the spec the weights were saved for; None: not recorded
    versions: dict[str, str] = field(default_factory=dict)   # `versions()` when saved
    train_settings: dict[str, Any] | None = None  # `TrainSettings.to_dict()` (checkpoints written by search)
    data_settings: dict[str, Any] | None = None   # `DataSettings.to_dict()`
    metrics: dict[str, Any] | None = None         # what training reported
    extra: dict[str, Any] = field(default_factory=dict)  # any other key `save_checkpoint(**meta)` was given

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], path: Path | str) -> "CheckpointMeta":
        """The typed metadata of a JSON object; CheckpointError naming the field of a wrong type."""
        version = document.get("format_version", FORMAT_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(f"{path}: format_version {version!r} is newer than this resnas reads "
                                  f"(up to {FORMAT_VERSION}); upgrade resnas")
        typed = {"spec_key": (str, type(None)), "versions": (dict,), "train_settings": (dict, type(None)),
                 "data_settings": (dict, type(None)), "metrics": (dict, type(None))}
        for name, allowed in typed.items():
            if name in document and not isinstance(document[name], allowed):
                kinds = " or ".join("null" if kind is type(None) else ("an object" if kind is dict else "text")
                                    for kind in allowed)
                raise CheckpointError(f"{path}: field {name}: got a JSON {type(document[name]).__name__}; "
                                      f"allowed: {kinds}")
        known = {"format_version", *typed}
        return cls(format_version=version, **{name: document[name] for name in typed if name in document},
                   extra={name: value for name, value in document.items() if name not in known})

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, as `save_checkpoint` writes it (fields it does not hold left out)."""
        document: dict[str, Any] = {"format_version": self.format_version, **self.extra}
        for name in ("spec_key", "versions", "train_settings", "data_settings", "metrics"):
            if getattr(self, name) not in (None, {}):
                document[name] = getattr(self, name)
        return document


def read_checkpoint_meta(folder: Path) -> CheckpointMeta | None:
    """`folder/meta.json` as a CheckpointMeta; None when the folder has none (a checkpoint made by hand).

    Read as untrusted input: a plain file (not /dev/zero or a FIFO) of at most
    MAX_META_JSON_BYTES, UTF-8 JSON nested within MAX_JSON_DEPTH levels.
    """
    path = _checked_file(folder, META_FILE)
    if not os.path.lexists(path):
        return None
    try:
        document = untrusted.read_json(path, untrusted.MAX_META_JSON_BYTES)
    except runfolder.RunFolderError as error:
        raise CheckpointError(str(error).replace("not readable JSON", "not valid JSON")) from None
    if not isinstance(document, dict):
        raise CheckpointError(f"{path}: got a JSON {type(document).__name__}; allowed: a JSON object")
    return CheckpointMeta.from_dict(document, path)


def read_meta(folder: Path) -> dict[str, Any]:
    """`folder/meta.json` as a dict (every key it holds); {} when the folder has none (a checkpoint made by hand)."""
    meta = read_checkpoint_meta(folder)
    return {} if meta is None else meta.to_dict()


def _read_safetensors(path: Path, device: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        # safe_open parses a JSON header and maps raw tensor bytes; nothing else.
        with safe_open(str(path), framework="pt", device=device) as handle:
            header = handle.metadata() or {}
            return {name: handle.get_tensor(name) for name in handle.keys()}, header
    except Exception as error:  # SafetensorError is not exported under a stable name
        raise CheckpointError(f"{path}: not a readable safetensors file ({error}); the file is "
                              f"corrupt or truncated: copy it again or retrain the trial") from None


def _read_pickled(path: Path, device: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        # weights_only=True: the unpickler accepts tensors and plain containers
        # only, and raises on any other global instead of importing and calling it.
        with warnings.catch_warnings():
            # A plain pickle (not torch.save's zip) makes torch warn about its protocol.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            content = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path}: refused to load: the pickle holds more than tensors "
                              f"({_refusal(error)}); only plain state dicts are read, and nothing in "
                              f"the file was run") from None
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable torch file ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''})") from None
    return as_state_dict(content, path), {}


def _refusal(error: Exception) -> str:
    # torch's message is long and suggests weights_only=False; keep only what it refused.
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    text = " ".join(text.split())
    return text.split(". ")[0][:200] or type(error).__name__


def as_state_dict(content: Any, source: Path | str) -> dict[str, torch.Tensor]:
    """A mapping of names to tensors, unwrapping one level of {'state_dict': ...} or {'model': ...}."""
    if isinstance(content, Mapping):
        for key in NESTED_STATE_DICT_KEYS:
            if key in content and isinstance(content[key], Mapping) and not isinstance(content[key], torch.Tensor):
                content = content[key]
                break
    if not isinstance(content, Mapping):
        raise CheckpointError(f"{source}: holds a {type(content).__name__}; allowed: a state dict "
                              f"(a mapping of parameter names to tensors)")
    bad = [str(k) for k, v in content.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: not a state dict: these entries are not name -> tensor: {shorten(bad)}")
    return dict(content)


# weights file name -> its reader; the first one present in a folder is read.
WEIGHT_READERS: dict[str, Callable[[Path, str], tuple[dict[str, torch.Tensor], dict[str, str]]]] = {
    WEIGHTS_FILE: _read_safetensors,
    **{name: _read_pickled for name in PICKLED_WEIGHTS_FILES},
}


def weights_path(folder: Path) -> Path:
    """The weights file of a checkpoint folder (a plain file inside it, within MAX_WEIGHTS_BYTES); a clear error
    when it has none."""
    for name in WEIGHT_READERS:
        path = _checked_file(folder, name)
        if os.path.lexists(path):
            try:
                os.close(_bounded_fd(path))
            except runfolder.RunFolderError as error:
                raise CheckpointError(str(error)) from None
            except OSError as error:
                raise CheckpointError(f"{path}: cannot be read ({error.strerror or error})") from None
            return path
    raise CheckpointError(f"{folder}: no weights file ({' or '.join(WEIGHT_READERS)}); the folder "
                          f"holds only the spec: build an untrained copy with "
                          f"models.build(models.load_spec({str(folder)!r}))")


def _bounded_fd(path: Path) -> int:
    fd = untrusted.open_regular(path)
    try:
        untrusted.check_size(path, os.fstat(fd).st_size, untrusted.MAX_WEIGHTS_BYTES)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_weights(folder: Path, spec: ArchSpec, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The state dict stored in `folder`, checked against the key of the spec it was saved with."""
    path = weights_path(folder)
    state, header = WEIGHT_READERS[path.name](path, device)
    saved_key = header.get("spec_key")
    if saved_key is not None and saved_key != spec.key():
        raise CheckpointError(f"{path}: the weights were saved for spec {saved_key}, but "
                              f"{folder / SPEC_FILE} holds spec {spec.key()}; the two files come "
                              f"from different checkpoints")
    return state


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: Path | str) -> None:
    """Raise CheckpointError naming missing, unexpected or wrongly shaped entries of `state` for `model`."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {shorten(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {shorten(unexpected)}")
        raise CheckpointError(f"{source}: the weights do not fit the spec ({'; '.join(parts)}); names "
                              f"that differ but line up can be loaded with models.load_state_dict_by_shape")
    wrong = [f"{k} {tuple(state[k].shape)} (spec wants {tuple(v.shape)})"
             for k, v in expected.items() if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise CheckpointError(f"{source}: {len(wrong)} tensor(s) have the wrong shape for the spec: {shorten(wrong, 3)}")
