"""Devices: one place that decides how particles, chains, simulations and data batches are
spread over the accelerators, for every runner's ``devices=`` argument.

The programs stay single global computations (JAX's GSPMD): an array whose leading axis is
placed with :func:`leading_sharding` is split over the devices, and XLA inserts the
communication (a resampling gather, a sum over particles). Independent items (chains,
simulations) never communicate, so sharding them changes nothing but where they run; particle
methods reduce over the axis, so N devices agree with one device up to float reduction order.

In a multi-process run (:func:`initialize_distributed`) the devices are every process's, each
process runs the same program on its share, and :func:`to_host` gathers a result.

``devices`` is, everywhere: ``None`` — every device; an int ``k`` — the first ``k`` (``1``:
no sharding); a sequence of ``jax.Device``; or a ``jax.sharding.Mesh`` with one axis.

>>> sharding = leading_sharding(1024, devices=None)         # doctest: +SKIP
>>> particles = jax.device_put(particles, sharding)          # doctest: +SKIP
"""

import jax
import numpy as np

from probinfer.errors import ProbinferError

__all__ = [
    "mesh",
    "leading_sharding",
    "shard_leading",
    "constrain_leading",
    "num_devices",
    "devices_used",
    "to_host",
    "initialize_distributed",
]

AXIS = "items"


def mesh(devices=None):
    """A one-axis ``Mesh`` over ``devices`` (see the module docstring for the accepted forms)."""
    if isinstance(devices, jax.sharding.Mesh):
        if len(devices.axis_names) != 1:
            raise ProbinferError(
                f"devices= takes a one-axis mesh, got axes {devices.axis_names}; build one with "
                "probinfer.devices.mesh(...)."
            )
        return devices
    local = jax.devices()  # every process's devices: one process's own in a single-process run
    if devices is None:
        chosen = local
    elif isinstance(devices, (int, np.integer)):
        if not 1 <= int(devices) <= len(local):
            raise ProbinferError(
                f"devices={devices}, but the run has {len(local)} device(s); pass a number "
                f"between 1 and {len(local)}, a list of devices or None for all."
            )
        chosen = local[: int(devices)]
    else:
        chosen = list(devices)
        if not chosen:
            raise ProbinferError("devices= is an empty list; pass None to use every device.")
    return jax.sharding.Mesh(np.array(chosen), (AXIS,))


def num_devices(devices=None):
    """How many devices ``devices`` names."""
    return mesh(devices).devices.size


def leading_sharding(size, devices=None):
    """A ``NamedSharding`` splitting a leading axis of ``size`` over the devices, or None when
    there is one device or ``size`` is not a multiple of their number (then everything stays on
    one device: the result is the same, only slower)."""
    grid = mesh(devices)
    count = grid.devices.size
    if count < 2 or int(size) % count:
        return None
    return jax.sharding.NamedSharding(grid, jax.sharding.PartitionSpec(grid.axis_names[0]))


def devices_used(size, devices=None):
    """How many devices a leading axis of ``size`` is spread over (1 when it stays on one), as
    runners record it in ``Posterior.settings["devices"]``."""
    return 1 if leading_sharding(size, devices) is None else num_devices(devices)


def shard_leading(tree, devices=None):
    """``device_put`` every leaf of ``tree`` with its leading axis split over the devices (leaves
    stay where they are when the axis does not divide evenly)."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return tree
    sharding = leading_sharding(np.shape(leaves[0])[0], devices)
    return tree if sharding is None else jax.device_put(tree, sharding)


def constrain_leading(tree, sharding):
    """Inside a jitted program: keep the leading axis split by ``sharding`` (None: no-op)."""
    if sharding is None:
        return tree
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def initialize_distributed(coordinator_address=None, num_processes=None, process_id=None):
    """Join a multi-process (multi-host) run through JAX's multi-controller runtime,
    ``jax.distributed.initialize``; call it before any computation. With no arguments JAX reads
    the cluster's environment (Slurm, Open MPI, Kubernetes, Cloud TPU). On CPU the processes
    exchange data through gloo. Afterwards ``devices=None`` means every device of every process.

    >>> initialize_distributed("localhost:12345", num_processes=2, process_id=0)  # doctest: +SKIP
    """
    if jax.distributed.is_initialized():
        return
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, ValueError):  # an older JAX without the option: its default
        pass
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )


def to_host(x):
    """``x`` (an array or a pytree of them) as NumPy arrays on this host. An array split over
    several processes is gathered from all of them (a collective: in a multi-process run every
    process must call it at the same point)."""

    def one(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            if leaf.is_fully_replicated:
                return np.asarray(leaf.addressable_data(0))
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(leaf)

    return jax.tree.map(one, x)
