"""Any TensorFlow Datasets image classification set, read with `tfds.data_source`.

  --config.data.name=tfds --config.data.options.name=svhn_cropped --config.data.data_dir=...

reads an ArrayRecord build (no TensorFlow needed, nothing downloaded at run time) of the
TFDS data set `name`: its `train_split` (default "train") becomes train + val, its
`test_split` (default "test") the test split. Images must all have one shape [H, W, C]
(uint8 or float); labels come from a ClassLabel feature, which also gives the class names.

Original index: TFDS builders such as cifar10 and svhn_cropped give every example an id
`<split>_<k>`, k its position in the source files; then k is the index and the examples
are put back into that order (TFDS shuffles when it writes a build). Without such ids the
index is the record's position in the build, which is fixed for a given build.

Val: a stratified `val_fraction` of the train split drawn with `split_seed`. Inputs are
standardised per channel with the mean/std of the whole train split (train + val), so an
example's input does not depend on split_seed (LeCun et al. 1998, "Efficient BackProp",
Sec. 4.3).
"""
import re
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from rum_jax import optional
from rum_jax.data import normalize
from rum_jax.data import splits
from rum_jax.data.base import Dataset, Split
from rum_jax.data.catalog import DATASETS


def _missing_build_message(name: str, data_dir: Optional[str], detail: str) -> str:
  where = data_dir if data_dir else "~/tensorflow_datasets (TFDS default)"
  return (f"TFDS data set {name!r}: no ArrayRecord build in {where}, and nothing is downloaded "
          "at run time. On a machine with internet (building needs TensorFlow, reading does "
          f"not) run\n  tfds build {name} --file_format=array_record --data_dir=/path/to/data\n"
          "and set the config field data_dir to that folder "
          f"(--config.data.data_dir=/path/to/data).\nTFDS said: {detail}")


def original_index(examples: Sequence[dict], split: str) -> Tuple[np.ndarray, bool]:
  """(index per record, whether it came from ids): k of ids `<split>_<k>`, else positions."""
  ids = [example.get("id") for example in examples]
  pattern = re.compile(rf"{re.escape(split)}_(\d+)")
  ks = []
  for example_id in ids:
    if isinstance(example_id, bytes):
      example_id = example_id.decode()
    match = pattern.fullmatch(str(example_id)) if example_id is not None else None
    if match is None:
      break
    ks.append(int(match.group(1)))
  if len(ks) == len(ids) and len(set(ks)) == len(ks):
    return np.asarray(ks, dtype=np.int64), True
  return np.arange(len(examples), dtype=np.int64), False


def _read_split(source: Any, split: str, image_key: str, label_key: str,
                name: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(images, labels, original index) of one split, ordered by original index."""
  # Iterating reads one record at a time, which every TFDS data source supports.
  examples: List[dict] = list(source)
  if not examples:
    raise ValueError(f"TFDS data set {name!r}: split {split!r} is empty")
  missing = [k for k in (image_key, label_key) if k not in examples[0]]
  if missing:
    raise ValueError(f"TFDS data set {name!r} has no feature {missing[0]!r}; its features: "
                     f"{', '.join(sorted(examples[0]))} (set image_key / label_key)")
  index, from_ids = original_index(examples, split)
  if not from_ids:
    logging.warning("TFDS %s/%s has no ids of the form %s_<k>: the original index is the "
                    "record's position in this build", name, split, split)
  order = np.argsort(index, kind="stable")
  shapes = {np.shape(examples[i][image_key]) for i in order}
  if len(shapes) != 1:
    raise ValueError(f"TFDS data set {name!r}: images of {len(shapes)} different shapes "
                     f"(e.g. {sorted(shapes)[:2]}); this loader needs one fixed shape")
  images = np.stack([np.asarray(examples[i][image_key]) for i in order])
  if images.ndim == 3:  # [N, H, W] grey images without a channel axis
    images = images[..., None]
  if images.ndim != 4:
    raise ValueError(f"TFDS data set {name!r}: {image_key!r} is not an image [H, W, C], "
                     f"shape {images.shape[1:]}")
  labels = np.asarray([examples[i][label_key] for i in order], dtype=np.int64)
  return images, labels, index[order]


@DATASETS.register("tfds")
def load_tfds_images(data_dir: Optional[str], split_seed: int, name: Optional[str] = None,
                     train_split: str = "train", test_split: str = "test",
                     val_fraction: float = 0.1, image_key: str = "image",
                     label_key: str = "label") -> Dataset:
  """Loads the TFDS image classification data set `name` (see the module docstring).

  Args:
    data_dir: TFDS data folder holding the ArrayRecord build (None: TFDS's default).
    split_seed: seed of the validation split.
    name: TFDS name, optionally with config and version, e.g. "svhn_cropped" or "mnist:3.*.*".
    train_split / test_split: TFDS split names of the train and test sets.
    val_fraction: fraction of the train split held out as val (stratified).
    image_key / label_key: the features holding the image and the ClassLabel.

  Raises:
    ImportError: tensorflow-datasets is not installed.
    FileNotFoundError: no ArrayRecord build of `name` (says how to build one).
    ValueError: no name, missing features, images of varying shapes, bad labels.
  """
  if not name:
    raise ValueError("the tfds data set needs a TFDS name: --config.data.options.name=<name>, "
                     "e.g. svhn_cropped")
  tfds = optional.require("tensorflow_datasets", f"the tfds data set ({name!r})",
                          package="tensorflow-datasets")
  try:
    train_source, test_source = tfds.data_source(
        name, split=[train_split, test_split], data_dir=data_dir, download=False)
  except (NotImplementedError, FileNotFoundError, tfds.core.DatasetNotFoundError) as err:
    # A missing build surfaces as "random access ... FileFormat.TFRECORD is not supported"
    # (NotImplementedError): TFDS assumes TFRecord when nothing is prepared.
    raise FileNotFoundError(_missing_build_message(name, data_dir, str(err))) from err
  feature = train_source.dataset_info.features[label_key]
  if not hasattr(feature, "names"):
    raise ValueError(f"TFDS data set {name!r}: feature {label_key!r} is not a ClassLabel")
  class_names = tuple(str(c) for c in feature.names)
  num_classes = len(class_names)

  train_images, train_labels, train_index = _read_split(train_source, train_split, image_key,
                                                        label_key, name)
  test_images, test_labels, test_index = _read_split(test_source, test_split, image_key,
                                                     label_key, name)
  for labels in (train_labels, test_labels):
    if labels.min() < 0 or labels.max() >= num_classes:
      raise ValueError(f"TFDS data set {name!r}: labels outside 0..{num_classes - 1}")
  if train_images.shape[1:] != test_images.shape[1:]:
    raise ValueError(f"TFDS data set {name!r}: train images {train_images.shape[1:]} and test "
                     f"images {test_images.shape[1:]} differ in shape")

  mean, std = normalize.channel_stats(train_images)
  # A constant channel carries no information; std 1 maps it to 0 instead of dividing by 0.
  std = np.where(std > 0, std, 1.0)

  def make(images: np.ndarray, labels: np.ndarray, index: np.ndarray) -> Split:
    return Split(normalize.standardize(images, mean, std), labels.astype(np.int32), index)

  train, val = splits.hold_out(make(train_images, train_labels, train_index), val_fraction,
                               split_seed)
  return Dataset(
      name=name,
      train=train,
      val=val,
      test=make(test_images, test_labels, test_index),
      num_classes=num_classes,
      class_names=class_names,
      pad_value=normalize.black_pixel(mean, std),
  )
