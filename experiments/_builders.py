"""Flags shared by the training experiments, and what they build: data, model, loss, optimizer.

Each experiment calls the ``define_*`` functions it needs at import time and
the builders in ``main``; the builders turn flag values into gdlab objects and
bad combinations into one-sentence ``UsageError``s.
"""

from __future__ import annotations

from absl import flags

from experiments import _cli
from gdlab import data, descent, layers, losses, optim, theory

FLAGS = flags.FLAGS


def define_data_flags(default: str = "digits") -> None:
    flags.DEFINE_enum("dataset", default, list(data.DATASETS),
                      "Data set: bundled (digits, diabetes), generated (houses, moons, spirals; "
                      "sort: integer sequences to sort, for --model=transformer), or the user's "
                      "own (mnist IDX files in --data_dir; images: image files in --data_dir, a "
                      "subfolder per class; csv via --csv_path; NumPy arrays via --npz_path).")
    flags.DEFINE_string("data_dir", None, "Folder holding the MNIST IDX files (--dataset=mnist), "
                        "or a subfolder of image files per class (--dataset=images).")
    flags.DEFINE_string("csv_path", None, "The CSV table to learn from (--dataset=csv).")
    flags.DEFINE_list("image_size", [], "--dataset=images: HEIGHT,WIDTH to resize every image "
                      "to (bilinear); empty: all images must already have one size.")
    flags.register_validator(
        "image_size", lambda v: not v or (len(v) == 2 and all(map(_cli.is_positive_int, v))),
        message="--image_size must be HEIGHT,WIDTH, two positive integers, e.g. --image_size=28,28")
    flags.DEFINE_enum("task", "auto", ["auto", "classification", "regression"],
                      "--dataset=csv or npz: what the target is; auto: class labels when it holds "
                      "text, or integers with at most 20 distinct values, else a regression "
                      "target.")
    flags.DEFINE_string("npz_path", None, "The .npz file to learn from (--dataset=npz): x and y, "
                        "or x_train, y_train, x_test and y_test (or x_val, y_val); x of features "
                        "(N, D) or images (N, H, W[, C]); y of numbers or text labels.")
    flags.DEFINE_string("target", None, "Name of the target column (--dataset=csv); a column "
                        "of text is a classification target.")
    flags.DEFINE_list("drop_columns", [], "--dataset=csv: columns to leave out, comma-separated "
                      "(ids, names, free text). Other text columns are one-hot features.")
    flags.DEFINE_integer("seed", 0, "Seed for the split, the initial weights and the shuffles.")
    flags.DEFINE_enum("pixel_scaling", "global", ["global", "per_pixel"],
                      "Images (digits, mnist, images, npz images): global (one mean and std for "
                      "all pixels) or "
                      "per_pixel (each pixel standardised alone; rare strokes in blank pixels "
                      "become extreme features).")
    flags.DEFINE_integer("sort_length", 8, "--dataset=sort: tokens per sequence.", lower_bound=2)
    flags.DEFINE_integer("sort_symbols", 10, "--dataset=sort: distinct symbols 0..N-1.",
                         lower_bound=2)
    flags.DEFINE_integer("sort_examples", 12000, "--dataset=sort: sequences generated (train "
                         "and test together).", lower_bound=10)


MODELS = ("mlp", "linear", "cnn", "transformer")

MODEL_DEFAULTS = {
    "cnn": {"optimizer": "adam", "lr": 0.002, "epochs": 30, "schedule": "cosine"},
    "transformer": {"optimizer": "adam", "lr": 0.003, "epochs": 10, "batch_size": 64,
                    "schedule": "cosine"},
}
"""Descent flags that a model changes when they are not given on the command line."""

IMAGE_MODEL = "cnn"
"""The ``--model`` that train gives image data a user brings (an image folder, or an npz of
images) when the command line names none. The MLP's first layer sums every pixel, so its
curvature grows with pictures whose pixels move together (colour, a brightness that varies
from picture to picture): at lr = 0.05 such pictures diverged, where the CNN trained (the
MLP's default is now scaled to the inputs' curvature, ``scale_lr_to_data``; the CNN still
learns pictures better).
The bundled digits and MNIST's IDX files keep the MLP, the lab's documented model."""

DATA_CURVATURE = 36.0
"""The inputs' curvature (``theory.input_curvature`` at the run's batch size) up to which
train's default learning rate stands as it is. The default was set on digits, whose
curvature is 33 at B = 32 (31.5 over all its rows); a table of 2,000 correlated columns
has 660, and at lr = 0.05 its MLP diverged."""

REGRESSION_SHARPNESS = 30.0
"""For mse and huber, the sharpness at the initial weights (``initial_sharpness``) up to
which train's default learning rate stands. MSE's curvature does not fall as training
goes on, as cross-entropy's does once the softmax saturates: the default MLP on
diabetes starts at 49, and with momentum at lr = 0.05 (lr·λ0 = 2.4, 0.64 of the bound
2(1+β) = 3.8 of a quadratic) its mini-batch run diverged at step 45; at 0.03 it trained.
Houses starts at 45."""

SHARPNESS_EXAMPLES = 1000
"""The training examples (a fixed subset) ``initial_sharpness`` measures on."""


def initial_sharpness(ds: data.Dataset, model, loss_name: str) -> float:
    """λmax of the loss's Hessian at the initial weights the seed draws (those every run of
    the experiment starts from), on ``SHARPNESS_EXAMPLES`` training examples (power iteration on
    Hessian-vector products, ``gdlab.curvature``)."""
    import jax

    from gdlab import curvature, train

    key = jax.random.PRNGKey(FLAGS.seed)
    params, state = train.init_model(model, key, ds.input_shape)
    x, y = curvature.fixed_subset(ds.x_train, ds.y_train, SHARPNESS_EXAMPLES, seed=FLAGS.seed)
    sharpness = curvature.make_sharpness(model, losses.get(loss_name))(
        params, state, x, y, curvature.random_direction(jax.random.fold_in(key, 1), params),
        key=key)
    return float(sharpness.value)


def two_digits(rate: float) -> float:
    """A rate scaled to the data, to two significant digits: what the programs that scale
    their default rates print, record and train at."""
    return float(f"{rate:.2g}")


def scale_lr_to_data(ds: data.Dataset, batch_size: int, model, loss_name: str) -> str | None:
    """train's rule. With ``--lr`` not given, gd, momentum or nesterov on an mlp or linear
    model: the default learning rate × the smaller of ``DATA_CURVATURE``/c and (mse and
    huber) ``REGRESSION_SHARPNESS``/λ0, where that is below 1 (two significant digits). c is the
    inputs' curvature at ``batch_size``: a network's first layer scales its Hessian by it, so
    wide or strongly correlated inputs (a table of thousands of columns, pixels that move
    together) make the step that trains digits diverge or wobble. λ0 is the initial
    sharpness (``initial_sharpness``). On ``--resume`` a rate the run recorded within
    ``RESUMED_LR_SLACK`` of the one computed here is kept. Sets ``--lr`` (config.json and
    flags.txt record it) and returns a line saying so; None when the default stands."""
    if (_cli.set_anywhere("lr") or FLAGS.model not in ("mlp", "linear")
            or FLAGS.optimizer not in theory.BOUND_NAMES
            or not isinstance(ds, data.Dataset) or ds.x_train.dtype.kind != "f"):
        return None
    curvature = theory.input_curvature(ds.x_train, batch_size, seed=FLAGS.seed)
    reasons = []
    if curvature > DATA_CURVATURE:
        reasons.append((DATA_CURVATURE / curvature,
                        f"{DATA_CURVATURE:g}/{curvature:.0f}: a batch of these inputs has "
                        f"curvature {curvature:.0f} (λmax of XᵀX/B at B={batch_size}), where "
                        f"the default suits {DATA_CURVATURE:g} or less (digits: 33)"))
    if loss_name in ("mse", "huber"):
        sharpness = initial_sharpness(ds, model, loss_name)
        if sharpness > REGRESSION_SHARPNESS:
            reasons.append((REGRESSION_SHARPNESS / sharpness,
                            f"{REGRESSION_SHARPNESS:g}/{sharpness:.0f}: the {loss_name} loss's "
                            f"sharpness at the initial weights is {sharpness:.0f} (λmax of its "
                            f"Hessian), where the default suits {REGRESSION_SHARPNESS:g} or less"))
    default = FLAGS["lr"].default
    lr, why = default, None
    if reasons:
        factor, why = min(reasons)
        lr = two_digits(default * factor)
    recorded = _resumed_lr()  # on --resume: the run's rate, which may round otherwise here
    kept = recorded is not None and recorded != lr and abs(recorded / lr - 1) <= RESUMED_LR_SLACK
    FLAGS["lr"].value = recorded if kept else lr
    computed = f" (the rate the run recorded; here it comes to {lr:g})" if kept else ""
    if why is None:
        return f"lr={FLAGS.lr:g}, the rate the run recorded (here the default {default:g} " \
               f"stands, within 10% of it); --lr sets it" if kept else None
    return f"lr={FLAGS.lr:g}, the default {default:g} scaled by {why}{computed}; --lr sets it"


RESUMED_LR_SLACK = 0.1
"""On ``--resume``, a scaled default within this fraction of the rate the run recorded is
that rate: the curvature, computed again on another machine (its BLAS, a GPU), may round
to the next value at two significant digits, and the resume would be refused."""


def _resumed_lr() -> float | None:
    """On ``--resume``, the ``lr`` that ``--workdir``'s config.json records; None without one
    (prepare_workdir refuses a folder it cannot read, with its own sentence)."""
    import json
    import os

    from gdlab.workdir import WorkdirError, resolve

    if not ("resume" in FLAGS and FLAGS.resume):
        return None
    try:
        with open(os.path.join(resolve(FLAGS.workdir), "config.json")) as f:
            value = json.load(f).get("lr")
    except (OSError, ValueError, AttributeError, WorkdirError):
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    return float(value) if ok else None


LOSS_ROSE = 10.0
"""A completed run whose training loss ended this many times its initial one warns."""


def loss_rose(first, final) -> bool:
    """Whether a completed run's training loss went from ``first`` to ``final`` (None when
    missing) past ``LOSS_ROSE`` times: it grew, short of the guard's blow-up rule."""
    return bool(first and final and final > LOSS_ROSE * first)


def lr_advice(ds: data.Dataset, flag: str, lr: float, *, cnn: bool = True) -> str:
    """What to try after a learning rate (``--flag=lr``) too large: a tenth of it, and for
    an MLP on images the CNN. An MLP's first layer sums every pixel, and pixels that move
    together (the brightness or colour of a whole picture) make its curvature grow with
    the picture's size: 32×32 colour pictures that diverged at lr=0.05 trained
    at 0.005, and better still as a CNN with its own defaults (``cnn``: where the program
    applies ``MODEL_DEFAULTS``; descent_modes' plain gd rates do not suit the CNN)."""
    advice = f"try --{flag}={lr / 10:g}"
    if cnn and FLAGS.model == "mlp" and ds.image_shape is not None:
        own = ", ".join(f"--{k}={v}" for k, v in MODEL_DEFAULTS["cnn"].items())
        advice += f", or --model=cnn for images, with its own defaults ({own})"
    return advice


MODEL_FLAGS = {"mlp": ("hidden", "activation"), "cnn": ("channels", "kernel", "padding"),
               "transformer": ("width", "depth", "heads", "vocab_size", "causal")}
"""The flags that shape each model; ``build_model`` refuses one set for another model."""


def define_model_flags(*, model_defaults: bool = False) -> None:
    """The model flags; ``model_defaults``: the program applies ``MODEL_DEFAULTS``
    (``apply_model_defaults``), and --model's help says so."""
    defaults = (" cnn and transformer change the defaults of flags not given: " + "; ".join(
        f"{m}: " + ", ".join(f"--{k}={v}" for k, v in d.items())
        for m, d in MODEL_DEFAULTS.items()) + f". Not given, it is {IMAGE_MODEL} for image "
        "data a user brings (--dataset=images, npz images) and mlp for the other data "
        "sets.") if model_defaults else ""
    flags.DEFINE_enum("model", "mlp", list(MODELS),
                      "mlp (hidden layers), linear (no hidden layer, regression's model), cnn "
                      "(conv/batch-norm/relu/max-pool stages on images: digits, mnist) or "
                      "transformer (pre-layer-norm blocks on token sequences: sort)." + defaults)
    _cli.define_int_list("hidden", "64", "Hidden layer sizes of the MLP, comma-separated.")
    _cli.define_int_list("channels", "32,64", "--model=cnn: output channels of each conv stage.")
    flags.DEFINE_integer("kernel", 3, "--model=cnn: conv kernel size (k x k).", lower_bound=1)
    flags.DEFINE_enum("padding", "SAME", ["SAME", "VALID"], "--model=cnn: conv padding, SAME "
                      "(keep the size) or VALID (no padding: each conv shrinks by k-1).")
    flags.DEFINE_integer("width", 64, "--model=transformer: model width (embedding size).",
                         lower_bound=1)
    flags.DEFINE_integer("depth", 2, "--model=transformer: number of blocks.", lower_bound=1)
    flags.DEFINE_integer("heads", 4, "--model=transformer: attention heads (divide --width).",
                         lower_bound=1)
    flags.DEFINE_integer("vocab_size", 0, "--model=transformer: token vocabulary; 0 takes the "
                         "data set's symbol count.", lower_bound=0)
    flags.DEFINE_bool("causal", False, "--model=transformer: causal attention (position t sees "
                      "positions <= t only).")
    flags.DEFINE_enum("activation", "relu", [a for a in layers.ACTIVATIONS if a != "softmax"],
                      "Hidden activation of the MLP.")
    flags.DEFINE_enum("loss", "auto", ["auto", *losses.LOSSES],
                      "Loss: auto (xent for classification, mse for regression), mse, huber, "
                      "xent or bce (two classes).")
    flags.DEFINE_enum("grad", "manual", ["manual", "autodiff", "custom_vjp"],
                      "How gradients are computed: hand-written backprop (manual), jax.grad "
                      "(autodiff), or the manual rules through jax.custom_vjp.")


def define_optimizer_flags(*, optimizer: str = "momentum",
                           optimizer_help: str = "The update rule.") -> None:
    """--optimizer, --schedule, --momentum, --weight_decay, --weight_decay_on: what
    ``build_optimizer`` reads, the same in every experiment that trains."""
    flags.DEFINE_enum("optimizer", optimizer, list(optim.OPTIMIZERS), optimizer_help)
    flags.DEFINE_enum("schedule", "constant", list(optim.SCHEDULES),
                      "Learning-rate schedule over the whole run, from the learning rate.")
    flags.DEFINE_float("momentum", 0.9, "β of --optimizer=momentum and nesterov.")
    flags.DEFINE_float("weight_decay", 0.0, "L2 coefficient (decoupled for adamw); 0 for none.")
    flags.DEFINE_enum("weight_decay_on", "all", list(WEIGHT_DECAY_ON),
                      "The parameters --weight_decay reaches: all (as torch.optim's "
                      "weight_decay) or weights (kernels and embedding tables, the leaves of two "
                      "or more dimensions; not biases or normalisation scales and shifts).")


WEIGHT_DECAY_ON = {"all": None, "weights": optim.weights_only}
"""--weight_decay_on's values and the decay masks they stand for."""


def define_descent_flags(*, descent_default: str = "minibatch", batch_size: int = 32,
                         optimizer: str = "momentum", lr: float = 0.05, epochs: int = 20) -> None:
    flags.DEFINE_enum("descent", descent_default, list(descent.MODES),
                      "batch (all examples per step), sgd (one) or minibatch (--batch_size).")
    flags.DEFINE_integer("batch_size", batch_size, "Examples per step for --descent=minibatch.")
    define_optimizer_flags(optimizer=optimizer)
    flags.DEFINE_float("lr", lr, "Learning rate α (> 0). Not given, with gd, momentum or "
                       "nesterov on an mlp or linear model: the default scaled down to inputs "
                       "of larger curvature than digits', or (mse, huber) a larger initial "
                       "sharpness; the run says so in one line.")
    flags.DEFINE_integer("epochs", epochs, "Passes over the training set.", lower_bound=1)


def apply_model_defaults() -> None:
    """Give the descent flags the ``--model``'s defaults (``MODEL_DEFAULTS``) where the
    command line left them unset (after ``load_dataset``, which may pick the model);
    config.json records the values used."""
    for name, value in MODEL_DEFAULTS.get(FLAGS.model, {}).items():
        if name in FLAGS and FLAGS[name].using_default_value:
            FLAGS[name].value = value


def load_dataset(*, model_by_data: bool = False, before_reading=None) -> data.Dataset:
    """The data set the flags name, shaped for ``--model`` (images for cnn); bad files,
    arguments and model/data mismatches raise DataError or UsageError (exit 2).
    ``model_by_data`` (train): with no --model on the command line, image data a user
    brings train ``IMAGE_MODEL``, and the flag says so from then on.
    ``before_reading(shape)``, for an image folder: called with its ``data.DataShape``
    (``data.preview_images``) before any image is decoded, to refuse a run that cannot
    fit (reading a folder of photos at full size takes a minute)."""
    by_data = (model_by_data and FLAGS["model"].using_default_value
               and FLAGS.dataset in ("images", "npz"))
    if by_data and FLAGS.dataset == "images":  # always images: the model is known already
        FLAGS.model = IMAGE_MODEL
        FLAGS["model"].using_default_value = True  # still the default: the data's
    if not (by_data and FLAGS.dataset == "npz"):  # the model is settled: refuse another's
        check_model_flags()                       # flags before reading any data
    model = FLAGS["model"].value if "model" in FLAGS else None
    if model == "transformer" and FLAGS.dataset != "sort":
        raise _cli.UsageError(f"--model=transformer needs token sequences (--dataset=sort), "
                              f"got --dataset={FLAGS.dataset}")
    if FLAGS.dataset == "sort" and model not in (None, "transformer"):
        raise _cli.UsageError(f"--dataset=sort is a sequence task for --model=transformer, got "
                              f"--model={model}")
    kwargs = {"seed": _cli.check_seed(FLAGS.seed)}
    for name, users in (("data_dir", ("mnist", "images")), ("csv_path", ("csv",)),
                        ("target", ("csv",)), ("drop_columns", ("csv",)), ("npz_path", ("npz",)),
                        ("image_size", ("images",)), ("task", ("csv", "npz"))):
        if FLAGS[name].value not in (None, [], "auto") and FLAGS.dataset not in users:
            raise _cli.UsageError(f"--{name} is for --dataset={'/'.join(users)}, but "
                                  f"--dataset={FLAGS.dataset} does not use it")
    if FLAGS.dataset in ("mnist", "images"):
        if not FLAGS.data_dir:
            raise _cli.UsageError(f"--dataset={FLAGS.dataset} needs --data_dir, a folder with " + (
                "the MNIST IDX files" if FLAGS.dataset == "mnist"
                else "a subfolder of image files per class"))
        kwargs["data_dir"] = _cli.expand("data_dir", FLAGS.data_dir)
        if FLAGS.image_size:
            kwargs["size"] = tuple(int(d) for d in FLAGS.image_size)
    elif FLAGS.dataset == "csv":
        if not FLAGS.csv_path or not FLAGS.target:
            raise _cli.UsageError("--dataset=csv needs --csv_path=FILE and --target=COLUMN")
        kwargs.update(csv_path=_cli.expand("csv_path", FLAGS.csv_path), target=FLAGS.target,
                      drop=[name.strip() for name in FLAGS.drop_columns if name.strip()])
    elif FLAGS.dataset == "npz":
        if not FLAGS.npz_path:
            raise _cli.UsageError("--dataset=npz needs --npz_path=FILE, a numpy.savez file with x "
                                  "and y")
        kwargs["npz_path"] = _cli.expand("npz_path", FLAGS.npz_path)
    elif FLAGS.dataset == "sort":
        kwargs.update(n=FLAGS.sort_examples, length=FLAGS.sort_length, vocab=FLAGS.sort_symbols)
    if FLAGS.task != "auto":
        kwargs["task"] = FLAGS.task
    if FLAGS.dataset in ("digits", "mnist", "images"):
        kwargs["standardize"] = FLAGS.pixel_scaling
    elif FLAGS.pixel_scaling != FLAGS["pixel_scaling"].default:  # npz images take it too
        if FLAGS.dataset != "npz":
            raise _cli.UsageError(f"--pixel_scaling is for image data (digits, mnist, images, "
                                  f"npz images), but --dataset={FLAGS.dataset} is not")
        kwargs["standardize"] = FLAGS.pixel_scaling
    import sys
    import warnings

    if before_reading is not None and FLAGS.dataset == "images":
        shape = data.preview_images(
            **{k: v for k, v in kwargs.items() if k in ("data_dir", "seed", "size")})
        before_reading(data.as_images(shape) if model == "cnn" else shape)  # as loaded below
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", data.DataWarning)
        ds = data.load(FLAGS.dataset, **kwargs)
    for w in caught:  # one line each, on stderr, without Python's warning decoration
        if issubclass(w.category, data.DataWarning):
            sys.stderr.write(f"warning: {w.message}\n")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if "standardize" in kwargs and FLAGS.dataset == "npz" and ds.image_shape is None:
        raise _cli.UsageError(f"--pixel_scaling is for image data, but {ds.name} "
                              f"('{kwargs['npz_path']}') holds a table of "
                              f"{ds.input_dim} features")
    if by_data and FLAGS.dataset == "npz" and ds.image_shape is not None:
        FLAGS.model = model = IMAGE_MODEL
        FLAGS["model"].using_default_value = True  # still the default: the data's
    if model == "cnn":
        if ds.image_shape is None:
            raise _cli.UsageError(f"--model=cnn needs image data (digits, mnist, images, npz "
                                  f"images), but "
                                  f"{ds.name} is flat: {ds.input_dim} features per example")
        ds = data.as_images(ds)
    return ds


def target_scale(ds: data.Dataset):
    """Regression: what turns an error in the standardised target back into the target's
    own units (the RMSE that train and evaluate report); None for classification."""
    return ds.info.get("y_std", 1.0) if ds.task == "regression" else None


def loss_name(ds: data.Dataset) -> str:
    """The loss for the data set: ``--loss`` checked against the task, or the task's default."""
    name = FLAGS.loss
    if name == "auto":
        return "xent" if ds.task == "classification" else "mse"
    if ds.task == "regression" and name in ("xent", "bce"):
        raise _cli.UsageError(f"--loss={name} needs class labels, but {ds.name} is a regression "
                              "data set; use --loss=mse or --loss=huber")
    if ds.task == "classification" and name in ("mse", "huber"):
        raise _cli.UsageError(f"--loss={name} is for regression, but {ds.name} is a classification "
                              "data set; use --loss=xent or --loss=bce")
    if name == "bce" and ds.num_classes != 2:
        raise _cli.UsageError(f"--loss=bce needs two classes, but {ds.name} has {ds.num_classes}; "
                              "use --loss=xent")
    return name


def check_model_flags() -> None:
    """A UsageError when a flag of another model (``MODEL_FLAGS``) is given, on the command
    line or away from its default: ``--hidden`` with the CNN would be ignored."""
    if "model" not in FLAGS:
        return
    for other, names in MODEL_FLAGS.items():
        for name in names:
            if other == FLAGS.model or name not in FLAGS or not _cli.given(name):
                continue
            chosen = ""
            if FLAGS["model"].using_default_value and FLAGS.model != FLAGS["model"].default:
                chosen = ", the default for image data a user brings" + (
                    f"; give --model={other} to use --{name}" if other != "transformer" else
                    "; --model=transformer is for token sequences (--dataset=sort)")
            raise _cli.UsageError(f"--{name} is for --model={other}, but this run's model is "
                                  f"{FLAGS.model}{chosen}")


def build_model(ds: data.Dataset, loss: str):
    """The ``--model`` for this data set, with as many outputs as the loss needs; a model
    that does not fit the data (a kernel larger than the image) is a UsageError."""
    from gdlab import models

    check_model_flags()
    outputs = 1 if loss == "bce" else ds.num_outputs
    if FLAGS.model == "linear":
        model = models.linear(outputs)
    elif FLAGS.model == "mlp":
        model = models.mlp([*_cli.int_list(FLAGS.hidden), outputs], FLAGS.activation)
    elif FLAGS.model == "cnn":
        model = models.cnn(outputs, channels=_cli.int_list(FLAGS.channels),
                           kernel_size=FLAGS.kernel, padding=FLAGS.padding)
    else:
        vocab = FLAGS.vocab_size or ds.num_classes
        largest = int(max(ds.x_train.max(), ds.x_test.max()))
        if largest >= vocab:
            raise _cli.UsageError(f"token id {largest} in {ds.name} is >= --vocab_size={vocab}; "
                                  f"use --vocab_size={largest + 1} or more (0 takes the data's)")
        if FLAGS.width % FLAGS.heads:
            raise _cli.UsageError(f"--heads={FLAGS.heads} must divide --width={FLAGS.width}")
        model = models.transformer(vocab, outputs, max_len=ds.input_shape[0], width=FLAGS.width,
                                   depth=FLAGS.depth, num_heads=FLAGS.heads, causal=FLAGS.causal)
    from gdlab.layers import init_shapes

    try:
        init_shapes(model, ds.input_shape)
    except ValueError as e:
        raise _cli.UsageError(f"--model={FLAGS.model} does not fit {ds.name} "
                              f"({'x'.join(map(str, ds.input_shape))} per example): {e}") from None
    return model


def minibatch_size(ds: data.Dataset) -> int:
    """``--batch_size`` for this training set. Given on the command line it must fit the
    set (else one sentence); left at its default, a set smaller than the default trains
    in full batches of all its examples, with a warning that says so, and the flag takes
    that size: ``config.json`` and ``flags.txt`` record the batch the run used, so
    ``--flagfile=flags.txt`` replays it."""
    size = FLAGS.batch_size
    if FLAGS["batch_size"].using_default_value and size > ds.n_train >= 1:
        import sys

        sys.stderr.write(f"warning: {ds.name} has {ds.n_train} training examples, fewer than "
                         f"the default --batch_size={size}; each batch holds all "
                         f"{ds.n_train}\n")
        FLAGS.batch_size = ds.n_train
        return ds.n_train
    if not 1 <= size <= ds.n_train:
        raise _cli.UsageError(f"--batch_size must be between 1 and {ds.n_train} (the training set "
                              f"size of {ds.name}), got {size}")
    return size


def batch_size(ds: data.Dataset) -> int:
    """The batch size ``--descent`` implies (``minibatch_size`` for minibatch descent)."""
    if FLAGS.descent == "minibatch":
        return minibatch_size(ds)
    return descent.batch_size_for(FLAGS.descent, ds.n_train)


def check_descent_flags() -> None:
    _cli.positive_float("lr", FLAGS.lr)
    check_optimizer_flags()


def check_optimizer_flags() -> None:
    """One sentence (exit 2) for a bad --momentum, --weight_decay or --weight_decay_on."""
    import math

    if not 0.0 <= FLAGS.momentum < 1.0:
        raise _cli.UsageError(f"--momentum must lie in [0, 1), got {FLAGS.momentum}")
    if not (math.isfinite(FLAGS.weight_decay) and FLAGS.weight_decay >= 0):
        raise _cli.UsageError(f"--weight_decay must be a finite number >= 0, got "
                              f"{FLAGS.weight_decay}")
    if FLAGS.weight_decay_on != "all" and FLAGS.weight_decay == 0:
        raise _cli.UsageError(f"--weight_decay_on={FLAGS.weight_decay_on} needs a decay to "
                              "restrict: give --weight_decay > 0")


def check_memory(model, optimizer, ds: data.Dataset | data.DataShape, batch_size: int,
                 configs: int = 1, *, basis_vectors: int = 0, epochs_kept: int = 0) -> None:
    """One sentence (exit 2) when the run would not fit in the device's memory (``ds`` the
    data, or its shapes before it is read);
    ``basis_vectors``: a Lanczos basis of that many parameter-sized vectors kept besides (at
    most one per parameter), with its small m × m eigenproblems; ``epochs_kept``: a float32
    loss per epoch that each configuration keeps (a sweep's curves)."""
    import jax

    from gdlab import train

    need = train.estimate_memory(model, optimizer, ds.input_shape, batch_size=batch_size,
                                 input_dtype=ds.x_dtype, data_bytes=ds.nbytes,
                                 configs=configs, eval_rows=max(ds.n_train, ds.n_test))
    if basis_vectors:  # the m vectors, and m × m Ritz problems (T, its eigenvectors, eigh's)
        _, params, _ = train.init_shapes(model, tuple(ds.input_shape))
        sizes = [(leaf.size, leaf.dtype.itemsize) for leaf in jax.tree.leaves(params)]
        m = min(basis_vectors, sum(n for n, _ in sizes))
        need += m * sum(n * b for n, b in sizes) + 4 * m * m * max(b for _, b in sizes)
    curves = 4 * configs * epochs_kept
    need += curves
    have = train.device_memory()
    if have is not None and need > have:
        what = f"{configs} configurations of {model.name}" if configs > 1 else model.name
        fixes = ["model", "batch"] + (["sweep"] if configs > 1 else [])
        fixes = "use a smaller " + ", ".join(fixes[:-1]) + " or " + fixes[-1]
        if curves > need / 2:
            fixes += " or fewer --epochs (each configuration keeps its loss per epoch)"
        if basis_vectors:
            fixes += " or --max_iters (the Lanczos basis)"
        if "image_size" in FLAGS and FLAGS.dataset == "images" and ds.image_shape is not None:
            fixes += ", or smaller images: " + _smaller_images(ds.image_shape, have / need)
        raise _cli.UsageError(f"{what} with batches of {batch_size} needs about "
                              f"{need / 2**30:.1f} GiB, more than the {have / 2**30:.1f} GiB of "
                              f"the {jax.default_backend()} device; {fixes}")


def _smaller_images(shape, room: float) -> str:
    """The ``--image_size`` hint of ``check_memory``: images of ``shape`` (H, W, C) whose run
    needs 1/``room`` of the memory there is, halved per side until their pixels fit with
    half the memory to spare (memory grows about with the pixels, in a dense layer's
    weights and in the activations)."""
    height, width, channels = shape
    k = 1
    while (k * 2 <= min(height, width)
           and (1 / k) ** 2 > room / 2):
        k *= 2
    return (f"these are {height}×{width}×{channels}; --image_size resizes them as they are "
            f"read, e.g. --image_size={max(height // k, 1)},{max(width // k, 1)}")


def learning_rate(lr, total_steps: int):
    """``lr`` under ``--schedule`` over ``total_steps``: a number or a schedule ``step -> lr``."""
    return lr if FLAGS.schedule == "constant" else optim.get_schedule(FLAGS.schedule, lr, total_steps)


def describe_optimizer() -> str:
    """The optimizer flags in a few words: ``momentum (β=0.9), cosine schedule, weight decay
    0.01 on weights``; only what differs from plain."""
    words = FLAGS.optimizer
    if FLAGS.optimizer in ("momentum", "nesterov"):
        words += f" (β={FLAGS.momentum:g})"
    if FLAGS.schedule != "constant":
        words += f", {FLAGS.schedule} schedule"
    if FLAGS.weight_decay > 0:
        words += f", weight decay {FLAGS.weight_decay:g}"
        if FLAGS.weight_decay_on != "all":
            words += f" on {FLAGS.weight_decay_on}"
    return words


def build_optimizer(lr, total_steps: int) -> optim.Optimizer:
    """``--optimizer`` at ``lr`` (a number, or a traced one in a sweep) with ``--schedule``
    over ``total_steps``, ``--momentum``, ``--weight_decay`` and ``--weight_decay_on``."""
    rate = learning_rate(lr, total_steps)
    kwargs = {}
    if FLAGS.optimizer in ("momentum", "nesterov"):
        kwargs["momentum"] = FLAGS.momentum
    if FLAGS.weight_decay > 0 or FLAGS.optimizer == "adamw":
        kwargs["weight_decay"] = FLAGS.weight_decay
        kwargs["weight_decay_mask"] = WEIGHT_DECAY_ON[FLAGS.weight_decay_on]
    return optim.get(FLAGS.optimizer, rate, **kwargs)


def data_summary(ds, digest: str | None = None) -> dict:
    """The data set's entries in an experiment's ``summary.json``: its one-line description,
    the warnings printed when it was read, and its ``data_digest`` (``digest``, when the
    caller already has it)."""
    from gdlab import data

    return {"dataset": data.describe(ds), "data_warnings": list(ds.info.get("warnings", ())),
            "data_digest": digest or data_digest(ds)}


def data_digest(ds) -> str:
    """A SHA-256 of the data set as the run trained on it: the train and test arrays, shapes
    and dtypes included (whatever the source: a changed cell, label, image or split changes
    it). ``experiments.evaluate`` compares it, and warns when the data read now differs;
    ``experiments.train --resume`` compares its checkpoint's, and warns too."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(memoryview(a).cast("B"))
    return digest.hexdigest()
