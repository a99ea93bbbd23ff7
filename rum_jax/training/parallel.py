"""Models as one program: shard_map across devices, vmap (or a loop) over models inside each.

A model slot is one model of a program: a seed of a run, a grid point's seed in a sweep, a
member of a memorization or shadow bank.

A `ModelRunner` owns a 1-D mesh with axis "models". Per-model pytrees (states, plans) have a
leading model axis and are split across devices; shared inputs (the data) are replicated.
Inside a device, groups of `vmap_size` models run as one vmapped batch and the groups run
one after another in the same program (`jax.lax.map`). On accelerators the default vmaps
all of a device's models; on CPUs it runs them one at a time, because each model's small
program then stays in the core's cache: training 64 MLPs (bench/memorization.py) is 1.4-1.7x
faster that way than with each device's 32 models vmapped, and XLA's CPU convolutions gain
nothing from a batch of models either. With only a few models per device the two are close
(3 seeds of a study's scrub run: vmapping them was ~10% faster; groups of 2 or 4 train the
64 MLPs as fast as a loop), so `vmap_size` is worth setting for such runs. Multi-host runs
join their cluster first (`rum_jax.runtime`); every process builds the same host arrays, so
`make_array_from_callback` takes its part.

Compiled programs are kept per runner by `ModelRunner.compiled(factory, *args)`: the factory
(a module-level function) and its hashable arguments are the key, so a program is traced and
compiled once per runner however many runs use it (memorization chunks, resumed runs,
benchmarks).
"""
import math
from typing import Any, Callable, Dict, Hashable, Sequence, Tuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "models"

class ModelRunner:
  """Runs per-model functions for `num_models` model slots, vmapped and sharded over devices.

  The number of models is padded up to a multiple of the devices used; padded models compute
  real (discarded) work, so the first `num_models` results never depend on the padding.
  """

  def __init__(self, num_models: int, devices: Sequence[Any] = None, vmap_size: int = 0):
    """vmap_size: models vmapped together on a device; 0 = 1 on CPUs, all on accelerators."""
    if num_models < 1:
      raise ValueError(f"num_models must be >= 1, got {num_models}")
    if vmap_size < 0:
      raise ValueError(f"vmap_size must be >= 0 (0 = automatic), got {vmap_size}")
    devices = list(devices if devices is not None else jax.devices())
    n_dev = min(len(devices), num_models)
    self.num_models = num_models
    self.padded_models = math.ceil(num_models / n_dev) * n_dev
    self.mesh = Mesh(np.array(devices[:n_dev]), (AXIS,))
    self._seeded = NamedSharding(self.mesh, P(AXIS))
    self._shared = NamedSharding(self.mesh, P())
    self._programs: Dict[Tuple[Callable, Tuple[Hashable, ...]], Any] = {}
    per_device = self.padded_models // n_dev
    if vmap_size == 0:
      vmap_size = 1 if devices[0].platform == "cpu" else per_device
    self.vmap_size = min(vmap_size, per_device)

  def compiled(self, factory: Callable[..., Any], *args: Hashable) -> Any:
    """factory(self, *args), built once per (factory, args) and reused.

    `factory` is a module-level function and `args` hashable (models' Forward objects,
    optax transformations, loss functions, numbers, frozen dataclasses), so equal requests
    share one compiled program.
    """
    key = (factory, args)
    if key not in self._programs:
      self._programs[key] = factory(self, *args)
    return self._programs[key]

  @property
  def num_devices(self) -> int:
    """Devices the seeds are split over."""
    return self.mesh.size

  def _put(self, x: Any, sharding: NamedSharding) -> jax.Array:
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  def pad(self, tree: Any) -> Any:
    """Host pytree with leading axis num_models -> padded_models (copies of seed 0 appended);
    already padded leaves pass through."""
    def pad_leaf(x):
      x = np.asarray(x)
      if x.shape[0] == self.num_models and self.padded_models != self.num_models:
        x = np.concatenate([x, np.repeat(x[:1], self.padded_models - self.num_models, axis=0)])
      if x.shape[0] != self.padded_models:
        raise ValueError(f"leading axis {x.shape[0]} is neither num_models {self.num_models} "
                         f"nor padded_models {self.padded_models}")
      return x
    return jax.tree.map(pad_leaf, tree)

  def unpad(self, tree: Any) -> Any:
    """Host pytree with leading axis padded_models (or num_models) -> num_models: what is saved.

    Padding depends on the number of devices, so nothing written to disk keeps it: a run saved
    on N devices resumes on M."""
    return jax.tree.map(lambda x: np.asarray(x)[: self.num_models], tree)

  def shard(self, tree: Any) -> Any:
    """Host pytree with leading axis num_models (or padded_models) -> arrays split over devices."""
    return jax.tree.map(lambda x: self._put(x, self._seeded), self.pad(tree))

  def replicate(self, tree: Any) -> Any:
    """Host pytree -> arrays copied to every device (shared inputs such as the data)."""
    return jax.tree.map(lambda x: self._put(x, self._shared), tree)

  def abstract(self, tree: Any, seeded: bool = True) -> Any:
    """Shapes and dtypes of a pytree placed as `shard` (seeded, leading axis padded_models) or
    `replicate` would place it, for lowering a program without its data (jax.ShapeDtypeStruct)."""
    sharding = self._seeded if seeded else self._shared
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding), tree)

  def to_host(self, tree: Any, keep_padding: bool = False) -> Any:
    """Device pytree -> numpy on this host, padded seeds dropped unless keep_padding."""
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      tree = multihost_utils.process_allgather(tree, tiled=True)
    tree = jax.device_get(tree)
    if keep_padding:
      return jax.tree.map(np.asarray, tree)
    return jax.tree.map(lambda x: np.asarray(x)[: self.num_models], tree)

  def map(self, fn: Callable, n_seeded: int, donate: bool = False) -> Callable:
    """jit(shard_map(map of vmap(fn))): the first `n_seeded` args are per-seed, the rest shared.

    `fn` works on ONE seed; outputs are all per-seed. With `donate`, the first argument
    (the states) is donated, so the update happens in place.
    """
    def local(*args):
      seeded, shared = args[:n_seeded], args[n_seeded:]
      one_seed = lambda per_seed: fn(*per_seed, *shared)  # noqa: E731
      if self.vmap_size == 1:  # a plain loop: no batch axis of size 1 in the program
        return jax.lax.map(one_seed, seeded)
      return jax.lax.map(one_seed, seeded, batch_size=self.vmap_size)

    def wrapped(*args):
      specs = (P(AXIS),) * n_seeded + (P(),) * (len(args) - n_seeded)
      return jax.shard_map(local, mesh=self.mesh, in_specs=specs, out_specs=P(AXIS),
                           check_vma=False)(*args)
    return jax.jit(wrapped, donate_argnums=(0,) if donate else ())

  def seed_keys(self, base_seed: int, seed_ids: Sequence[int] = None) -> np.ndarray:
    """One PRNG key per (padded) model: fold_in(PRNGKey(base_seed), s), s = the model's seed
    (its position, unless `seed_ids` maps models to seeds, as in a sweep of settings)."""
    base = jax.random.PRNGKey(base_seed)
    ids = np.arange(self.padded_models) if seed_ids is None else np.asarray(seed_ids)
    return np.asarray(jax.vmap(lambda s: jax.random.fold_in(base, s))(ids))
