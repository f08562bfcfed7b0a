"""A user's folder of image files, one subfolder per class, as a ``Dataset``.

Layouts (class folders hold the image files; the class names are the folder names,
classes in sorted order, ``info["class_names"]``):

- ``data_dir/<class>/*.png``: split by ``seed`` and ``test_fraction`` like a table;
- ``data_dir/train/<class>/*`` and ``data_dir/test/<class>/*`` (or ``val/``, ``valid/``,
  ``validation/`` in place of ``test/``): the folders' own
  split, kept (the two must name the same classes).

Files with the extensions of ``EXTENSIONS`` are read with Pillow; others, and
names starting with a dot (and macOS's ``__MACOSX`` folders of a zip file), are ignored.
Of an image of several frames or pages (an animated GIF or WebP, a multi-page TIFF) the
first is read, with a note naming the images that have more. A picture whose EXIF
orientation says it was stored on its side or mirrored (a phone camera's) is read turned
upright, as viewers show it. A class folder that holds images of its own
also gives those of its subfolders, at any depth (with a note); one that holds only
subfolders is an error (likely a level too high). Transparency is dropped, with a
note naming the images that had any. Every image must have the same height
and width, unless ``size = (height, width)`` is given: then each is resized to
it (bilinear), whatever its own. Grey-scale images stay one channel; if any image
has colour, all are read as RGB (grey ones with R = G = B). Pixels become ``x/255``
(16-bit grey ``x/65535``; float grey ``x`` over the largest float value of the
folder, when above 1), normalised with one mean and standard deviation over all
training pixels (``"global"``, as MNIST; ``"per_pixel"`` or ``False`` on
request), flattened to ``(N, H·W·C)`` with
``info["image_shape"] = (H, W, C)``, so ``as_images`` (and ``--model=cnn``) gets
them back. Errors are ``DataError``s of one sentence naming the folder or file.
"""

from __future__ import annotations

import collections
import os
import warnings

import numpy as np

from gdlab.data.base import DataError, DataShape, Dataset, from_split, note, split_indices
from gdlab.records import host_memory

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

_WIDE_GREY_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
"""Grey modes of more than 8 bits: 16-bit integers become x/65535, floats x/max."""
_GREY_MODES = ("1", "L", "LA", *_WIDE_GREY_MODES)


HELD_OUT = ("test", "val", "valid", "validation")
"""The names of a data set's own held-out folder beside ``train/``, the first found taken."""

SIZE_SAMPLE = 64
"""How many images' headers ``preview_images`` reads, spread evenly over the folder (the
first among them), to find images of several sizes before any is decoded."""


SKIPPED_FOLDERS = ("__MACOSX",)
"""Folders that hold no pictures, left out like dot-folders: the one macOS's Archive Utility
writes into a zip file beside its folders, of '._name' metadata files."""


def _skipped(name: str) -> bool:
    """Whether a folder named ``name`` is left out: a dot-folder or one of ``SKIPPED_FOLDERS``."""
    return name.startswith(".") or name in SKIPPED_FOLDERS


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(EXTENSIONS)


def _images_in(folder: str) -> tuple[list[str], list[str]]:
    """The image paths in ``folder`` itself, and those in its subfolders at any depth
    (dot-folders and ``SKIPPED_FOLDERS`` left out), in one walk."""
    own, nested = [], []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not _skipped(d)]
        (own if root == folder else nested).extend(
            os.path.join(root, n) for n in names if _is_image(n))
    return own, nested


def _class_files(folder: str, notes: list[str] | None = None) -> dict[str, list[str]]:
    """``{class: sorted image paths}`` for each class subfolder of ``folder``: its image
    files, and those of its subfolders when it holds images of its own (a class folder of
    subfolders only is an error: likely a level too high); ``notes`` gets a line when
    subfolders' images are read."""
    classes = sorted(e.name for e in os.scandir(folder)
                     if e.is_dir() and not _skipped(e.name))
    files, nested = {}, []
    for name in classes:
        paths, inner = _images_in(os.path.join(folder, name))
        if paths:  # subfolders' images only beside the folder's own
            nested += inner
            paths = sorted(paths + inner)
        if not paths:
            inner = os.path.join(folder, name)
            with os.scandir(inner) as entries:
                nested = any(e.is_dir() for e in entries)
            raise DataError(
                f"images: class folder '{inner}' holds no image files ({', '.join(EXTENSIONS)})"
                + ("; it holds folders: the layout is DIR/<class>/*, or DIR/train/<class>/* "
                   "beside DIR/test/<class>/* (or val/, valid/, validation/)" if nested else ""))
        files[name] = paths
    if len(files) < 2:
        raise DataError(f"images: '{folder}' needs a subfolder per class, at least 2, holding "
                        f"the image files; found {len(files)}")
    if nested and notes is not None:
        notes.append(f"images: {len(nested)} image{'s' if len(nested) > 1 else ''} in "
                     f"subfolders of class folders (first '{min(nested)}') are read as their "
                     f"class folder's")
    return files


def _memory_error(shape) -> DataError | None:
    """The DataError for ``shape`` (N, H, W, C) float64 pixels when they would take more
    than half of this machine's memory, else None."""
    need, have = 8 * float(np.prod(shape, dtype=np.float64)), host_memory()
    if have is not None and need > have / 2:
        return DataError(f"images: {shape[0]} images of {shape[1]}x{shape[2]} pixels would take "
                         f"{need / 2**30:.3g} GiB as float64, more than half of this machine's "
                         f"{have / 2**30:.3g} GiB; give a smaller size (--image_size=HEIGHT,WIDTH)")
    return None


def _check_memory(shape) -> None:
    """Raise ``_memory_error(shape)``, if any."""
    error = _memory_error(shape)
    if error is not None:
        raise error


_TURNED = (5, 6, 7, 8)
"""EXIF orientations of a picture stored on its side: shown upright, width and height swap."""


def _orientation(im) -> int:
    """The EXIF orientation of an opened image (1, as stored, when it has none, or EXIF
    that cannot be read)."""
    try:
        orientation = im.getexif().get(0x0112, 1)  # the Orientation tag
    except Exception:  # damaged EXIF: the pixels as stored
        return 1
    return orientation if orientation in range(1, 9) else 1


def _header(path: str) -> tuple[int, int, int]:
    """``(width, height, channels)`` of an image file as it is shown (turned upright by its
    EXIF orientation, as ``_read`` turns it), from its header, decoding nothing (PIL's
    warnings are left to the load that decodes it)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                width, height = im.size[::-1] if _orientation(im) in _TURNED else im.size
                return width, height, 1 if im.mode in _GREY_MODES else 3
    except Image.DecompressionBombError as e:
        raise _too_large(path, e) from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise _unreadable(path, e) from None


def _transparent(im) -> bool:
    """Whether a loaded image has a pixel that is not fully opaque."""
    if "A" in im.getbands():
        return im.getchannel("A").getextrema()[0] < 255
    if "transparency" in im.info:  # a palette or grey image with a transparent colour
        return im.convert("RGBA").getchannel("A").getextrema()[0] < 255
    return False


def _unreadable(path: str, error: Exception) -> DataError:
    """The DataError for a file that PIL cannot open or decode."""
    return DataError(f"images: '{path}' cannot be read as an image ({error})")


def _too_large(path: str, error: Exception) -> DataError:
    """The DataError for an image past PIL's pixel limit (its decompression-bomb guard)."""
    return DataError(f"images: '{path}' is too large to open ({str(error).split(',')[0]}); "
                     f"shrink it or leave it out")


def _read(paths: list[str], resize: tuple[int, int] | None = None
          ) -> tuple[list, bool, float, list[str]]:
    """The opened images, each resized to ``resize`` (height, width; bilinear) as it is read
    when given, so that only one image at a time is held at its own size; whether any has
    colour; the largest value of the float grey ("F") images, at least 1, taken before
    resizing; and PIL's warnings, one line each, naming the file. A DataError for a file
    that cannot be read, or does not fit in memory."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    images, colour, float_max, notes, clear, frames = [], False, 1.0, [], [], []
    for path in paths:
        try:
            with warnings.catch_warnings(record=True) as caught, Image.open(path) as im:
                warnings.simplefilter("always")
                im.load()
                # an animation, or a TIFF of pages; not a camera's JPEG that holds a preview
                if getattr(im, "n_frames", 1) > 1 and im.format != "MPO":  # or a depth map
                    frames.append((path, im.n_frames))
                if _transparent(im):
                    clear.append(path)
                if im.mode == "F":  # float grey: one scale for the folder, its largest value
                    float_max = max(float_max, float(np.asarray(im).max()))
                # a camera's picture stored on its side or mirrored: upright, as it is shown
                shown = im if _orientation(im) == 1 else ImageOps.exif_transpose(im)
                if resize is not None and shown.size != (resize[1], resize[0]):
                    images.append(shown.resize((resize[1], resize[0]),
                                               Image.Resampling.BILINEAR))
                else:
                    images.append(shown.copy())
        except Image.DecompressionBombError as e:  # PIL's guard against decompression bombs
            raise _too_large(path, e) from None
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise _unreadable(path, e) from None
        except MemoryError:
            raise DataError(f"images: this machine ran out of memory reading '{path}', image "
                            f"{len(images) + 1} of {len(paths)}; give a smaller size "
                            f"(--image_size=HEIGHT,WIDTH) or fewer images") from None
        for message in dict.fromkeys(str(w.message).splitlines()[0] for w in caught):
            notes.append(f"images: '{path}': {message}")
        colour |= images[-1].mode not in _GREY_MODES
    if clear:
        notes.append(f"images: {len(clear)} of {len(paths)} images have transparent pixels "
                     f"(first '{clear[0]}'); transparency is dropped, each pixel keeping its "
                     f"stored colour, so a shape drawn only in the alpha channel is lost: "
                     f"flatten them onto a background first")
    if frames:
        first, count = min(frames)  # in the order of their names
        notes.append(f"images: {len(frames)} of {len(paths)} images hold several frames or "
                     f"pages (first '{first}', of {count}); only the first of each is read: "
                     f"save the frames wanted as images of their own")
    return images, colour, float_max, notes


def _pixels(images: list, paths: list[str], colour: bool, resize: tuple[int, int] | None,
            float_max: float = 1.0) -> np.ndarray:
    """``(N, H, W, C)`` float64 pixels in [0, 1], of images ``_read`` resized to ``resize``
    (height, width) when given; else a DataError naming an image whose size is not the most
    common. ``float_max``: the scale of float grey images (``_read``'s)."""
    if resize is None:
        (size, count), = collections.Counter(im.size for im in images).most_common(1)
    else:
        size, count = (resize[1], resize[0]), None  # PIL's sizes are (width, height)
    shape = (len(images), size[1], size[0], 3 if colour else 1)
    _check_memory(shape)
    out = np.empty(shape)
    for i, (im, path) in enumerate(zip(images, paths)):
        if im.size != size:
            raise DataError(f"images: '{path}' is {im.size[1]} high and {im.size[0]} wide, "
                            f"but {count} of the {len(images)} images are {size[1]} high and "
                            f"{size[0]} wide; every image must have the same size (resize "
                            f"them, or give a size to resize to: --image_size=HEIGHT,WIDTH, "
                            f"here --image_size={size[1]},{size[0]})")
        if im.mode in _WIDE_GREY_MODES:  # 16-bit or float grey: their own range, to [0, 1]
            a = np.asarray(im, np.float64) / (float_max if im.mode == "F" else 65535.0)
            a = np.repeat(a[..., None], shape[-1], axis=-1)  # grey among colour: R = G = B
        else:
            a = np.asarray(im.convert("RGB" if colour else "L"), np.float64) / 255.0
        out[i] = a.reshape(out.shape[1:])
    return out


def _checked_size(size) -> tuple[int, int] | None:
    """``size`` as ``(height, width)``, or a DataError unless it is two positive ints."""
    if size is None:
        return None
    size = tuple(size)
    if len(size) != 2 or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                                 and d > 0 for d in size):
        raise DataError(f"images: size must be (height, width), two positive integers, "
                        f"got {size!r}")
    return size


def _layout(data_dir, seed: int, test_fraction: float):
    """``(folder, classes, splits, held_out, own_split, notes)`` of the class folders under
    ``data_dir``: ``splits`` the train and test lists of ``(path, label)``, ``notes``
    ``_class_files``'."""
    if data_dir is None:
        raise DataError("images: data_dir is required: a folder with a subfolder of image files "
                        "per class")
    folder = os.fspath(data_dir)
    if not os.path.isdir(folder):
        what = "is a file, not a folder" if os.path.exists(folder) else "does not exist"
        raise DataError(f"images: data_dir '{folder}' {what}")
    held_out = next((s for s in HELD_OUT if os.path.isdir(os.path.join(folder, s))), "test")
    split_dirs = [os.path.join(folder, s) for s in ("train", held_out)]
    own_split = all(os.path.isdir(d) for d in split_dirs)
    notes: list[str] = []
    if own_split:
        train_files, test_files = (_class_files(d, notes) for d in split_dirs)
        if list(train_files) != list(test_files):
            raise DataError(f"images: '{split_dirs[0]}' holds classes {', '.join(train_files)} "
                            f"but '{split_dirs[1]}' holds {', '.join(test_files)}")
        classes = list(train_files)
        splits = [[(p, k) for k, c in enumerate(classes) for p in files[c]]
                  for files in (train_files, test_files)]
    else:
        files = _class_files(folder, notes)
        classes = list(files)
        every = [(p, k) for k, c in enumerate(classes) for p in files[c]]
        train, test = split_indices(len(every), seed=seed, test_fraction=test_fraction)
        splits = [[every[i] for i in train], [every[i] for i in test]]
    return folder, classes, splits, held_out, own_split, notes


def preview_images(
    data_dir: str | os.PathLike | None,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    size: tuple[int, int] | None = None,
) -> DataShape:
    """What ``load_images`` with the same arguments would give, in shapes only (flat
    examples, as it loads them; ``as_images`` gives their image shape), from the
    file names and the images' headers, without decoding any image: a program can
    refuse a run too large for its memory before reading a folder of photos (80 photos
    of 1500×2000 take about a minute to read). It reads the headers of ``SIZE_SAMPLE``
    images spread evenly over the folder (of every image in a smaller one): the first
    gives the size, and unless ``size`` is given, one of another size among them is
    refused here as ``load_images`` would refuse it after decoding them all (an image of
    another size the sample missed is left to it); one in colour among them gives three
    channels. After grey ones, the other headers are read only where one in colour
    would make the pixels too large, so the channels of a larger folder that fits are a
    lower bound where only an image outside the sample has colour. A DataError when
    ``load_images`` would give one for the layout, a header read, the sizes, or pixels
    beyond half this machine's memory."""
    size = _checked_size(size)
    _, classes, splits, _, _, _ = _layout(data_dir, seed, test_fraction)
    paths = [p for split in splits for p, _ in split]
    count = min(len(paths), SIZE_SAMPLE)  # spread evenly, the first image among them
    sample = [paths[i * len(paths) // count] for i in range(count)]
    headers = [_header(p) for p in sample]
    (width, height, _), channels = headers[0], max(c for _, _, c in headers)
    if size is None:
        _check_one_size(sample, [(w, h) for w, h, _ in headers])
    else:
        height, width = size
    n_train, n_test = len(splits[0]), len(splits[1])
    _check_memory((len(paths), height, width, channels))
    if channels == 1:  # one colour image makes all three channels: too many then?
        colour_error = _memory_error((len(paths), height, width, 3))
        sampled = set(sample)
        if colour_error is not None and any(_header(p)[2] == 3 for p in paths
                                            if p not in sampled):
            raise colour_error
    return DataShape(name="images", task="classification", num_classes=len(classes),
                     n_train=n_train, n_test=n_test, input_shape=(height * width * channels,),
                     image_shape=(height, width, channels))


def _check_one_size(paths: list[str], sizes: list[tuple[int, int]]) -> None:
    """A DataError naming the first of ``paths`` whose size (PIL's ``(width, height)``,
    ``sizes``) is not the most common among them, if any, in ``_pixels``' words."""
    (common, count), = collections.Counter(sizes).most_common(1)
    if count == len(sizes):
        return
    path, (width, height) = next((p, s) for p, s in zip(paths, sizes) if s != common)
    raise DataError(f"images: '{path}' is {height} high and {width} wide, but {count} of "
                    f"{len(paths)} images read across the folder are {common[1]} high and "
                    f"{common[0]} wide; every image must have the same size (resize them, or "
                    f"give a size to resize to: --image_size=HEIGHT,WIDTH, here "
                    f"--image_size={common[1]},{common[0]})")


def load_images(
    data_dir: str | os.PathLike | None,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    standardize: bool | str = True,
    size: tuple[int, int] | None = None,
) -> Dataset:
    """The class folders under ``data_dir`` as a classification data set (module docstring);
    ``size = (height, width)`` resizes every image to it (bilinear)."""
    size = _checked_size(size)
    folder, classes, splits, held_out, own_split, notes = _layout(data_dir, seed, test_fraction)
    paths = [p for split in splits for p, _ in split]
    if size is not None:  # before reading: even one grey channel may not fit
        _check_memory((len(paths), *size, 1))
    images, colour, float_max, read_notes = _read(paths, size)
    notes += read_notes
    pixels = _pixels(images, paths, colour, size, float_max)
    n_train = len(splits[0])
    labels = np.array([k for split in splits for _, k in split])
    scaling = {True: "global", False: "none"}.get(standardize, standardize)
    flat = pixels.reshape(len(pixels), -1)
    info = {"source": folder,
            "split": f"the folders' own (train/, {held_out}/)" if own_split else f"seed {seed}",
            "image_shape": pixels.shape[1:], "class_names": tuple(classes),
            "files": {"train": [p for p, _ in splits[0]], "test": [p for p, _ in splits[1]]},
            "pixel_scale": "x/255, then " + {"global": "one mean and std for all pixels",
                                             "per_pixel": "standardised per pixel",
                                             "none": "as it is"}.get(scaling, scaling)}
    for text in notes:  # PIL's warnings: reported, and kept with the data set
        note(info, text)
    return from_split(
        "images", flat[:n_train], labels[:n_train], flat[n_train:], labels[n_train:],
        task="classification", num_classes=len(classes), standardize=scaling, info=info)
