"""CIFAR-10 / CIFAR-100 (Krizhevsky 2009) from the python archive or a TFDS ArrayRecord build.

Sources, tried in this order by `source="auto"`:
  1. "archive": `data_dir` holding `cifar-10-python.tar.gz` / `cifar-100-python.tar.gz`
     or their extracted folders (`cifar-10-batches-py/`, `cifar-100-python/`). The
     pickles are read straight from the tar, nothing is extracted to disk.
  2. "tfds": `tfds.data_source` on an ArrayRecord build in `data_dir` (or TFDS's default
     folder when `data_dir` is None). Reading needs no TensorFlow.
Nothing is ever downloaded at run time; missing data raises a FileNotFoundError that
says how to get it.

Every example keeps its ORIGINAL index: its position in data_batch_1..5 (train) or
test_batch, which is also the k of TFDS's `train_<k>` ids. Memorization scores are
published in that order (Feldman & Zhang 2020; RUM's estimates).
"""
import dataclasses
import os
import pickle
import posixpath
import tarfile
from typing import Dict, List, Optional, Tuple

import numpy as np

from rum_jax import optional
from rum_jax.data import normalize
from rum_jax.data import splits
from rum_jax.data.base import Dataset, Split
from rum_jax.data.catalog import DATASETS

SOURCES = ("auto", "archive", "tfds")


@dataclasses.dataclass(frozen=True)
class CifarSpec:
  """Where one CIFAR variant lives on disk and how its files are laid out."""
  name: str  # also the TFDS name
  title: str
  archive: str
  folder: str
  train_files: Tuple[str, ...]
  test_file: str
  meta_file: str
  label_key: bytes
  names_key: bytes
  num_classes: int
  # RUM's split: 10% of each class of the 50k train images is validation.
  val_per_class: int
  # Per-channel mean/std of the 50k train images scaled to [0, 1], the constants of
  # RUM's `NormalizeByChannelMeanStd` (kairanzhao/RUM, utils.py).
  mean: Tuple[float, float, float]
  std: Tuple[float, float, float]

  @property
  def url(self) -> str:
    return f"https://www.cs.toronto.edu/~kriz/{self.archive}"


CIFAR10 = CifarSpec(
    name="cifar10",
    title="CIFAR-10",
    archive="cifar-10-python.tar.gz",
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{k}" for k in range(1, 6)),
    test_file="test_batch",
    meta_file="batches.meta",
    label_key=b"labels",
    names_key=b"label_names",
    num_classes=10,
    val_per_class=500,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
)

CIFAR100 = CifarSpec(
    name="cifar100",
    title="CIFAR-100",
    archive="cifar-100-python.tar.gz",
    folder="cifar-100-python",
    train_files=("train",),
    test_file="test",
    meta_file="meta",
    label_key=b"fine_labels",
    names_key=b"fine_label_names",
    num_classes=100,
    val_per_class=50,
    mean=(0.5071, 0.4866, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
)


@dataclasses.dataclass(frozen=True)
class RawCifar:
  """Un-normalised CIFAR in original order: uint8 images [N, 32, 32, 3] and labels."""
  train_images: np.ndarray
  train_labels: np.ndarray
  train_index: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  test_index: np.ndarray
  class_names: Tuple[str, ...]


def missing_data_message(spec: CifarSpec, data_dir: Optional[str], detail: str = "") -> str:
  """How to get the data, for the FileNotFoundError raised when no source has it."""
  where = data_dir if data_dir else "<no data_dir set>"
  tfds_dir = data_dir if data_dir else "~/tensorflow_datasets (TFDS default)"
  message = (
      f"{spec.title} not found: no {spec.archive} or {spec.folder}/ in {where}, and no "
      f"TFDS ArrayRecord build of {spec.name!r} in {tfds_dir}. Nothing is downloaded at "
      "run time. To get it, either\n"
      f"  (a) download {spec.url} (python version) into a folder, e.g.\n"
      f"      wget -P /path/to/data {spec.url}\n"
      "      and set the config field data_dir to that folder "
      "(--config.data.data_dir=/path/to/data); the .tar.gz can stay packed; or\n"
      f"  (b) on a machine with internet (building needs TensorFlow, reading does not) run\n"
      f"      tfds build {spec.name} --file_format=array_record --data_dir=/path/to/data\n"
      "      and set data_dir to that folder.")
  if detail:
    message += f"\nTFDS said: {detail}"
  return message


def _decode_batch(batch: dict, spec: CifarSpec) -> Tuple[np.ndarray, np.ndarray]:
  """One pickled batch -> (uint8 images NHWC, int32 labels).

  Each row of b'data' holds 1024 red, then 1024 green, then 1024 blue values of a
  32x32 image in row-major order (the archive's documented layout).
  """
  images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
  labels = np.asarray(batch[spec.label_key], dtype=np.int32)
  return images.transpose(0, 2, 3, 1), labels


def _read_pickles(spec: CifarSpec, data_dir: str) -> Optional[Dict[str, dict]]:
  """Unpickles the archive's files by name, from the folder or the tar; None if absent.

  The official format is pickle, which can run code: only point data_dir at archives
  you trust.
  """
  wanted = (*spec.train_files, spec.test_file, spec.meta_file)
  folder = os.path.join(data_dir, spec.folder)
  archive = os.path.join(data_dir, spec.archive)
  if os.path.isdir(folder):
    blobs = {}
    for name in wanted:
      path = os.path.join(folder, name)
      if not os.path.isfile(path):
        raise FileNotFoundError(f"{spec.title} folder {folder} lacks {name}")
      with open(path, "rb") as f:
        # The archive was pickled by Python 2: keys and strings come back as bytes.
        blobs[name] = pickle.load(f, encoding="bytes")
    return blobs
  if os.path.isfile(archive):
    members = {posixpath.join(spec.folder, name): name for name in wanted}
    blobs = {}
    # One sequential pass: seeking backwards in a gzip stream would decompress again.
    with tarfile.open(archive, "r:gz") as tar:
      for member in tar:
        if member.isfile() and member.name in members:
          with tar.extractfile(member) as f:
            blobs[members[member.name]] = pickle.load(f, encoding="bytes")
    missing = sorted(set(wanted) - set(blobs))
    if missing:
      raise FileNotFoundError(f"{archive} lacks {', '.join(missing)} under {spec.folder}/")
    return blobs
  return None


def read_archive(spec: CifarSpec, data_dir: Optional[str]) -> Optional[RawCifar]:
  """Reads the python-format archive in `data_dir`; None when it is not there.

  Original index = position in the concatenation of the train files (test: in the test
  file), i.e. simply the order of the archive.
  """
  blobs = _read_pickles(spec, data_dir) if data_dir else None
  if blobs is None:
    return None
  decoded = [_decode_batch(blobs[name], spec) for name in spec.train_files]
  train_images = np.concatenate([images for images, _ in decoded])
  train_labels = np.concatenate([labels for _, labels in decoded])
  test_images, test_labels = _decode_batch(blobs[spec.test_file], spec)
  names = tuple(n.decode() for n in blobs[spec.meta_file][spec.names_key])
  return RawCifar(
      train_images=train_images,
      train_labels=train_labels,
      train_index=np.arange(len(train_labels), dtype=np.int64),
      test_images=test_images,
      test_labels=test_labels,
      test_index=np.arange(len(test_labels), dtype=np.int64),
      class_names=names,
  )


def _original_order(examples: List[dict], split: str) -> Tuple[np.ndarray, ...]:
  """(images, labels, index) sorted by the k of the ids `<split>_<k>`.

  TFDS shuffles examples when it writes a build, so the stored order is not CIFAR's;
  the id carries the original position.
  """
  prefix = f"{split}_"
  ks = []
  for example in examples:
    example_id = example["id"]
    if isinstance(example_id, bytes):
      example_id = example_id.decode()
    example_id = str(example_id)
    digits = example_id[len(prefix):]
    if not example_id.startswith(prefix) or not digits.isdigit():
      raise ValueError(
          f"TFDS example id {example_id!r} is not of the form {prefix}<k>; cannot "
          "recover the original CIFAR order")
    ks.append(int(digits))
  ks = np.asarray(ks, dtype=np.int64)
  order = np.argsort(ks, kind="stable")
  if len(np.unique(ks)) != len(ks):
    raise ValueError(f"TFDS {split} split holds duplicate ids; cannot recover the original order")
  images = np.stack([np.asarray(examples[i]["image"], dtype=np.uint8) for i in order])
  labels = np.asarray([examples[i]["label"] for i in order], dtype=np.int32)
  return images, labels, ks[order]


def read_tfds(spec: CifarSpec, data_dir: Optional[str]) -> RawCifar:
  """Reads a TFDS ArrayRecord build with `tfds.data_source` (no TensorFlow needed).

  `download=False`: a missing build raises instead of trying the network. TFDS is
  imported here, not at the top, so the archive path works without it.
  """
  tfds = optional.require("tensorflow_datasets", f"reading {spec.title} from TFDS (source='tfds')",
                          package="tensorflow-datasets")
  try:
    train_source, test_source = tfds.data_source(
        spec.name, split=["train", "test"], data_dir=data_dir, download=False)
  except (NotImplementedError, FileNotFoundError, tfds.core.DatasetNotFoundError) as err:
    # A missing build surfaces as "random access ... FileFormat.TFRECORD is not
    # supported" (NotImplementedError): TFDS assumes TFRecord when nothing is prepared.
    raise FileNotFoundError(missing_data_message(spec, data_dir, detail=str(err))) from err
  # Iterating reads one record at a time, which every TFDS data source supports.
  train_images, train_labels, train_index = _original_order(list(train_source), "train")
  test_images, test_labels, test_index = _original_order(list(test_source), "test")
  return RawCifar(
      train_images=train_images,
      train_labels=train_labels,
      train_index=train_index,
      test_images=test_images,
      test_labels=test_labels,
      test_index=test_index,
      class_names=tuple(train_source.dataset_info.features["label"].names),
  )


def read_raw(spec: CifarSpec, data_dir: Optional[str], source: str = "auto") -> RawCifar:
  """Reads CIFAR from `source` ('auto' | 'archive' | 'tfds'), see the module docstring."""
  if source not in SOURCES:
    raise ValueError(f"unknown CIFAR source {source!r}; valid choices: {', '.join(SOURCES)}")
  if source in ("auto", "archive"):
    raw = read_archive(spec, data_dir)
    if raw is not None:
      return raw
    if source == "archive":
      raise FileNotFoundError(missing_data_message(spec, data_dir))
  try:
    return read_tfds(spec, data_dir)
  except ImportError as err:
    if source == "tfds":
      raise
    # 'auto' without TFDS installed: what is missing is the data, and the archive needs no TFDS.
    raise FileNotFoundError(missing_data_message(spec, data_dir, detail=str(err))) from err


def build_dataset(spec: CifarSpec, raw: RawCifar, split_seed: int,
                  val_per_class: int) -> Dataset:
  """Normalises with the published constants and splits val off train per class.

  x' = (x/255 - mu_c) / sigma_c with RUM's CIFAR mean/std; val = `val_per_class`
  images of every class drawn with `split_seed` (45k/5k on the real data).
  """
  if len(raw.class_names) != spec.num_classes:
    raise ValueError(
        f"{spec.title} should have {spec.num_classes} classes, the data names "
        f"{len(raw.class_names)}")
  # Scaling the constants by 255 normalises uint8 pixels without an extra [0, 1] copy.
  mean = 255.0 * np.asarray(spec.mean)
  std = 255.0 * np.asarray(spec.std)

  def make(images: np.ndarray, labels: np.ndarray, index: np.ndarray) -> Split:
    return Split(normalize.standardize(images, mean, std), labels, index)

  train, val = splits.hold_out(
      make(raw.train_images, raw.train_labels, raw.train_index), val_per_class, split_seed,
      per_class=True)
  return Dataset(
      name=spec.name,
      train=train,
      val=val,
      test=make(raw.test_images, raw.test_labels, raw.test_index),
      num_classes=spec.num_classes,
      class_names=raw.class_names,
      pad_value=normalize.black_pixel(mean, std),
  )


def _load(spec: CifarSpec, data_dir: Optional[str], split_seed: int, source: str,
          val_per_class: Optional[int]) -> Dataset:
  raw = read_raw(spec, data_dir, source)
  if val_per_class is None:
    val_per_class = spec.val_per_class
  return build_dataset(spec, raw, split_seed, val_per_class)


@DATASETS.register("cifar10")
def load_cifar10(data_dir: Optional[str], split_seed: int, source: str = "auto",
                 val_per_class: Optional[int] = None) -> Dataset:
  """CIFAR-10: 45k train / 5k val (500 per class, seeded) / 10k test, x [32, 32, 3].

  Args:
    data_dir: folder with the python archive or a TFDS ArrayRecord build.
    split_seed: seed of the per-class validation draw.
    source: 'auto' (archive, then TFDS), 'archive' or 'tfds'.
    val_per_class: validation images per class (default 500).
  """
  return _load(CIFAR10, data_dir, split_seed, source, val_per_class)


@DATASETS.register("cifar100")
def load_cifar100(data_dir: Optional[str], split_seed: int, source: str = "auto",
                  val_per_class: Optional[int] = None) -> Dataset:
  """CIFAR-100 (fine labels): 45k train / 5k val (50 per class, seeded) / 10k test.

  Args:
    data_dir: folder with the python archive or a TFDS ArrayRecord build.
    split_seed: seed of the per-class validation draw.
    source: 'auto' (archive, then TFDS), 'archive' or 'tfds'.
    val_per_class: validation images per class (default 50).
  """
  return _load(CIFAR100, data_dir, split_seed, source, val_per_class)
