"""``get(name, learning_rate, ...)``: an optimizer by name, for flags and configs."""

from __future__ import annotations

import inspect

import jax
import numpy as np

from gdlab.optim import optimizers
from gdlab.optim.base import LearningRate, Optimizer, chain, check_number
from gdlab.optim.transforms import Mask, add_weight_decay, clip_by_global_norm

OPTIMIZERS = ("gd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
"""Names ``get`` accepts."""

_BUILDERS = {
    "gd": optimizers.gd,
    "momentum": optimizers.momentum,
    "nesterov": optimizers.nesterov,
    "adagrad": optimizers.adagrad,
    "rmsprop": optimizers.rmsprop,
    "adam": optimizers.adam,
    "adamw": optimizers.adamw,
}


def _keyword_options(builder) -> tuple[str, ...]:
    """The builder's keyword options, less ``mask``: ``get`` takes it as ``weight_decay_mask``."""
    params = inspect.signature(builder).parameters.values()
    return tuple(p.name for p in params
                 if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "mask")


def get(
    name: str,
    learning_rate: LearningRate,
    *,
    momentum: float | None = None,
    weight_decay: float | None = None,
    weight_decay_mask: Mask = None,
    clip_norm: float | None = None,
    **options,
) -> Optimizer:
    """The optimizer called ``name`` (one of ``OPTIMIZERS``).

    Args:
      name: ``"gd"``, ``"momentum"``, ``"nesterov"``, ``"adagrad"``, ``"rmsprop"``,
        ``"adam"`` or ``"adamw"``.
      learning_rate: ``α``, a number or a schedule ``step -> α``.
      momentum: ``β`` for ``"momentum"`` and ``"nesterov"`` (their ``beta``); None
        keeps the default 0.9. An error for the other optimizers.
      weight_decay: for ``"adamw"``, its decoupled ``λ`` (None keeps the default
        1e-2). For the others, a value > 0 adds L2 regularisation,
        ``chain(add_weight_decay(weight_decay), opt)``; None or 0 adds nothing.
      weight_decay_mask: which leaves that decay reaches: None for every one, or a
        mask as in ``gdlab.optim.transforms`` (e.g. ``optim.weights_only``). An error
        when there is no decay to mask.
      clip_norm: when set, ``clip_by_global_norm(clip_norm)`` is chained first, so
        the raw gradient is clipped before any weight decay or step.
      **options: the optimizer's own keyword options (``eps=``, ``b1=``, ``decay=``, ...).

    Returns:
      The optimizer itself when nothing is chained, otherwise ``chain(clip?, l2?, opt)``
      (whose state is the tuple of the parts' states).

    Raises:
      ValueError: for an unknown name, an option the optimizer does not take, or a
        ``learning_rate`` / ``weight_decay`` / ``clip_norm`` that is not finite or is out
        of range (negative; ``clip_norm`` also 0). Traced values and schedules are not
        checked.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    builder = _BUILDERS[name]
    accepted = _keyword_options(builder)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"optimizer {name!r} takes no option {', '.join(unknown)}; its options are: "
            f"{', '.join(accepted) or 'none'}, plus momentum=, weight_decay=, "
            "weight_decay_mask=, clip_norm= where they apply"
        )
    if momentum is not None:
        if "beta" not in accepted:
            raise ValueError(f"momentum= applies to 'momentum' and 'nesterov' only, not {name!r}")
        if "beta" in options:
            raise ValueError("give the momentum coefficient once: momentum= or beta=, not both")
        options["beta"] = momentum
    check_number("learning_rate", learning_rate, schedule=True)  # a traced value passes as it is
    if weight_decay is not None:
        check_number("weight_decay", weight_decay)
    if clip_norm is not None:
        check_number("clip_norm", clip_norm, low_open=True)

    l2 = False
    no_decay = (weight_decay is not None and not isinstance(weight_decay, jax.core.Tracer)
                and np.ndim(weight_decay) == 0 and float(weight_decay) == 0.0)
    if "weight_decay" in accepted:  # adamw: decoupled decay inside the optimizer (None: its
        if weight_decay is not None:  # own default λ)
            options["weight_decay"] = weight_decay
        if weight_decay_mask is not None:
            options["mask"] = weight_decay_mask  # adamw's own name for it
    else:
        l2 = weight_decay is not None and not no_decay
    if weight_decay_mask is not None and (no_decay or not (l2 or "weight_decay" in accepted)):
        raise ValueError(f"weight_decay_mask needs a weight decay to mask: give {name!r} "
                         "a weight_decay > 0")

    transforms = []
    if clip_norm is not None:
        transforms.append(clip_by_global_norm(clip_norm))
    if l2:
        transforms.append(add_weight_decay(weight_decay, mask=weight_decay_mask))
    opt = builder(learning_rate, **options)
    if not transforms:
        return opt
    return chain(*transforms, opt)
