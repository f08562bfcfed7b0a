"""Many devices and many hosts, through JAX's own distributed runtime.

Data parallelism splits every batch over the devices of a mesh. Each device runs
forward and backward on its rows; then the gradients must be *summed across
devices*, because the loss is a sum over all the rows of the batch::

    J = Σ_d s_d · J_d,   s_d = W_d / W        (W_d: the weight of device d's rows, W = Σ_d W_d)
    ∂J/∂θ = Σ_d s_d · ∂J_d/∂θ                 (one all-reduce, lax.psum, per step)

For hand-written backprop that all-reduce is written out below
(``value_and_grad``): each device seeds its backward pass with s_d instead of 1,
so its cotangents are already those of the global J, and ``lax.psum`` adds the
devices' gradients inside ``shard_map``. Padded rows (the masked last batch, or
rows added so B splits evenly) weigh 0 and add nothing; a device holding only
padding has s_d = 0. Batch norm reduces its statistics over the same axis (sync
batch norm, ``gdlab.layers.batch_norm``), so the devices normalise with the
statistics of the whole batch. For ``jax.grad`` the same epoch is compiled
with the batch sharded over the mesh and XLA inserts the all-reduce itself.

Every device holds the whole data set (each process puts it on its own devices)
and the same replicated ``TrainState``; the batch plan of an epoch (the shuffle)
is computed identically everywhere and each device gathers its own columns. So a
run on D devices follows the one-device run update for update, up to the order of
floating-point sums. The one difference: dropout draws its mask per device (the
step's key folded with the device index).

Sweeps split their configurations instead (``sweep_program``): each device
trains its share of the learning rates, with no communication at all.

Across hosts, ``initialize`` starts ``jax.distributed``; after it, ``jax.devices()``
lists every process's devices and the same programs run on the global mesh.
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gdlab import backprop, train
from gdlab.layers import Layer
from gdlab.layers.normalization import DATA_AXIS
from gdlab.losses import Loss
from gdlab.records import first_line

DATA = DATA_AXIS
"""The mesh axis a batch is split over (and batch norm's statistics are summed over)."""

CONFIGS = "configs"
"""The mesh axis a sweep's configurations are split over."""

DEFAULT_TIMEOUT = 60
"""Seconds ``initialize`` waits for every process to reach the coordinator."""


class DistributedError(RuntimeError):
    """``jax.distributed`` could not start (unreachable coordinator, bad process id)."""


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, timeout: int = DEFAULT_TIMEOUT,
               heartbeat: int | None = None) -> None:
    """Join a multi-process run: ``jax.distributed.initialize`` with a timeout.

    With no arguments, jax detects the cluster itself (SLURM, Open MPI, Kubernetes,
    Cloud TPU); otherwise give all three. Must run before any other jax call.
    Raises ``ValueError`` for inconsistent arguments and ``DistributedError`` when
    the coordinator cannot be reached within ``timeout`` seconds, or process 0
    cannot serve it: checked before jax starts, which would abort the process.
    (Process 0 waiting for a process that never comes is jax's own timeout.)
    ``heartbeat``: seconds after which a process that stopped answering (killed outright)
    is declared lost and the others are aborted; None keeps jax's default (100).
    """
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError("coordinator_address, num_processes and process_id go together: "
                         "give all three, or none to let jax detect the cluster")
    if num_processes is not None and (num_processes < 1 or not 0 <= process_id < num_processes):
        raise ValueError(f"process_id must be in 0..{num_processes - 1} (num_processes), "
                         f"got {process_id}")
    if coordinator_address is not None:  # jax aborts the process on these: check first
        host, port = _address(coordinator_address)
        if process_id == 0:
            _check_free(host, port)
        else:
            _wait_for_coordinator(host, port, timeout)
    try:
        jax.distributed.initialize(
            coordinator_address, num_processes, process_id, initialization_timeout=timeout,
            **({} if heartbeat is None else {"heartbeat_timeout_seconds": heartbeat}))
    except (RuntimeError, ValueError) as e:  # jax reports a timeout as a RuntimeError
        first = first_line(e)
        if coordinator_address is None:  # detection found no cluster: nothing timed out
            raise DistributedError(f"jax found no cluster to join ({first}); outside "
                                   f"SLURM, Open MPI or Kubernetes give coordinator_address, "
                                   f"num_processes and process_id") from None
        raise DistributedError(f"could not join the distributed run at {coordinator_address} "
                               f"within {timeout} s ({first})") from None


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"coordinator_address must be host:port, got {text!r}")
    return host, int(port)


def _check_free(host: str, port: int) -> None:
    """Process 0 serves the coordinator on ``port`` of ``host``: the host must be this
    machine and the port free."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise DistributedError(f"the coordinator's host {host!r} cannot be resolved "
                               f"({getattr(e, 'strerror', None) or e})") from None
    with socket.socket(family) as s:
        try:
            s.bind((address[0], 0, *address[2:]))  # any port: is the address this machine's?
        except OSError:
            raise DistributedError(f"process 0 serves the coordinator, so it must run on {host} "
                                   f"({address[0]} is not an address of this machine)") from None
    with socket.socket() as s:
        try:
            s.bind(("", port))
        except OSError as e:
            raise DistributedError(f"process 0 cannot serve the coordinator on port {port} "
                                   f"({e.strerror})") from None


HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
"""An HTTP/2 client's preface and an empty SETTINGS frame: a gRPC server (jax's
coordinator) answers with a SETTINGS frame of its own."""


def _speaks_grpc(host: str, port: int) -> bool | None:
    """None when nothing listens at ``host:port``; else whether what listens answers as an
    HTTP/2 (gRPC) server would: another program holding the port does not."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as s:
            try:
                s.sendall(HTTP2_HELLO)
                reply = s.recv(9)  # a frame's header: its type is the fourth byte
            except OSError:
                return False
            return len(reply) >= 4 and reply[3] == 4
    except OSError:
        return None


def _wait_for_coordinator(host: str, port: int, timeout: float) -> None:
    """Wait until process 0's coordinator answers, at most ``timeout`` s. Something else
    on the port (jax would abort this process with a C++ stack) is a DistributedError."""
    deadline = time.monotonic() + timeout
    while True:
        answer = _speaks_grpc(host, port)
        if answer:
            return
        if time.monotonic() > deadline:
            if answer is None:
                raise DistributedError(f"the coordinator at {host}:{port} did not answer within "
                                       f"{timeout:g} s (is process 0 running?)")
            raise DistributedError(f"what listens at {host}:{port} is not jax's coordinator "
                                   f"(another program holds the port?); start every process "
                                   f"with a free --coordinator_address port")
        time.sleep(0.2)


def make_mesh(devices: int | None = None, axis: str = DATA) -> Mesh:
    """A 1-D mesh over the first ``devices`` devices (all of them when None; across all
    processes after ``initialize``). ``ValueError`` when more are asked for than exist."""
    available = jax.devices()
    n = len(available) if devices is None else devices
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= len(available):
        raise ValueError(f"devices must be an integer in 1..{len(available)} (the devices jax "
                         f"sees on {jax.default_backend()}), got {devices!r}")
    return Mesh(np.asarray(available[:n]), (axis,))


def replicate(tree, mesh: Mesh):
    """Every leaf of ``tree`` (the same values on every process) as one array replicated
    on all devices of ``mesh``; each process places only its own devices' copies."""
    sharding = NamedSharding(mesh, P())

    def place(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:  # already global
            return jax.jit(lambda a: a, out_shardings=sharding)(leaf)
        value = np.asarray(leaf)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree.map(place, tree)


def shard_rows(array, mesh: Mesh):
    """``array`` (the same on every process) split along its first axis over ``mesh``'s one
    axis; the length must be a multiple of the device count."""
    value = np.asarray(array)
    sharding = NamedSharding(mesh, P(mesh.axis_names[0]))
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def fetch(tree):
    """``tree`` as numpy arrays on this host: a replicated array's local copy, or every
    process's shards gathered."""
    from jax.experimental import multihost_utils

    def get(leaf):
        if not isinstance(leaf, jax.Array) or leaf.is_fully_addressable:
            return np.asarray(leaf)
        if leaf.is_fully_replicated:
            return np.asarray(leaf.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))

    return jax.tree.map(get, tree)


def padded_batch_size(batch_size: int, devices: int) -> int:
    """B rounded up to a multiple of the device count: the extra rows are masked padding."""
    return math.ceil(batch_size / devices) * devices


def value_and_grad(model: Layer, loss: Loss, *, axis: str = DATA) -> backprop.ValueAndGrad:
    """Hand-written backprop on this device's rows, then the all-reduce, written out.

    Run inside ``shard_map`` over ``axis``. Same signature and result as
    ``backprop.manual`` on the whole batch: the global J and ∂J/∂θ on every device.
    """

    def vg(params, state, x, y, weights=None, *, key=None, train=False):
        if key is not None:  # each device draws its own dropout mask
            key = jax.random.fold_in(key, jax.lax.axis_index(axis))
        preds, new_state, residuals = model.forward(params, state, x, key=key, train=train,
                                                    weights=weights)
        w = (jnp.ones(x.shape[0]) if weights is None else weights).astype(preds.dtype)
        local = jnp.sum(w)                               # W_d
        share = local / jax.lax.psum(local, axis)        # s_d = W_d / W
        # J_d, the weighted mean over this device's rows (any weights when all are padding:
        # then s_d = 0 and nothing flows back)
        value, loss_res = loss.forward(preds, y, jnp.where(local > 0, w, jnp.ones_like(w)))
        dpreds = loss.backward(loss_res, share)          # s_d·∂J_d/∂preds = ∂J/∂preds
        grads, _ = model.backward(params, residuals, dpreds)         # this device's rows
        grads = jax.tree.map(lambda g: jax.lax.psum(g, axis), grads)  # all-reduce: Σ_d
        return (jax.lax.psum(share * value, axis), new_state), grads

    return vg


def make_epoch(model: Layer, loss: Loss, optimizer, mesh: Mesh, *, num_examples: int,
               batch_size: int, grad: str = "manual", shuffle: bool = True,
               blowup: float | None = train.DEFAULT_BLOWUP, norms: bool = False,
               unroll: int | None = None, compute_dtype=None) -> Callable:
    """``train.make_epoch`` on every device of ``mesh`` (axis ``DATA``), each step's batch
    split over the devices: ``epoch(state, x, y) -> (state, EpochMetrics)`` with the state
    and the data replicated on the mesh (``replicate``). Jit it (donating the state).

    ``grad="manual"``: ``shard_map``; each device gathers its columns of the batch plan
    and the gradients meet in the explicit ``lax.psum`` of ``value_and_grad``.
    ``"autodiff"`` / ``"custom_vjp"``: the one-device epoch with the batch plan sharded
    over the mesh; XLA partitions the step and adds the all-reduce.
    A batch size that does not split evenly is padded with masked rows. ``compute_dtype``:
    mixed precision (``backprop.mixed_precision``); the all-reduce then sums gradients of
    that dtype.
    """
    if DATA not in mesh.axis_names:
        raise ValueError(f"the mesh needs an axis named {DATA!r}, got {mesh.axis_names}")
    devices = mesh.shape[DATA]
    width = padded_batch_size(batch_size, devices)
    per_device = width // devices

    def pad(indices, weights):  # (steps, B) -> (steps, B'), the new columns weigh 0
        extra = width - indices.shape[1]
        return (jnp.pad(indices, ((0, 0), (0, extra))), jnp.pad(weights, ((0, 0), (0, extra))))

    if grad != "manual":
        plan = NamedSharding(mesh, P(None, DATA))

        def sharded(indices, weights):
            indices, weights = pad(indices, weights)
            return (jax.lax.with_sharding_constraint(indices, plan),
                    jax.lax.with_sharding_constraint(weights, plan))

        return train.make_epoch(model, loss, optimizer, num_examples=num_examples,
                                batch_size=batch_size, grad=grad, shuffle=shuffle, blowup=blowup,
                                norms=norms, unroll=unroll, compute_dtype=compute_dtype,
                                place_batches=sharded)

    def my_columns(indices, weights):
        indices, weights = pad(indices, weights)
        start = jax.lax.axis_index(DATA) * per_device
        return (jax.lax.dynamic_slice_in_dim(indices, start, per_device, axis=1),
                jax.lax.dynamic_slice_in_dim(weights, start, per_device, axis=1))

    vg = (value_and_grad(model, loss) if compute_dtype is None else
          backprop.mixed_precision(value_and_grad, model, loss, compute_dtype))
    local = train.make_epoch(model, loss, optimizer, num_examples=num_examples,
                             batch_size=batch_size, grad=grad, shuffle=shuffle, blowup=blowup,
                             norms=norms, unroll=unroll, value_and_grad=vg,
                             place_batches=my_columns)
    # After the psum every device holds the same state and metrics: replicated outputs.
    return jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P()), out_specs=(P(), P()),
                         check_vma=False)


def configs_mesh(mesh: Mesh) -> Mesh:
    """The devices of ``mesh`` as a 1-D mesh over the ``CONFIGS`` axis."""
    return Mesh(np.asarray(mesh.devices).reshape(-1), (CONFIGS,))


def sweep_program(run: Callable, mesh: Mesh) -> Callable:
    """``run(lrs, keys, x, y)`` vmapped over configurations, each device of ``mesh`` taking
    an equal share (the caller pads K to a multiple of the device count, and places the
    inputs with ``configs_mesh``). Jit it."""
    configs = configs_mesh(mesh)
    return jax.shard_map(jax.vmap(run, in_axes=(0, 0, None, None)), mesh=configs,
                         in_specs=(P(CONFIGS), P(CONFIGS), P(), P()), out_specs=P(CONFIGS),
                         check_vma=False)
