"""Bundled and generated data sets, and loaders for the user's own files.

``load(name, ...)`` returns a :class:`Dataset`: float32 features ``(N, D)``
standardised on the training split, int32 labels ``(N,)`` for classification
or float32 targets ``(N, K)`` for regression, and an ``info`` dict of extras.
Nothing is ever downloaded.

========= ============== ========================================================
name      task           source
========= ============== ========================================================
digits    classification scikit-learn's bundled 8×8 digits, 64 features, 10 classes
houses    regression     generated house prices with known coefficients (target in 100k)
diabetes  regression     scikit-learn's bundled diabetes, 10 features, target standardised
moons     classification scikit-learn's ``make_moons``, 2-D, 2 classes
spirals   classification generated 3-arm spiral, 2-D, 3 classes
mnist     classification IDX files in ``data_dir``, 784 features, 10 classes
csv       either         the user's table at ``csv_path``, ``target`` column
npz       either         the user's arrays at ``npz_path``: features or images, labels or targets
images    classification the user's image files in ``data_dir``, a subfolder per class
sort      classification generated integer sequences and their sorted order, per token
========= ============== ========================================================

Images (digits, mnist, images, npz images) load flattened, ``(N, H·W·C)``;
:func:`as_images` gives the same data as ``(N, H, W, C)`` for convolutions.
:func:`preview_images` gives an image folder's :class:`DataShape` (counts, classes,
image shape) from its file names and a sample of headers, before any image is decoded.
``sort`` gives int32 token ids ``(N, T)``.

The split, standardisation and dtype rules are stated once, in ``gdlab.data.base``.
Bad data or arguments raise :class:`DataError` (a ``ValueError``) whose message is
one sentence naming the file or argument.
"""

from __future__ import annotations

from collections.abc import Sequence

from gdlab.data.arrays import load_npz
from gdlab.data.base import (
    SCALINGS,
    DataError,
    DataShape,
    DataWarning,
    Dataset,
    as_images,
    describe,
    fit_standardizer,
    from_arrays,
    from_split,
    split_indices,
)
from gdlab.data.bundled import load_diabetes, load_digits
from gdlab.data.images import load_images, preview_images
from gdlab.data.mnist import load_mnist, read_idx, write_idx
from gdlab.data.sequences import load_sort
from gdlab.data.synthetic import load_houses, load_moons, load_spirals
from gdlab.data.tables import load_csv

__all__ = [
    "DATASETS",
    "SCALINGS",
    "DataError",
    "DataShape",
    "DataWarning",
    "Dataset",
    "as_images",
    "describe",
    "fit_standardizer",
    "from_arrays",
    "from_split",
    "load",
    "load_csv",
    "load_diabetes",
    "load_digits",
    "load_houses",
    "load_images",
    "load_mnist",
    "load_moons",
    "load_npz",
    "load_sort",
    "load_spirals",
    "preview_images",
    "read_idx",
    "split_indices",
    "write_idx",
]

DATASETS = ("digits", "houses", "diabetes", "moons", "spirals", "mnist", "images", "csv", "npz",
            "sort")

# The optional arguments of `load` (those whose "not given" value is None) that each
# data set uses; giving one a data set does not use is an error, not silently ignored.
_USES = {
    "digits": (),
    "houses": ("n", "noise", "standardize_target"),
    "diabetes": ("standardize_target",),
    "moons": ("n", "noise"),
    "spirals": ("n", "noise"),
    "mnist": ("data_dir", "n"),
    "images": ("data_dir", "size"),
    "csv": ("csv_path", "target", "task", "standardize_target", "drop"),
    "npz": ("npz_path", "task", "standardize_target"),
    "sort": ("n", "length", "vocab"),
}


def load(
    name: str,
    *,
    seed: int = 0,
    data_dir: str | None = None,
    csv_path: str | None = None,
    npz_path: str | None = None,
    target: str | None = None,
    n: int | None = None,
    noise: float | None = None,
    test_fraction: float = 0.2,
    task: str | None = None,
    standardize: bool | str = True,
    standardize_target: bool | None = None,
    length: int | None = None,
    vocab: int | None = None,
    drop: str | Sequence[str] | None = None,
    size: tuple[int, int] | None = None,
) -> Dataset:
    """Load data set ``name`` (one of ``DATASETS``).

    Args:
      name: which data set.
      seed: fixes the train/test split (and the points of generated sets). mnist
        ignores it: its split is the files'.
      data_dir: mnist: the folder holding the four IDX files; images: the folder with a
        subfolder of image files per class (or ``train/`` and ``test/`` ones).
      size: images only: ``(height, width)`` to resize every image to.
      csv_path, target, drop: csv only: the file, the column to predict, and the
        names of columns to leave out (ids, free text; one name may be given as a
        string). Text columns are one-hot
        features, or class labels when they are the target (``gdlab.data.tables``).
      npz_path: npz only: a ``numpy.savez`` file holding ``x`` and ``y`` (split by
        ``seed``), or ``x_train``, ``y_train``, ``x_test`` and ``y_test``
        (``gdlab.data.arrays``).
      task: csv and npz: ``"classification"``/``"regression"`` to override the task
        inferred from the target.
      n: houses, moons, spirals: number of points (defaults 1000, 1000, 1500);
        mnist: keep the first ``n`` training images.
      noise: houses (target noise std in 100k, default 0.1), moons (default 0.2),
        spirals (default 0.05): Gaussian noise std.
      test_fraction: share of rows in the test split (mnist ignores it).
      standardize: scale features with statistics of the training split: True is each
        data set's default (images: ``"global"``, one mean and std for all pixels;
        tables: ``"per_feature"``, with a scale floor), or name one of
        ``SCALINGS`` (``"per_pixel"`` standardises each pixel alone); False: none.
      standardize_target: regression only; ``None`` keeps the data set's default
        (houses False, diabetes True, csv True).
      length, vocab: sort only: tokens per sequence (default 8) and symbols (default 10);
        ``n`` is the number of sequences (default 12000).

    Raises:
      DataError: unknown ``name``, an argument ``name`` does not use, or bad data.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    given = {"data_dir": data_dir, "csv_path": csv_path, "npz_path": npz_path,
             "target": target, "n": n,
             "noise": noise, "task": task, "standardize_target": standardize_target,
             "length": length, "vocab": vocab, "drop": drop, "size": size}
    for arg, value in given.items():
        if value is not None and arg not in _USES[name]:
            users = [d for d in DATASETS if arg in _USES[d]]
            raise DataError(f"dataset '{name}' does not use {arg} (got {value!r}); "
                            f"{arg} applies to: {', '.join(users)}")
    split = {"seed": seed, "test_fraction": test_fraction, "standardize": standardize}
    extra = {k: v for k, v in given.items() if v is not None}
    if name == "digits":
        return load_digits(**split)
    if name == "houses":
        return load_houses(**split, **extra)
    if name == "diabetes":
        return load_diabetes(**split, **extra)
    if name == "moons":
        return load_moons(**split, **extra)
    if name == "spirals":
        return load_spirals(**split, **extra)
    if name == "mnist":
        return load_mnist(data_dir, n=n, standardize=standardize)
    if name == "images":
        return load_images(data_dir, **split, size=size)
    if name == "sort":
        return load_sort(seed=seed, test_fraction=test_fraction, **extra)
    if name == "npz":
        return load_npz(npz_path, **split,
                        **{k: v for k, v in extra.items() if k != "npz_path"})
    return load_csv(csv_path, target, **split,
                    **{k: v for k, v in extra.items() if k not in ("csv_path", "target")})
