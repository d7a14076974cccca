"""Images per second per CPU core of the ImageNet input pipeline: resnas (folder, packed) vs torchvision, same run.

Every pipeline turns ImageNet-size JPEGs (the embedded CIFAR-10 sample
upscaled to 500x375 with a little grain, quality 90) into normalised float
batches of 224 px RandomResizedCrop + flip, in a DataLoader with the same
worker count and batch size:

- torchvision: `ImageFolder` + PIL + `transforms.Compose([RandomResizedCrop,
  RandomHorizontalFlip, ToTensor, Normalize])`, the reference recipe;
- resnas folder: `imagefeed` over the same folder (`FolderImages`, `TrainCrop`,
  uint8 batches, normalised once per batch in the training process);
- resnas packed: the same over `python -m search.pack`'s file of it;
- litdata (if importable): the same packed JPEG bytes written with litdata's
  `optimize` and read through its `StreamingDataset`, decoded and cropped alike.

"Per core" is images per CPU-second: the training process's CPU time plus
its DataLoader workers' (reaped each pass), so another job on the machine
slows a pass but does not change the figure much. Wall-clock images/s are
printed beside it. Also the 32 px whole-tensor path (`BatchAugment` pad-crop,
flip and normalise on the embedded sample) on one thread.

    .venv/bin/python bench/input_pipeline.py [--images 1000] [--workers 2] [--rounds 2]

torchvision: PyPI's wheel is built against CUDA torch and its compiled ops
do not load beside this project's CPU torch 2.13; `import torchvision` then
fails in its op registrations. Only the pure-Python `ImageFolder` and
`transforms` are used here, so the bench imports it with those registrations
stubbed (`_import_torchvision`). Install it, and litdata for the comparison,
for the bench only, into bench/.baselines (git ignores it; the bench puts it
on its path), never into the project's environment:

    .venv/bin/pip install --no-deps --target bench/.baselines torchvision==0.28.0 litdata \
        lightning-utilities boto3 botocore s3transfer jmespath
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

import imagefeed
from imagefeed._folders import read_imagefolder
from imagefeed._images import StreamedSplit
from imagefeed._loader import make_loader
from imagefeed._packed import PackedImages, open_packed
from imagefeed._transforms import TrainCrop
from search import pack

# The baselines' packages (see above): beside the project's, not in its environment.
BASELINES = Path(__file__).resolve().parent / ".baselines"
if BASELINES.is_dir():
    sys.path.append(str(BASELINES))

IMAGE_SIZE = 224
FULL_SIZE = (500, 375)  # ImageNet's typical photo; its mean is about 400x350 at 110 KB
GRAIN = 10  # std of added noise: plain upscaled CIFAR compresses (and decodes) unrealistically well
MEAN, STD = imagefeed.NORMALIZATIONS["imagenet"]


def _import_torchvision():
    """torchvision's pure-Python parts, even where its compiled ops do not load beside this torch (see above)."""
    try:
        import torchvision
        return torchvision
    except RuntimeError as error:  # "operator torchvision::nms does not exist"
        if "torchvision::" not in str(error):
            raise
    for name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
        del sys.modules[name]
    extension = types.ModuleType("torchvision.extension")
    extension._has_ops = lambda: False
    extension._assert_has_ops = lambda: (_ for _ in ()).throw(RuntimeError("torchvision ops are not loaded"))
    extension._check_cuda_version = lambda: -1
    extension._load_library = lambda name: False
    sys.modules["torchvision.extension"] = extension
    library = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):  # the two fake-kernel registrations torchvision makes unconditionally
        try:
            library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:
            pass
    import torchvision
    torchvision._bench_library = library  # keep the definitions alive
    return torchvision


# ------------------------------------------------------------------ data
def make_folder(root: Path, images: int) -> Path:
    """An imagefolder of `images` training JPEGs (and a few test ones) at FULL_SIZE, from the embedded sample."""
    from PIL import Image

    if (root / "train").is_dir():
        return root
    sample = imagefeed.read_embedded_sample()
    pixels, labels = sample.train_x.numpy(), sample.train_y.numpy()
    rng = np.random.default_rng(0)
    for number in range(images + 20):
        index = number % len(pixels)
        split = "train" if number < images else "val"
        folder = root / split / f"class{labels[index]}"
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(pixels[index].transpose(1, 2, 0)).resize(FULL_SIZE, Image.Resampling.BICUBIC)
        noisy = np.asarray(image, np.int16) + rng.normal(0, GRAIN, image.size[::-1] + (3,)).astype(np.int16)
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(folder / f"{number:06d}.jpg", quality=90)
    return root


# ------------------------------------------------------------------ timing
class _Pass:
    """CPU seconds (this process and reaped children) and wall seconds of one pass."""

    def __enter__(self):
        self.cpu = self._cpu()
        self.wall = time.perf_counter()
        return self

    @staticmethod
    def _cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = self._cpu() - self.cpu


def _measure(make_batches) -> dict[str, float]:
    """Images per CPU-second and per wall second of one pass; `make_batches()` starts the pass."""
    count = 0
    with _Pass() as timed:
        batches = make_batches()
        for images in batches:
            count += len(images)
        del batches  # the workers stop and are reaped inside the timed pass, so their CPU time counts
    return {"per_core": count / timed.cpu, "wall": count / timed.wall}


def torchvision_batches(root: Path, batch_size: int, workers: int):
    """The reference: ImageFolder + PIL + transforms in a DataLoader (normalised float batches from the workers)."""
    torchvision = _import_torchvision()
    from torchvision import transforms

    recipe = transforms.Compose([transforms.RandomResizedCrop(IMAGE_SIZE), transforms.RandomHorizontalFlip(),
                                 transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    dataset = torchvision.datasets.ImageFolder(str(root / "train"), transform=recipe)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True)
    return (images for images, _ in loader)


def resnas_batches(images: imagefeed.ImageSource, batch_size: int, workers: int):
    """imagefeed's loader: uint8 batches from the workers, normalised once per batch here (as on the device)."""
    split = StreamedSplit(images, np.arange(len(images), dtype=np.int64))
    loader = make_loader(split, TrainCrop(IMAGE_SIZE), batch_size=batch_size, seed=0, train=True,
                         workers=workers, persistent=False)
    normalize = imagefeed.BatchAugment(0, False, mean=MEAN, std=STD)
    return (normalize.normalize_only(batch) for batch, _ in loader)


class _LitImages:
    """litdata's StreamingDataset as an ImageSource: the packed store's JPEG bytes, decoded the same way."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.labels = np.zeros(len(dataset), np.int64)

    def __len__(self) -> int:
        return len(self.dataset)

    def read(self, index: int, target_side: int | None = None):
        from imagefeed._packed import _decode_jpeg

        return _decode_jpeg(self.dataset[index]["image"], target_side, f"litdata[{index}]")


class _StoreRecords:
    """litdata's `optimize` callable: training record i of the packed store (picklable for its spawned workers)."""

    def __init__(self, packed: Path):
        self.packed = packed

    def __call__(self, index: int) -> dict:
        store = open_packed(self.packed)
        data, _, _, _ = store.record("train", index)
        return {"image": bytes(data), "label": int(store.index["train"]["labels"][index])}


def _write_litdata(packed: Path, out: Path) -> None:
    import litdata

    count = len(open_packed(packed).index["train"]["labels"])
    litdata.optimize(fn=_StoreRecords(packed), inputs=list(range(count)), output_dir=str(out),
                     chunk_bytes="64MB", num_workers=1, mode="overwrite")
    # optimize() switches the process-wide start method to spawn; every pipeline here measures forked workers.
    multiprocessing.set_start_method("fork", force=True)


def litdata_batches(folder: Path, batch_size: int, workers: int):
    """The packed bytes through litdata's reader, then the same crop, loader and normalisation as resnas."""
    import litdata

    dataset = litdata.StreamingDataset(str(folder))
    return resnas_batches(_LitImages(dataset), batch_size, workers)


def one_image_rates(sources: dict[str, imagefeed.ImageSource], count: int) -> dict[str, float]:
    """Read + decode + RandomResizedCrop to 224 of one image at a time, in this process: images per CPU-second."""
    crop = TrainCrop(IMAGE_SIZE)
    rates = {}
    for name, images in sources.items():
        rng = np.random.default_rng(0)
        start = time.process_time()
        for index in range(count):
            crop(images, index % len(images), rng)
        rates[name] = count / (time.process_time() - start)
    return rates


def downsampled_rate(batch_size: int = 256, seconds: float = 3.0) -> float:
    """The 32 px whole-tensor path: BatchAugment pad-crop + flip + normalise on uint8 batches, one thread."""
    sample = imagefeed.read_embedded_sample()
    pool = sample.train_x[:batch_size * (len(sample.train_x) // batch_size)]
    augment = imagefeed.BatchAugment(4, True, mean=imagefeed.NORMALIZATIONS["cifar"][0],
                                     std=imagefeed.NORMALIZATIONS["cifar"][1])
    generator = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for batch in pool.split(batch_size):  # warm-up
            augment(batch, generator)
        images, start = 0, time.process_time()
        while time.process_time() - start < seconds:
            for batch in pool.split(batch_size):
                augment(batch, generator)
                images += len(batch)
        return images / (time.process_time() - start)
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------ main
def main() -> None:
    """Make the data, pack it, measure every pipeline in turn per round, and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="training JPEGs (default 1000)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for every pipeline")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="passes per pipeline; the median is reported")
    parser.add_argument("--work", default=None, help="folder for the JPEGs and stores (default: a temporary one)")
    parser.add_argument("--no-litdata", action="store_true", help="skip the litdata comparison")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the normalisation in the main process: one core, as the figure is per core
    _import_torchvision()  # before any timed pass: its import is not the pipeline's cost
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="input_pipeline."))
    folder = make_folder(work / "folder", args.images)
    sizes = [path.stat().st_size for path in (folder / "train").rglob("*.jpg")]
    print(f"data: {len(sizes)} JPEGs of {FULL_SIZE[0]}x{FULL_SIZE[1]}, mean {np.mean(sizes) / 1024:.0f} KB, in {folder}")
    packed = work / "folder.pack"
    if not packed.exists():
        pack.main(["imagefolder", str(folder), str(packed)])
    folder_images = read_imagefolder(SimpleNamespace(root=str(folder), dataset="imagefolder")).train
    packed_images = PackedImages(packed, "train")
    pipelines = {
        "torchvision ImageFolder + PIL": lambda: torchvision_batches(folder, args.batch_size, args.workers),
        "resnas, folder": lambda: resnas_batches(folder_images, args.batch_size, args.workers),
        "resnas, packed": lambda: resnas_batches(packed_images, args.batch_size, args.workers),
    }
    if not args.no_litdata:
        try:
            lit = work / "litdata"
            if not (lit / "index.json").exists():
                _write_litdata(packed, lit)
            pipelines["litdata (same JPEG bytes)"] = lambda: litdata_batches(lit, args.batch_size, args.workers)
        except ImportError as error:
            print(f"litdata: skipped ({error})")
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cpus {len(os.sched_getaffinity(0))}, "
          f"load average {os.getloadavg()[0]:.2f}, workers {args.workers}, batch {args.batch_size}, "
          f"{args.rounds} rounds")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in pipelines}
    for _ in range(args.rounds):  # alternate, so that a noisy minute hits every pipeline alike
        for name, batches in pipelines.items():
            results[name].append(_measure(batches))
    rates = {}
    for name, runs in results.items():
        per_core = statistics.median(run["per_core"] for run in runs)
        wall = statistics.median(run["wall"] for run in runs)
        rates[name] = per_core
        shown = ", ".join(f"{run['per_core']:.0f}" for run in runs)
        print(f"{name:32s} {per_core:8.0f} img/s per core ({shown}), {wall:7.0f} img/s wall")
    one = one_image_rates({"folder": folder_images, "packed": packed_images}, min(300, args.images))
    print(f"one image at a time (read + decode + RandomResizedCrop 224, one core): folder {one['folder']:.0f}, "
          f"packed {one['packed']:.0f} img/s, packed/folder {one['packed'] / one['folder']:.2f}")
    small = downsampled_rate()
    print(f"32 px whole-tensor path (BatchAugment pad-crop + flip + normalise, 1 thread): {small:,.0f} img/s per core")
    baseline = rates["torchvision ImageFolder + PIL"]
    for name in rates:
        if name != "torchvision ImageFolder + PIL":
            print(f"ratio {name} / torchvision: {rates[name] / baseline:.2f}")
    ours = rates["resnas, packed"]
    print(f"input pipeline: {ours:.0f} img/s per core (resnas, packed), {baseline:.0f} img/s per core "
          f"(torchvision ImageFolder + PIL), ratio {ours / baseline:.2f}")


if __name__ == "__main__":
    main()
