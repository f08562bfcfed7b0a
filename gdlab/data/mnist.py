"""MNIST from IDX files the user already has: nothing is downloaded.

``data_dir`` must hold the four files of the original distribution, each plain
or gzipped (a file is treated as gzip when it starts with the gzip magic bytes,
whatever its name):

    train-images-idx3-ubyte   train-labels-idx1-ubyte
    t10k-images-idx3-ubyte    t10k-labels-idx1-ubyte

(the ``train-images.idx3-ubyte`` spelling with a dot is accepted too).

The IDX format: a 4-byte big-endian magic number ``0x0000TTNN`` (``TT`` the
element type, ``08`` = unsigned byte; ``NN`` the number of dimensions), then
``NN`` big-endian uint32 sizes, then the elements, big-endian, row-major.
MNIST images are ``0x00000803`` (uint8, 3 dims: count × rows × cols) and labels
``0x00000801`` (uint8, 1 dim).

The split is the files' own (60,000 train, 10,000 test); ``test_fraction`` does
not apply. Pixels are scaled to [0, 1] (``/255``) and then normalised globally:
one mean μ and one standard deviation σ over all training pixels, the same map
for every pixel, ``x = (p/255 − μ)/σ`` (on the original training set μ ≈ 0.1307,
σ ≈ 0.3081, the usual MNIST constants; ``info["x_mean"]``, ``info["x_std"]``).
``standardize="per_pixel"`` standardises each pixel on its own instead: pixels
that are almost always 0 get a tiny σ, and one rare stroke there becomes a
feature of dozens (train) to thousands (test) of σ, which can make training
diverge; a ``DataWarning`` then names them. ``standardize=False`` keeps p/255.
Images are flattened to ``rows · cols`` features (``gdlab.data.as_images`` gives
``(N, rows, cols, 1)``).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

from gdlab.data.base import DataError, Dataset, from_split

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

_GZIP_MAGIC = b"\x1f\x8b"

# IDX element type code -> big-endian numpy dtype.
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_TYPE_CODES = {dtype.newbyteorder("="): code for code, dtype in _IDX_TYPES.items()}

# (split, kind) -> file name stems in the order they are tried.
_FILES = {
    ("train", "images"): ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    ("train", "labels"): ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    ("test", "images"): ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}
_EXPECTED = ", ".join(f"{stems[0]}[.gz]" for stems in _FILES.values())


def _read_bytes(path: str, what: str) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"{what} '{path}' cannot be read: {e.strerror or e}") from None
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{what} '{path}' is not a valid gzip file ({e})") from None
    return data


def _parse_idx(data: bytes, path: str, what: str, expected_magic: int | None,
               kind: str | None) -> np.ndarray:
    if len(data) < 4:
        raise DataError(f"{what} '{path}' is too short for an IDX header ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise DataError(f"{what} '{path}': wrong IDX magic number 0x{magic:08x} "
                        f"(expected 0x{expected_magic:08x} for {kind})")
    type_code, ndim = data[2], data[3]
    if data[:2] != b"\x00\x00" or type_code not in _IDX_TYPES:
        raise DataError(f"{what} '{path}': wrong IDX magic number 0x{magic:08x} "
                        f"(not an IDX file)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{what} '{path}' is truncated: {len(data)} bytes cannot hold the "
                        f"{header}-byte header of a {ndim}-dimensional IDX array")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_TYPES[type_code]
    need = math.prod(shape) * dtype.itemsize  # Python ints: a corrupt header cannot overflow
    have = len(data) - header
    if have != need:
        dims = "×".join(map(str, shape))
        problem = "is truncated" if have < need else "has trailing bytes"
        raise DataError(f"{what} '{path}' {problem}: its header declares {dims} {dtype.name} "
                        f"elements ({need} bytes) but {have} bytes follow")
    array = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike, *, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (plain or gzipped) into a native-endian numpy array.

    Raises ``DataError`` naming the file when it cannot be read, is not IDX,
    has another magic number than ``expected_magic``, or its length does not
    match its header.
    """
    path = os.fspath(path)
    kind = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}.get(expected_magic, "this file")
    return _parse_idx(_read_bytes(path, "IDX file"), path, "IDX file", expected_magic, kind)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file; gzipped when ``path`` ends in ``.gz``.

    Supported dtypes: uint8, int8, int16, int32, float32, float64 (MNIST uses
    uint8: pass ``np.uint8`` images ``(N, rows, cols)`` or labels ``(N,)``).
    """
    path = os.fspath(path)
    array = np.asarray(array)
    code = _TYPE_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"write_idx: dtype {array.dtype} has no IDX type code; use one of "
                         f"{', '.join(str(d.newbyteorder('=')) for d in _IDX_TYPES.values())}")
    if array.ndim > 255 or any(d >= 2**32 for d in array.shape):
        raise ValueError(f"write_idx: shape {array.shape} does not fit an IDX header")
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    data = header + np.ascontiguousarray(array, _IDX_TYPES[code]).tobytes()
    if path.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    with open(path, "wb") as f:
        f.write(data)


def find_files(data_dir: str) -> dict[tuple[str, str], str]:
    """Paths of the four MNIST files in ``data_dir`` (keys ``(split, kind)``)."""
    if not os.path.exists(data_dir):
        raise DataError(f"mnist: data_dir '{data_dir}' does not exist")
    if not os.path.isdir(data_dir):
        raise DataError(f"mnist: data_dir '{data_dir}' is not a folder")
    found, missing = {}, []
    for key, stems in _FILES.items():
        for name in (n for stem in stems for n in (stem, stem + ".gz")):
            path = os.path.join(data_dir, name)
            if os.path.isfile(path):
                found[key] = path
                break
        else:
            missing.append(f"{stems[0]}[.gz]")
    if not found:
        raise DataError(f"mnist: no readable IDX files in data_dir '{data_dir}': "
                        f"expected {_EXPECTED}")
    if missing:
        raise DataError(f"mnist: data_dir '{data_dir}' lacks {', '.join(missing)} "
                        f"(expected {_EXPECTED})")
    return found


def _load_split(paths: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    name = "train" if split == "train" else "test"
    img_path, lab_path = paths[(split, "images")], paths[(split, "labels")]
    img_what, lab_what = f"mnist {name} images file", f"mnist {name} labels file"
    images = _parse_idx(_read_bytes(img_path, img_what), img_path, img_what,
                        IMAGES_MAGIC, "images")
    labels = _parse_idx(_read_bytes(lab_path, lab_what), lab_path, lab_what,
                        LABELS_MAGIC, "labels")
    if len(images) == 0:
        raise DataError(f"{img_what} '{img_path}' holds no images")
    if len(images) != len(labels):
        raise DataError(f"mnist: {img_what} '{img_path}' holds {len(images)} images but "
                        f"{lab_what} '{lab_path}' holds {len(labels)} labels")
    bad = labels > 9
    if bad.any():
        raise DataError(f"{lab_what} '{lab_path}': label {int(labels[bad][0])} out of range 0..9")
    return images, labels


def load_mnist(
    data_dir: str | os.PathLike | None,
    *,
    n: int | None = None,
    standardize: bool | str = True,
) -> Dataset:
    """MNIST from the IDX files in ``data_dir``; ``n`` keeps only the first ``n`` training images.

    Features are ``(N, rows·cols)`` float32: pixels/255, normalised by one global
    mean and std of the training pixels (``standardize=True`` or ``"global"``),
    per pixel (``"per_pixel"``) or not at all (False). Labels int32 ``(N,)``, 10 classes.
    """
    scaling = {True: "global", False: "none"}.get(standardize, standardize)
    if data_dir is None:
        raise DataError(f"mnist: data_dir is required: the folder holding {_EXPECTED}")
    data_dir = os.fspath(data_dir)
    paths = find_files(data_dir)
    x_train, y_train = _load_split(paths, "train")
    x_test, y_test = _load_split(paths, "test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"mnist: train images are {'×'.join(map(str, x_train.shape[1:]))} but test images "
            f"file '{paths[('test', 'images')]}' holds "
            f"{'×'.join(map(str, x_test.shape[1:]))} images")
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise DataError(f"mnist: n must be a positive integer, got {n!r}")
        if n > len(x_train):
            raise DataError(f"mnist: n={n} exceeds the {len(x_train)} training images in "
                            f"'{paths[('train', 'images')]}'")
        x_train, y_train = x_train[:n], y_train[:n]
    rows, cols = x_train.shape[1:]

    def flat(images):
        return images.reshape(len(images), rows * cols).astype(np.float32) / np.float32(255)

    return from_split(
        "mnist", flat(x_train), y_train, flat(x_test), y_test,
        task="classification", num_classes=10, standardize=scaling,
        feature_names=tuple(f"pixel_{r}_{c}" for r in range(rows) for c in range(cols)),
        info={"source": {f"{split}_{kind}": path for (split, kind), path in paths.items()},
              "image_shape": (rows, cols),
              "pixel_scale": {"global": "(x/255 - mean)/std, one mean and std for all pixels",
                              "per_pixel": "x/255, then standardised per pixel",
                              "none": "x/255"}.get(scaling, scaling),
              "class_names": tuple(str(k) for k in range(10))},
    )
