"""Optimizers written from scratch: ``Optimizer(init, update)``, ``apply_updates``, ``chain``.

::

    opt = optim.adam(1e-3)                       # or optim.get("adam", 1e-3)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = optim.apply_updates(params, updates)   # w ← w + u; u is already signed

Plain gradient descent is the seed rule ``w_new = w_old − α · ∂J/∂w``. Momentum uses
one convention throughout: ``v ← β·v + g`` and the step ``−α·v`` (Nesterov:
``−α·(g + β·v)``). A learning rate is a number or a schedule ``step -> lr``
(``gdlab.optim.schedules``), ``step`` being the int32 count of updates applied so far.
Weight decay, coupled (``add_weight_decay``, L2) or decoupled (``add_decayed_weights``;
``adamw``), reaches every leaf unless a ``mask`` says which: ``mask=optim.weights_only``
spares biases and normalisation parameters.
"""

from gdlab.optim import schedules
from gdlab.optim.base import (
    EmptyState,
    LearningRate,
    Optimizer,
    Schedule,
    apply_updates,
    chain,
    global_norm,
    learning_rate_at,
)
from gdlab.optim.factory import OPTIMIZERS, get
from gdlab.optim.optimizers import (
    AdagradState,
    AdamState,
    GDState,
    MomentumState,
    RMSPropState,
    adagrad,
    adam,
    adamw,
    gd,
    momentum,
    nesterov,
    rmsprop,
)
from gdlab.optim.schedules import (
    SCHEDULES,
    constant,
    cosine_decay,
    exponential_decay,
    get_schedule,
    inverse_time_decay,
    linear_warmup,
    piecewise_constant,
)
from gdlab.optim.transforms import (
    DecayState,
    Mask,
    add_decayed_weights,
    add_weight_decay,
    clip_by_global_norm,
    weights_only,
)

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "AdagradState",
    "AdamState",
    "DecayState",
    "EmptyState",
    "GDState",
    "LearningRate",
    "Mask",
    "MomentumState",
    "Optimizer",
    "RMSPropState",
    "Schedule",
    "adagrad",
    "adam",
    "adamw",
    "add_decayed_weights",
    "add_weight_decay",
    "apply_updates",
    "chain",
    "clip_by_global_norm",
    "constant",
    "cosine_decay",
    "exponential_decay",
    "gd",
    "get",
    "get_schedule",
    "global_norm",
    "inverse_time_decay",
    "learning_rate_at",
    "linear_warmup",
    "momentum",
    "nesterov",
    "piecewise_constant",
    "rmsprop",
    "schedules",
    "weights_only",
]
