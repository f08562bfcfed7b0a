"""Shared bookkeeping for sliding-window layers (convolution, pooling).

Everything here is static Python on ints: it normalises the builders' arguments
once, checks them eagerly, and computes padding and output sizes exactly as
``jax.lax`` does (``lax.padtype_to_pads``), so the layers never pass padding
strings to lax and their hand-written backward passes see the same numbers.
"""

from __future__ import annotations

import operator

Pair = tuple[int, int]
Padding = str | tuple[Pair, Pair]
"""Normalised padding: ``"SAME"``, ``"VALID"`` or ``((top, bottom), (left, right))``."""

PADDING_STRINGS = ("SAME", "VALID")


def _int(value, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an int, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be an int, got {value!r}") from None


def positive_int(value, what: str) -> int:
    """``value`` as an int of at least 1."""
    v = _int(value, what)
    if v < 1:
        raise ValueError(f"{what} must be at least 1, got {value!r}")
    return v


def pair(value, what: str, *, minimum: int = 1) -> Pair:
    """An int or a pair of ints as ``(height, width)``, each at least ``minimum``."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")
        out = (_int(value[0], what), _int(value[1], what))
    else:
        v = _int(value, what)
        out = (v, v)
    if min(out) < minimum:
        raise ValueError(f"{what} must be at least {minimum}, got {value!r}")
    return out


def normalize_padding(padding) -> Padding:
    """``"SAME"``/``"VALID"`` (any case), an int ``p`` (``p`` on all four sides), or
    ``((top, bottom), (left, right))``, as ``"SAME"``, ``"VALID"`` or the explicit pairs."""
    usage = "padding must be 'SAME', 'VALID', an int or ((top, bottom), (left, right))"
    if isinstance(padding, str):
        if padding.upper() not in PADDING_STRINGS:
            raise ValueError(f"unknown padding {padding!r}: {usage}")
        return padding.upper()
    if isinstance(padding, tuple | list):
        if len(padding) != 2 or not all(isinstance(p, tuple | list) and len(p) == 2
                                        for p in padding):
            raise ValueError(f"{usage}, got {padding!r}")
        pads = tuple(pair(p, "padding", minimum=0) for p in padding)
        return pads  # type: ignore[return-value]
    p = pair(padding, "padding", minimum=0)[0]
    return ((p, p), (p, p))


def dilated(size: int, dilation: int) -> int:
    """Extent of ``size`` taps spaced ``dilation`` apart: 1 + dilation·(size − 1)."""
    return 1 + dilation * (size - 1)


def padding_pairs(padding: Padding, in_hw: Pair, window_hw: Pair,
                  strides: Pair) -> tuple[Pair, Pair]:
    """Explicit ``((top, bottom), (left, right))`` for an input ``in_hw`` and a (dilated)
    window ``window_hw``. SAME pads ``max((⌈n/s⌉ − 1)·s + k − n, 0)`` in total, the odd one
    at the end (bottom/right), as ``lax.padtype_to_pads`` does; VALID pads nothing."""
    if padding == "VALID":
        return ((0, 0), (0, 0))
    if padding == "SAME":
        pads = []
        for n, k, s in zip(in_hw, window_hw, strides):
            out = -(-n // s)  # ⌈n/s⌉
            total = max((out - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)  # type: ignore[return-value]
    return padding  # type: ignore[return-value]


def output_hw(in_hw: Pair, window_hw: Pair, strides: Pair, pads: tuple[Pair, Pair]) -> Pair:
    """Number of window positions per spatial axis: ⌊(n + lo + hi − k)/s⌋ + 1."""
    return tuple((n + lo + hi - k) // s + 1  # type: ignore[return-value]
                 for n, k, s, (lo, hi) in zip(in_hw, window_hw, strides, pads))


def check_image_shape(name: str, in_shape) -> tuple[int, int, int]:
    """``in_shape`` as ``(H, W, C)``; a ValueError unless it is 3-D with positive sizes."""
    in_shape = tuple(in_shape)
    if len(in_shape) != 3:
        raise ValueError(f"{name} needs image inputs (H, W, C), got {in_shape}")
    if min(in_shape) < 1:
        raise ValueError(f"{name} needs positive input sizes (H, W, C), got {in_shape}")
    return in_shape  # type: ignore[return-value]


def check_window_fits(name: str, what: str, in_hw: Pair, window_hw: Pair,
                      pads: tuple[Pair, Pair]) -> None:
    """A ValueError when the (dilated) window exceeds the padded input along either axis."""
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(in_hw, pads))
    if any(k > p for k, p in zip(window_hw, padded)):
        raise ValueError(f"{name}: the {what} {window_hw[0]}x{window_hw[1]} is larger than the "
                         f"padded input {padded[0]}x{padded[1]}")


def check_image_batch(name: str, x) -> None:
    """A ValueError unless ``x`` is a batch of images, (B, H, W, C)."""
    if x.ndim != 4:
        raise ValueError(f"{name} needs a batch of images (B, H, W, C), got shape {x.shape}")


def check_batch_fits(name: str, what: str, x, window_hw: Pair, pads_for) -> tuple[Pair, Pair]:
    """``forward``'s check of a batch ``x``, as ``init``'s of one example's shape: a
    ValueError unless x is (B, H, W, C) with the window inside the padded image (a smaller
    image would give an empty output, silently); returns the padding. Shapes are static,
    so the check costs nothing once traced."""
    check_image_batch(name, x)
    pads = pads_for(x.shape[1:3])
    check_window_fits(name, what, x.shape[1:3], window_hw, pads)
    return pads
