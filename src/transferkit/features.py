"""Turning samples into batches, and into backbone features cached on disk.

Features are cached in ``$TRANSFERKIT_CACHE`` (default ``~/.cache/transferkit``) under a key made
of the backbone spec and the content of every item, so a second run on the same data with the same
backbone (other head settings, another strategy that starts from features) skips extraction.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from transferkit import distributed
from transferkit.backbones.base import Backbone
from transferkit.data import Samples, item_digest, load_audio, load_image
from transferkit.errors import ArtifactError, DataError
from transferkit.safety import FEATURE_CACHE, artifact_folder, atomic_write, cache_dir, remove_artifact

if TYPE_CHECKING:
    from transferkit.backbones.split import BackboneSplit
    from transferkit.throughput import ExtractionPlan


def decode_item(item: Any, backbone: Backbone) -> Any:
    """A raw item (path, array, string) to what ``backbone.transform`` takes."""
    if not backbone.decodes_items:  # already what it takes (the cached states of a cut backbone's top)
        return item
    if backbone.modality == "image":
        return load_image(item)
    if backbone.modality == "audio":
        return load_audio(item, sample_rate=backbone.sample_rate or 16000)
    return str(item)


class BackboneDataset(Dataset):
    """Samples decoded and transformed for one backbone; yields ``(sample, label_index)``.

    Indexed by ``index`` or, from ``EpochSampler``, by ``(index, seed)``: then the training
    augmentation draws from torch's generator seeded with ``seed``, and the global stream (which
    dropout uses) is left untouched, so a sample's augmentation does not depend on when the loader
    happens to fetch it.
    """

    def __init__(self, samples: Samples, backbone: Backbone, label_ids: Sequence[Any] | None,
                 train: bool) -> None:
        self.samples, self.backbone, self.label_ids, self.train = samples, backbone, label_ids, train

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Any, int]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        item = decode_item(self.samples.items[index], self.backbone)
        _warn_if_cut(item, self.backbone, self.samples.origins[index])
        label = -1 if self.label_ids is None else self.label_ids[index]
        try:
            if seed is None:
                return self.backbone.transform(item, train=self.train), label
            with seeded_torch(seed):
                return self.backbone.transform(item, train=self.train), label
        except DataError as err:  # an input the backbone cannot take (a clip shorter than its window): name it
            raise DataError(f"{self.samples.origins[index]}: {err}") from err


class LongAudioWarning(UserWarning):
    """An audio clip is longer than the backbone encodes; only its beginning is used."""


def _warn_if_cut(item: Any, backbone: Backbone, origin: str) -> None:
    """Warn, naming the clip, when an audio backbone with a longest input (``max_samples``: Whisper's
    30 s) will see only the beginning of ``item``. Once per clip: the message names it."""
    longest = getattr(backbone, "max_samples", None)
    if backbone.modality == "audio" and longest and len(item) > longest:
        rate = backbone.sample_rate or 16000
        warnings.warn(f"{origin}: {len(item) / rate:.1f} s of audio; {backbone.spec.name} encodes only the first "
                      f"{longest / rate:.0f} s (cut longer recordings into clips to use all of them)",
                      LongAudioWarning, stacklevel=3)


# batches per group sorted by length (``EpochSampler(lengths=...)``)
LENGTH_GROUP = 16


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffled ``(index, augmentation_seed)`` pairs, a function of ``(seed, epoch)`` only.

    Accelerate's loaders call ``set_epoch``; a resumed epoch therefore replays the same order and
    the same augmentations, and the loop can skip the batches it had already done.

    With ``lengths`` (and ``batch_size``), the shuffled order is cut into groups of ``LENGTH_GROUP`` batches,
    each group sorted by length and cut into batches, and the batches shuffled: a batch then holds items
    of similar length, so it pads little (Hugging Face's ``group_by_length``).
    """

    def __init__(self, size: int, seed: int, *, lengths: Sequence[int] | None = None, batch_size: int = 1) -> None:
        self.size, self.seed, self.epoch = size, seed, 0
        self.lengths, self.batch_size = lengths, batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        digest = hashlib.sha256(f"{self.seed}:{self.epoch}".encode()).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
        order = torch.randperm(self.size, generator=generator).tolist()
        seeds = torch.randint(0, 2**62, (self.size,), generator=generator).tolist()
        if self.lengths is not None:
            lengths, size = self.lengths, self.batch_size
            group = size * LENGTH_GROUP
            sorted_groups = [sorted(order[i:i + group], key=lambda j: -lengths[j]) for i in range(0, self.size, group)]
            batches = [chunk[i:i + size] for chunk in sorted_groups for i in range(0, len(chunk), size)]
            full = [b for b in batches if len(b) == size]  # a short batch stays last, as the loader cuts it
            shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
            order = [j for batch in shuffled + [b for b in batches if len(b) < size] for j in batch]
        return iter(zip(order, seeds, strict=True))


@contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """Run a block with torch's CPU generator seeded with ``seed``, then put it back as it was.

    Augmentations must draw from torch's generator (torchvision's and the built-in backbones' do)
    for a resumed run to replay them.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # torch.manual_seed would also seed every GPU: 50x slower
        yield


def make_loader(samples: Samples, backbone: Backbone, label_ids: Sequence[Any] | None, *, train: bool,
                batch_size: int, seed: int = 0) -> DataLoader:
    """A DataLoader whose batches are ``(batch_dict, targets)``; shuffled and augmented when training,
    in an order and with augmentations that depend only on ``(seed, epoch)`` (``EpochSampler``).

    ``label_ids`` holds one encoded target per sample (a class index, a row of label indicators, a
    number); integer targets batch as ``int64``, the others keep their dtype.
    """

    def collate(pairs: list[tuple[Any, Any]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        batch = backbone.collate([sample for sample, _ in pairs])
        targets = np.asarray([label for _, label in pairs])
        return batch, torch.from_numpy(targets.astype(np.int64) if targets.dtype.kind in "iub" else targets)

    # the generator only seeds worker processes; without one, each new iterator would draw from the global stream
    generator = torch.Generator().manual_seed(seed)
    lengths = [len(item) for item in samples.items] if train and backbone.group_by_length else None
    sampler = EpochSampler(len(samples), seed, lengths=lengths, batch_size=batch_size) if train else None
    return DataLoader(BackboneDataset(samples, backbone, label_ids, train), batch_size=batch_size,
                      sampler=sampler, collate_fn=collate, generator=generator, drop_last=False)


class FeatureCacheWarning(UserWarning):
    """A feature-cache entry could not be read (dropped and recomputed) or the cache not written."""


def features_key(backbone: Backbone, samples: Samples) -> str:
    digest = hashlib.sha256(backbone.fingerprint().encode())
    for item in samples.items:
        digest.update(item_digest(item).encode())
    return f"{backbone.spec.cache_key()}-{digest.hexdigest()[:24]}"


# Features are extracted and cached this many samples at a time: an interrupted extraction resumes from the
# last shard written, and under ``accelerate launch`` the processes take turns over the shards.
SHARD_SIZE = 2048


@torch.inference_mode()
def extract_features(backbone: Backbone, samples: Samples, *, batch_size: int = 32,
                     use_cache: bool = True, progress: bool = True) -> np.ndarray:
    """Pooled features ``(N, D)`` of every sample, from the cache when it has them.

    The backbone runs in eval mode without augmentation, ``SHARD_SIZE`` samples at a time. With the cache
    each finished shard is written to ``KEY.parts/`` (so an interrupted extraction resumes at the first
    missing shard), and the complete features replace the shards as one entry, written atomically. Under
    ``accelerate launch`` (or ``torchrun``) process ``k`` of ``K`` extracts shards ``k, k + K, ...``; every
    process gets all the features, and only the main process writes the cache. On a CPU ``batch_size`` is
    the largest batch tried: the fastest size up to it is measured once, and from ``MIN_ONNX_SAMPLES``
    samples on the backbone runs on onnxruntime (``throughput.extraction_plan``).
    """
    from transferkit.throughput import extraction_plan

    path = cache_dir() / "features" / f"{features_key(backbone, samples)}.safetensors"
    width = backbone.num_features
    if use_cache:
        cached = _read_cached(path, (len(samples), width))
        if cached is not None:
            return cached
    was_training = backbone.training
    backbone.eval()
    dataset = BackboneDataset(samples, backbone, None, train=False)
    plan = extraction_plan(backbone, lambda n: [dataset[i][0] for i in range(min(n, len(samples)))], batch_size,
                           len(samples))
    parts = path.with_suffix(".parts")
    shards = [range(start, min(start + SHARD_SIZE, len(samples))) for start in range(0, len(samples), SHARD_SIZE)]
    found = distributed.broadcast_object(_finished_shards(parts, shards, width) if use_cache else {})
    rank, processes = distributed.state().process_index, distributed.num_processes()
    done: dict[int, np.ndarray] = {}
    bar = tqdm(total=len(samples), desc=f"features {backbone.spec.name}", unit="sample", leave=False,
               disable=not progress or not distributed.is_main_process(),
               initial=sum(len(shards[i]) for i in found))
    todo = [i for i in range(len(shards)) if i not in found]
    for turn in range(0, len(todo), processes):  # one shard per process per turn
        mine = todo[turn + rank] if turn + rank < len(todo) else None
        result = None if mine is None else _extract(backbone, samples.subset(list(shards[mine])), plan, bar)
        for index, features in distributed.gather_objects((mine, result)):
            if index is None:
                continue
            done[index] = features
            if use_cache and distributed.is_main_process() and len(shards) > 1:
                _write_cached(parts / f"{index:06d}.safetensors", features)
        bar.update(sum(len(shards[i]) for i in todo[turn:turn + processes]) - (0 if result is None else len(result)))
    bar.close()
    backbone.train(was_training)
    done.update({i: _read_cached(parts / f"{i:06d}.safetensors", (len(shards[i]), width)) for i in found})
    chunks = [done[i] for i in range(len(shards))]
    features = np.concatenate(chunks) if chunks else np.zeros((0, width), np.float32)
    if use_cache and distributed.is_main_process():
        _write_cached(path, features)
        with suppress(ArtifactError, OSError):
            remove_artifact(parts)
    return features


def _extract(backbone: Backbone, samples: Samples, plan: ExtractionPlan, bar: Any) -> np.ndarray:
    loader = make_loader(samples, backbone, None, train=False, batch_size=plan.batch_size)
    chunks = []
    for batch, _ in loader:
        chunks.append(plan.forward(batch).float().cpu().numpy())
        bar.update(len(chunks[-1]))
    return np.concatenate(chunks) if chunks else np.zeros((0, backbone.num_features), np.float32)


def _finished_shards(parts: Path, shards: list[range], width: int) -> dict[int, bool]:
    """The shards already in ``parts`` from an interrupted extraction (unreadable ones are left out)."""
    if not parts.is_dir():
        return {}
    finished = {}
    for index, shard in enumerate(shards):
        entry = parts / f"{index:06d}.safetensors"
        if entry.exists() and _read_cached(entry, (len(shard), width)) is not None:
            finished[index] = True
    return finished


def _read_cached(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """The cached features at ``path``, or None when there are none; a corrupt entry is dropped."""
    try:
        if not path.exists():
            return None
        features = load_file(str(path))["features"]
        if features.shape != shape:
            raise ValueError(f"shape {features.shape}, expected {shape}")
        return features
    except (OSError, SafetensorError, KeyError, ValueError) as exc:
        warnings.warn(f"feature cache entry {path} is unreadable ({exc}); dropped, recomputing",
                      FeatureCacheWarning, stacklevel=3)
        with suppress(ArtifactError):
            remove_artifact(path)  # else the write below replaces it, or warns that the cache is not writable
        return None


def _write_cached(path: Path, features: np.ndarray) -> None:
    """Write a cache entry atomically; an unwritable cache only turns caching off, with a warning."""
    try:
        artifact_folder(path.parent, FEATURE_CACHE, adopt="*.safetensors")
        atomic_write(path, lambda tmp: save_file({"features": np.ascontiguousarray(features)}, str(tmp)))
    except (ArtifactError, OSError, SafetensorError) as exc:
        warnings.warn(f"cannot write the feature cache {path.parent} ({exc}); continuing without "
                      "caching (set TRANSFERKIT_CACHE to a writable folder)", FeatureCacheWarning, stacklevel=3)


def frozen_outputs(split: BackboneSplit, backbone: Backbone, samples: Samples, *, batch_size: int,
                   max_bytes: float = float("inf"), progress: bool = False) -> list[np.ndarray]:
    """What the bottom of a cut backbone (``Backbone.split_top``) puts out for every sample, each cut to its real
    positions: ``[(T_i, D)]`` float32, for its top to train on (``cache_frozen``).

    The backbone is in evaluation mode and the samples are read as for feature extraction (no augmentation).

    Raises:
        ConfigError: the outputs take more than ``max_bytes`` of memory.
    """
    from transferkit.errors import ConfigError

    loader = make_loader(samples, backbone, None, train=False, batch_size=batch_size)
    was_training = backbone.training
    backbone.eval()
    kept: list[np.ndarray] = []
    size = 0
    try:
        with torch.inference_mode():
            for batch, _ in tqdm(loader, desc="frozen layers, once", unit="batch", leave=False, disable=not progress):
                out = split.bottom(**batch)
                for states, mask in zip(out.features, out.mask, strict=True):
                    kept.append(states[mask].float().numpy().copy())
                    size += kept[-1].nbytes
                if size > max_bytes:
                    raise ConfigError(f"the frozen layers' outputs take more than {max_bytes / 2**30:.1f} GiB of "
                                      f"memory after {len(kept)} of {len(samples)} samples; leave cache_frozen out")
    finally:
        backbone.train(was_training)
    return kept
