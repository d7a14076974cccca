"""Reading a run folder as untrusted input: every reader of its bytes goes through here.

People copy run folders, share them and unpack them from other people's
archives, so nothing in one is taken on trust (docs/DESIGN.md, "Run folder").
What a reader may cost is bounded before anything is parsed:

- a size cap per file (the constants below, each with its reason);
- regular files only: a FIFO would block, /dev/zero would fill memory, so a
  file is opened with O_NONBLOCK and fstat'ed before a byte is read;
- UTF-8 where text is expected;
- JSON and YAML nesting depth, and YAML aliases, with the study-file caps;
- paths stored in the folder (checkpoint cells) relative, without `..`, and
  resolving inside the folder: a link that leaves it is refused too.

Every refusal is one RunFolderError naming the file (and the cell).
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import yaml


class RunFolderError(ValueError):
    """A run folder's file is missing, unreadable or lacks what the reader needs; the message names it."""


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# ------------------------------------------------------------------ size caps
# A run.json is about 5 KB (factors and their levels are its largest part); 1 MiB is 200 times that.
MAX_RUN_JSON_BYTES = 1 << 20
# plans.json holds one plan (~2 KB) per retrain run; 64 MiB is 30,000 of them, far past any top-k x seeds.
MAX_PLANS_JSON_BYTES = 64 << 20
# A checkpoint's meta.json is about 3 KB (settings, metrics, versions).
MAX_META_JSON_BYTES = 1 << 20
# The lock's body names its holder and the local Ray's pids: well under 10 KB.
MAX_LOCK_BYTES = 64 << 10
# The trial log holds ~5 KB per trial with its curve; 4 GiB is 800,000 trials, past any study we can run.
MAX_TRIAL_LOG_BYTES = 4 << 30
# results/curves/retrain tables are smaller than the log they are materialised from.
MAX_TABLE_BYTES = 4 << 30
# Weights: a ResNet-200 in fp32 is ~260 MB; 16 GiB leaves room for wide searched networks and stops a sparse-file bomb.
MAX_WEIGHTS_BYTES = 16 << 30

# ------------------------------------------------------------------ nesting and YAML caps
# Study files and the YAML documents of a run folder (study.yaml, arch.yaml) share these caps
# (space._yaml reads study files with them).
# The largest shipped study has 3,636 characters; this is about thirty times that.
# PyYAML's pure-Python parser (the one that records lines) reads about 100,000
# characters a second on a busy 2-core machine, so the largest file costs a second.
MAX_YAML_CHARS = 100_000
# UTF-8 spends at most four bytes on a character.
MAX_YAML_BYTES = 4 * MAX_YAML_CHARS
# A study nests five levels (space.stages[i].depth.int); fifty leaves room for any
# hand-written file and keeps every recursive walk far from Python's limit of 1,000.
MAX_YAML_DEPTH = 50
# Values (YAML nodes) after aliases are expanded: the largest shipped study has 104,
# and validating 100,000 takes a fraction of a second. A billion-laughs file of 8
# levels expands to 9^8 = 43 million and is refused.
MAX_YAML_NODES = 100_000
# run.json nests four levels (hardware.gpus[i].name), meta.json three, plans.json five; any
# document of ours is far under 50, and every walk of it far from Python's recursion limit.
MAX_JSON_DEPTH = MAX_YAML_DEPTH


# ------------------------------------------------------------------ regular files, bounded
def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def open_regular(path: Path, flags: int = os.O_RDONLY, *, follow_links: bool = True, mode: int = 0o666) -> int:
    """A file descriptor of `path`, which must be a regular file; RunFolderError naming what it is otherwise.

    O_NONBLOCK so that opening a FIFO returns at once instead of waiting for
    a writer; the fstat decides before anything is read. `follow_links=False`
    adds O_NOFOLLOW: a link at `path` is refused, not opened.
    """
    flags |= os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags, mode)
    except OSError as error:
        if not follow_links and error.errno == errno.ELOOP and Path(path).is_symlink():  # ELOOP: the path is a link
            raise RunFolderError(f"{path}: a link, refused: this file is never followed through a link; "
                                 f"delete the link") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RunFolderError(f"{path}: {_kind(info.st_mode)}, not a plain file; a run folder holds plain "
                                 f"files only")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_size(path: Path, size: int, limit: int) -> None:
    """RunFolderError when `size` bytes is over `limit`."""
    if size > limit:
        raise RunFolderError(f"{path}: {size:,} bytes, more than the {limit:,} this file may have; it is "
                             f"not one the runner wrote")


def read_bytes(path: Path, limit: int) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them; RunFolderError (file named) if not."""
    try:
        fd = open_regular(path)
    except OSError as error:
        raise RunFolderError(f"{path}: cannot be read ({_first_line(error)})") from None
    try:
        check_size(path, os.fstat(fd).st_size, limit)
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        check_size(path, total, limit)  # it grew while read
        return b"".join(chunks)
    except OSError as error:
        raise RunFolderError(f"{path}: cannot be read ({_first_line(error)})") from None
    finally:
        os.close(fd)


def open_bounded(path: Path, limit: int, mode: str = "rb", **options: Any) -> Any:
    """`path` opened for reading like `open(path, mode)`, once it is known to be a regular file within `limit` bytes.

    For readers that take a file object (pandas, pyarrow, csv); a file that
    grows past `limit` while read is not caught here, only one that is larger.
    """
    fd = open_regular(path)
    try:
        check_size(path, os.fstat(fd).st_size, limit)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, mode, **options)


def decode_text(data: bytes, path: Path) -> str:
    """`data` as UTF-8 text; RunFolderError when it is not text."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RunFolderError(f"{path}: not UTF-8 text (byte {error.start}); the file is binary or "
                             f"damaged") from None


def read_text(path: Path, limit: int) -> str:
    """`read_bytes` decoded as UTF-8."""
    return decode_text(read_bytes(path, limit), path)


# ------------------------------------------------------------------ JSON, depth-capped
def _too_deep(document: Any, limit: int) -> bool:
    """True when `document` (plain JSON data) nests more than `limit` levels; an iterative walk."""
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            values = value.values()
        elif isinstance(value, list):
            values = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in values if isinstance(child, (dict, list)))
    return False


def parse_json(text: str | bytes, path: Path, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON data in `text`; RunFolderError when it is not JSON or nests more than `max_depth` levels."""
    try:
        document = json.loads(text)
    except RecursionError:
        document = None
        deep = True
    except (ValueError, UnicodeDecodeError) as error:
        raise RunFolderError(f"{path}: not readable JSON: {_first_line(error)}") from None
    else:
        deep = _too_deep(document, max_depth)
    if deep:
        raise RunFolderError(f"{path}: JSON nested more than {max_depth} levels deep; no document of a run "
                             f"folder nests that far")
    return document


def read_json(path: Path, limit: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON document in the regular file `path`, bounded in size and depth."""
    return parse_json(read_text(path, limit), path, max_depth)


# ------------------------------------------------------------------ YAML, capped like a study file
class YamlLimitError(yaml.MarkedYAMLError):
    """A YAML document past one of the caps above (too deep, too many nodes, a recursive alias)."""


class CappedSafeLoader(yaml.SafeLoader):
    """`yaml.safe_load`'s loader (plain data only, never code) that stops at MAX_YAML_DEPTH while composing.

    The composer is the one recursive step of parsing, so it counts the nesting
    and stops before Python's recursion limit can.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nesting = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self._nesting += 1
        try:
            if self._nesting > MAX_YAML_DEPTH:
                raise YamlLimitError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep",
                                     self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._nesting -= 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def check_yaml_expansion(root: yaml.Node) -> None:
    """Raise YamlLimitError if the tree, with every alias expanded, is too deep, too large, or endless.

    An alias is the same node object in two places, so a walk with memory
    counts each distinct node once (linear in the file) while adding up what
    the expanded tree would hold. The walk keeps its own stack: a chain of
    aliases can be deeper than Python's recursion limit.
    """
    size: dict[int, int] = {}    # id(node) -> nodes in its expanded subtree
    depth: dict[int, int] = {}   # id(node) -> levels of its expanded subtree
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            children = _children(node)
            size[key] = 1 + sum(size[id(child)] for child in children)
            depth[key] = 1 + max((depth[id(child)] for child in children), default=0)
            if size[key] > MAX_YAML_NODES:
                raise YamlLimitError(None, None, f"more than {MAX_YAML_NODES:,} values once its aliases "
                                                 "(*name) are expanded", node.start_mark)
            if depth[key] > MAX_YAML_DEPTH:
                raise YamlLimitError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep once its "
                                                 "aliases (*name) are expanded", node.start_mark)
            continue
        if key in size:
            continue
        if key in on_path:  # &a [*a]: a value that contains itself never ends
            raise YamlLimitError(None, None, "an alias (*name) refers to a value that contains it",
                                 node.start_mark)
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if isinstance(child, yaml.ScalarNode):  # a leaf: no need to visit it twice
                size[id(child)] = depth[id(child)] = 1
            elif id(child) not in size:
                stack.append((child, False))


def parse_yaml(text: str, path: Path | str) -> Any:
    """The data of one YAML document, read safely and within the study-file caps; RunFolderError if not."""
    if len(text) > MAX_YAML_CHARS:
        raise RunFolderError(f"{path}: too large to read ({len(text):,} characters; at most "
                             f"{MAX_YAML_CHARS:,})")
    loader = None
    try:
        loader = CappedSafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        check_yaml_expansion(node)
        return loader.construct_document(node)
    except YamlLimitError as error:
        mark = error.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise RunFolderError(f"{path}{line}: too costly to read: {error.problem} (at most {MAX_YAML_DEPTH} "
                             f"levels and {MAX_YAML_NODES:,} values after aliases)") from None
    except (yaml.YAMLError, ValueError) as error:  # ValueError: an integer of more digits than Python converts
        raise RunFolderError(f"{path}: not readable YAML: {_first_line(error)}") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml(path: Path) -> Any:
    """The YAML document in the regular file `path`, within the study-file caps."""
    return parse_yaml(read_text(path, MAX_YAML_BYTES), path)


# ------------------------------------------------------------------ paths stored in the folder
def stored_path(root: Path, cell: str, where: str) -> Path:
    """`root / cell` for a path a run folder stores (a checkpoint cell); RunFolderError unless it stays inside.

    The cell must be relative, without `..`, and must resolve inside `root`
    once links are followed. `where` names the file and the cell for the
    message ("results.parquet, trial trial_0003, column checkpoint").
    """
    text = str(cell)
    posix, windows = PurePosixPath(text), PureWindowsPath(text)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or text.startswith("~"):
        raise RunFolderError(f"{root}: {where}: {text!r} is an absolute path; a run folder stores paths "
                             f"relative to itself, and nothing outside it is read")
    if ".." in posix.parts or ".." in windows.parts:
        raise RunFolderError(f"{root}: {where}: {text!r} climbs out with '..'; a run folder stores paths "
                             f"inside itself only")
    path = root / text
    if not is_inside(path, root):
        raise RunFolderError(f"{root}: {where}: {text!r} leads outside the folder through a link "
                             f"(to {path.resolve()}); nothing outside the run folder is read")
    return path


def is_inside(path: Path, root: Path) -> bool:
    """True when `path`, links followed, lies in `root` (links followed) or is it."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a link loop
        return False


def check_tree_inside(folder: Path, root: Path, where: str) -> list[tuple[Path, Path]]:
    """Every file under `folder` as (its path, its relative name), each a regular file inside `root`.

    For copying a folder out of an untrusted run folder: a link that leaves
    `root`, a FIFO or a device anywhere under `folder` is refused (`where`
    names the cell that pointed at the folder).
    """
    found = []
    for current, folders, files in os.walk(folder, followlinks=False):
        base = Path(current)
        for name in [*folders, *files]:
            path = base / name
            if not is_inside(path, root):
                raise RunFolderError(f"{path}: {where}: a link leading outside {root} (to {path.resolve()}); "
                                     f"nothing outside the run folder is copied")
            try:
                mode = os.stat(path).st_mode
            except OSError as error:
                raise RunFolderError(f"{path}: {where}: cannot be read ({_first_line(error)})") from None
            if name in folders:
                if path.is_symlink():
                    raise RunFolderError(f"{path}: {where}: a link to a folder; a checkpoint holds plain "
                                         f"files only")
                continue
            if not stat.S_ISREG(mode):
                raise RunFolderError(f"{path}: {where}: {_kind(mode)}, not a plain file; a run folder holds "
                                     f"plain files only")
            found.append((path, path.relative_to(folder)))
    return found


def check_entries(root: Path, files: tuple[str, ...], folders: tuple[str, ...]) -> None:
    """RunFolderError when one of the folder's own entries is a link leading out of `root`, or of the wrong kind.

    The readers and writers then work on names inside `root` only: a
    trials.jsonl that is a link to another file, a FIFO at results.parquet
    (which `Path.is_file` would call absent) or a checkpoints/ that is a link
    to another folder (which pruning would empty) are refused by name before
    anything is read or written. A missing entry is fine.
    """
    for name, want_folder in [*((name, False) for name in files), *((name, True) for name in folders)]:
        path = root / name
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            if os.path.islink(path):
                raise RunFolderError(f"{path}: a broken link; a run folder holds its own files, not links "
                                     f"to others") from None
            continue
        except OSError as error:
            raise RunFolderError(f"{path}: cannot be read ({_first_line(error)})") from None
        if os.path.islink(path) and not is_inside(path, root):
            raise RunFolderError(f"{path}: a link leading outside the run folder (to {path.resolve()}); "
                                 f"nothing outside the folder is read or written")
        wrong = not stat.S_ISDIR(mode) if want_folder else not stat.S_ISREG(mode)
        if wrong:
            kind = "a plain file" if stat.S_ISREG(mode) else _kind(mode)
            raise RunFolderError(f"{path}: {kind}, where the run-folder format has "
                                 f"{'a folder' if want_folder else 'a plain file'}")
