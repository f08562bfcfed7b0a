"""Real-data structure: sparse MNIST-like images (mostly blank borders, rare stray strokes)
as IDX and CSV files train with the default flags; per-pixel standardisation warns about
the extreme features it makes; divergence names the input scale; collapse is "degraded"."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_bad_input, run_experiment

from gdlab import data
from gdlab.data import write_idx

N_TRAIN, N_TEST = 3000, 1000
ACCURACY_BAR = 0.9


def mnist_like(n: int, seed: int):
    """28×28 uint8 images of 10 classes, each class three strokes in the central 20×20
    region (shifted ±2 pixels, intensity jittered), and in 2% of images one stray stroke in
    the 4-pixel border that is otherwise always blank, as in real MNIST."""
    templates = np.random.default_rng(1234)  # the classes are the same for every split
    strokes = [[(templates.integers(6, 22, 2), templates.integers(6, 22, 2)) for _ in range(3)]
               for _ in range(10)]
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = np.zeros((n, 28, 28), np.float64)
    t = np.linspace(0.0, 1.0, 24)
    for i, c in enumerate(labels):
        dy, dx = rng.integers(-2, 3, 2)
        for (r0, r1), (c0, c1) in strokes[c]:
            rows = np.clip(np.round(r0 + (r1 - r0) * t + dy).astype(int), 4, 23)
            cols = np.clip(np.round(c0 + (c1 - c0) * t + dx).astype(int), 4, 23)
            images[i, rows, cols] = rng.uniform(150, 255)
        if rng.random() < 0.02:  # a stray stroke in the blank border
            r, col = rng.integers(0, 4), rng.integers(0, 28)
            images[i, r, col:col + 3] = rng.uniform(100, 255)
    return images.astype(np.uint8), labels


@pytest.fixture(scope="module")
def sparse_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnist_like")
    x_train, y_train = mnist_like(N_TRAIN, seed=0)
    x_test, y_test = mnist_like(N_TEST, seed=1)
    write_idx(folder / "train-images-idx3-ubyte.gz", x_train)
    write_idx(folder / "train-labels-idx1-ubyte.gz", y_train)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", x_test)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", y_test)
    rows = ["label," + ",".join(f"p{k}" for k in range(784))]
    for img, label in zip(np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])):
        rows.append(f"{label}," + ",".join(map(str, img.ravel())))
    (folder / "digits.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_the_images_have_mnists_sparse_structure(sparse_files):
    images = data.read_idx(sparse_files / "train-images-idx3-ubyte.gz")
    border = np.concatenate([images[:, :4].reshape(N_TRAIN, -1), images[:, -4:].reshape(N_TRAIN, -1)],
                            axis=1)
    assert (border > 0).mean() < 0.002 and (border > 0).any(axis=1).mean() > 0.01
    ever = (border > 0).sum(axis=0)
    assert ((ever >= 1) & (ever <= 2)).sum() >= 20  # pixels lit in one or two images only


def test_global_pixel_normalisation_is_one_map_for_every_pixel(sparse_files):
    ds = data.load("mnist", data_dir=str(sparse_files))
    assert ds.info["scaling"] == "global" and np.ndim(ds.info["x_mean"]) == 0
    raw = data.read_idx(sparse_files / "train-images-idx3-ubyte.gz").reshape(N_TRAIN, -1) / 255
    np.testing.assert_allclose(ds.x_train, (raw - raw.mean()) / raw.std(), rtol=1e-5, atol=1e-5)
    assert ds.info["max_abs_x_test"] < 10 and "warnings" not in ds.info
    with pytest.warns(data.DataWarning, match="beyond 50 after scaling"):
        per_pixel = data.load("mnist", data_dir=str(sparse_files), standardize="per_pixel")
    assert per_pixel.info["max_abs_x_train"] > 50


def test_default_mnist_command_trains_and_the_per_pixel_path_warns(sparse_files, tmp_path):
    r = run_experiment("train", "--dataset=mnist", f"--data_dir={sparse_files}", "--hidden=256",
                       f"--workdir={tmp_path / 'global'}")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "global" / "summary.json").read_text())
    assert summary["status"] == "completed", summary
    assert summary["test_accuracy"] >= ACCURACY_BAR
    assert summary["max_abs_x_test"] < 10 and "warning" not in r.stderr
    r = run_experiment("train", "--dataset=mnist", f"--data_dir={sparse_files}", "--hidden=256",
                       "--pixel_scaling=per_pixel", "--epochs=2", f"--workdir={tmp_path / 'pp'}")
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings and all("beyond 50 after scaling" in w for w in warnings)
    assert "Traceback" not in r.stderr and "DataWarning" not in r.stderr


def test_the_same_images_as_a_csv_table_train_with_the_scale_floor(sparse_files, tmp_path):
    r = run_experiment("train", "--dataset=csv", f"--csv_path={sparse_files / 'digits.csv'}",
                       "--target=label", "--hidden=256", f"--workdir={tmp_path}")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed", summary
    assert summary["test_accuracy"] >= ACCURACY_BAR
    assert summary["max_abs_x_train"] <= 10.0 + 1e-4  # the floor: no training feature beyond 10
    assert "columns are mostly one value with rare large ones" in r.stderr


def test_divergence_names_extreme_inputs_not_the_learning_rate(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = x @ [1.0, -2.0, 0.5]
    _, test_rows = data.split_indices(200, seed=0, test_fraction=0.2)
    x[test_rows[0], 0] = 1e4  # one test row far outside anything in training
    path = tmp_path / "t.csv"
    path.write_text("a,b,c,y\n" + "\n".join(",".join(f"{v:.6g}" for v in (*row, t))
                                            for row, t in zip(x, y)) + "\n")
    r = run_experiment("train", "--dataset=csv", f"--csv_path={path}", "--target=y",
                       "--model=linear", "--lr=100", "--epochs=3", f"--workdir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["max_abs_x_test"] > 1000
    assert "inputs are extreme" in r.stdout and "likely too large" not in r.stdout
    assert "warning: csv: 1 features of the test split lie beyond 50" in r.stderr
    # the same table without the outlier: the learning rate is named
    x[test_rows[0], 0] = 0.0
    path.write_text("a,b,c,y\n" + "\n".join(",".join(f"{v:.6g}" for v in (*row, t))
                                            for row, t in zip(x, y)) + "\n")
    r = run_experiment("train", "--dataset=csv", f"--csv_path={path}", "--target=y",
                       "--model=linear", "--lr=100", "--epochs=3", f"--workdir={tmp_path / 'r2'}")
    assert "lr=100.0 is likely too large: try --lr=10" in r.stdout
    assert "--model=cnn" not in r.stdout  # a table: no convolutions to offer
    # an MLP on images is also pointed at the CNN, with the defaults that model brings
    r = run_experiment("train", "--lr=100", "--epochs=1", f"--workdir={tmp_path / 'r3'}")
    assert ("lr=100.0 is likely too large: try --lr=10, or --model=cnn for images, with its "
            "own defaults (--optimizer=adam, --lr=0.002, --epochs=30, --schedule=cosine)"
            ) in r.stdout, r.stdout


def test_collapse_rule():
    from experiments.train import collapsed

    rows = [{"test_accuracy": a} for a in (0.5, 0.9, 0.95, 0.12)]
    assert collapsed(rows, 10)  # best 0.95 > 0.3, last 0.12 < 0.15
    assert not collapsed(rows[:-1], 10)
    assert not collapsed([{"test_accuracy": 0.9}, {"test_accuracy": 0.5}], 2)  # two classes
    # the thresholds themselves, for ten classes: best above 3x chance (0.3), last below
    # 1.5x chance (0.15); a run that dipped and recovered has not collapsed
    assert not collapsed([{"test_accuracy": a} for a in (0.25, 0.05)], 10)
    assert collapsed([{"test_accuracy": a} for a in (0.31, 0.05)], 10)
    assert not collapsed([{"test_accuracy": a} for a in (0.9, 0.16)], 10)
    assert collapsed([{"test_accuracy": a} for a in (0.9, 0.14)], 10)
    assert not collapsed([{"test_accuracy": a} for a in (0.9, 0.05, 0.9)], 10)


def passengers(n: int, seed: int = 0):
    """A table as users bring it: an id, a name, text categories (one with blanks), numbers
    (a fifth of the ages missing), and a text outcome drawn from a known logistic model;
    returns the CSV text and the complete features as numbers (one-hot by hand, every age
    known) with the outcomes, for a reference model."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["male", "female"], n)
    klass = rng.choice([1, 2, 3], n, p=[0.25, 0.25, 0.5])
    age = rng.uniform(1, 70, n).round(1)
    port = rng.choice(["S", "C", "Q", ""], n, p=[0.7, 0.18, 0.1, 0.02])
    logit = 4.0 * (sex == "female") - 1.5 * (klass - 2) - 0.04 * (age - 30) - 1.5
    survived = rng.random(n) < 1 / (1 + np.exp(-logit))
    written = np.where(rng.random(n) < 0.2, "", age.astype(str))
    lines = ['PassengerId,"Name, full",Sex,Class,Age,Port,Outcome'] + [
        f"{i + 1},Passenger {i} {rng.integers(10**6)},{sex[i]},{klass[i]},{written[i]},{port[i]},"
        f"{'survived' if survived[i] else 'died'}" for i in range(n)]
    features = np.column_stack([sex == "female", klass, age] + [port == p for p in "SCQ"])
    return "\n".join(lines) + "\n", features.astype(float), survived.astype(int)


def test_a_table_with_text_columns_trains_with_the_defaults(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    text, features, outcome = passengers(1000)
    path = tmp_path / "passengers.csv"
    path.write_text(text)
    r = run_experiment("train", "--dataset=csv", f"--csv_path={path}", "--target=Outcome",
                       f"--workdir={tmp_path / 'names'}")
    assert r.returncode == 2 and "column 'Name, full' holds 1000 distinct text values" in r.stderr
    assert "--drop_columns" in r.stderr and "Traceback" not in r.stderr
    r = run_experiment("train", "--dataset=csv", f"--csv_path={path}", "--target=Outcome",
                       '--drop_columns="Name, full",PassengerId', f"--workdir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    # the name with a comma is quoted where the run's flags are written down, so flags.txt
    # replays the run and evaluate (below) restores it
    flags_txt = (tmp_path / "run" / "flags.txt").read_text().splitlines()
    assert '--drop_columns="Name, full",PassengerId' in flags_txt, flags_txt
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed", summary
    assert "2 classes" in summary["dataset"] and "9 features" in summary["dataset"]  # 2+1+2+4
    assert "warning: csv: " in r.stderr and "missing values in 1 column (Age)" in r.stderr
    kept = [w for w in summary["data_warnings"] if "missing values in 1 column (Age)" in w]
    assert len(kept) == 1 and f"warning: {kept[0]}\n" in r.stderr  # the run keeps what it said
    # the reference: scikit-learn's logistic regression on the same split and encoding
    train, test = data.split_indices(len(outcome), seed=0, test_fraction=0.2)
    scaler = StandardScaler().fit(features[train])
    reference = LogisticRegression().fit(scaler.transform(features[train]), outcome[train])
    bar = reference.score(scaler.transform(features[test]), outcome[test])
    assert bar > 0.75  # the table has signal to learn
    assert summary["test_accuracy"] >= bar - 0.05, (summary["test_accuracy"], bar)
    r = run_experiment("evaluate", f"--workdir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    assert f"accuracy {summary['test_accuracy']:.4g}" in r.stdout
    r = run_experiment("train", "--dataset=csv", f"--csv_path={path}", "--target=Outcome",
                       '--drop_columns="Name, full"', "--resume", f"--workdir={tmp_path / 'run'}")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr  # (after the Age note)
    assert ('error: --resume: ' in r.stderr and 'was trained with --drop_columns="Name, full",'
            'PassengerId, not --drop_columns="Name, full"; resume with' in r.stderr), r.stderr


def _correlated_table(path, n=600, columns=1500, factors=5):
    """A wide table as gene expression or spectra give: ``columns`` columns driven by a few
    hidden factors plus noise, and a class read off two of the factors."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(n, factors))
    x = z @ rng.normal(size=(factors, columns)) + 0.5 * rng.normal(size=(n, columns))
    y = (z[:, 0] + 0.5 * z[:, 1] > 0).astype(int)
    np.savetxt(path, np.column_stack([x, y]), fmt=["%.4f"] * columns + ["%d"], delimiter=",",
               header=",".join([f"g{i}" for i in range(columns)] + ["label"]), comments="")
    return x, y


def test_a_wide_table_of_correlated_columns_trains_with_the_defaults(tmp_path):
    """At digits' lr = 0.05 this table's training loss rose from 0.96 to 151 (the first
    layer's curvature grows with the columns that move together); the default is scaled
    to the inputs' curvature instead, and the run trains smoothly."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from gdlab import theory

    path = tmp_path / "wide.csv"
    x, y = _correlated_table(path)
    r = run_experiment("train", "--dataset=csv", f"--csv_path={path}", "--target=label",
                       f"--workdir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    ds = data.load("csv", csv_path=str(path), target="label")
    curvature = theory.input_curvature(ds.x_train, 32)
    assert curvature > 10 * 36
    assert config["lr"] == float(f"{0.05 * 36 / curvature:.2g}")
    assert (f"lr={config['lr']:g}, the default 0.05 scaled by 36/{curvature:.0f}: a batch of "
            f"these inputs has curvature {curvature:.0f}") in r.stdout
    assert f"--lr={config['lr']:g}" in (tmp_path / "run" / "flags.txt").read_text().splitlines()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    losses = [json.loads(line)["train_loss"]
              for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["status"] == "completed" and "warning" not in r.stderr
    assert max(losses[1:]) < losses[0] and losses[-1] < 0.05 * losses[0]
    train, test = data.split_indices(len(y), seed=0, test_fraction=0.2)
    scaler = StandardScaler().fit(x[train])
    reference = LogisticRegression().fit(scaler.transform(x[train]), y[train])
    bar = reference.score(scaler.transform(x[test]), y[test])
    assert summary["test_accuracy"] >= min(bar - 0.03, 0.95), (summary["test_accuracy"], bar)
    # --lr given keeps its value; so does the resume, which recomputes the same default
    r = run_experiment("train", "--dataset=csv", f"--csv_path={path}", "--target=label",
                       "--lr=0.05", "--epochs=1", f"--workdir={tmp_path / 'given'}")
    assert r.returncode == 0 and "scaled by" not in r.stdout, r.stderr
    assert json.loads((tmp_path / "given" / "config.json").read_text())["lr"] == 0.05
    r = run_experiment("train", "--dataset=csv", f"--csv_path={path}", "--target=label",
                       "--resume", f"--workdir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr


def test_a_regression_trains_with_the_defaults_at_a_rate_scaled_to_its_sharpness(tmp_path):
    """diabetes' MLP starts at sharpness 49 under mse, and at lr = 0.05 it diverged at step 45;
    the default is scaled by 30/λ0 instead (mse's curvature does not fall as it trains)."""
    r = run_experiment("train", "--dataset=diabetes", f"--workdir={tmp_path}")
    assert r.returncode == 0, r.stderr
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["lr"] == 0.031
    assert ("lr=0.031, the default 0.05 scaled by 30/49: the mse loss's sharpness at the "
            "initial weights is 49") in r.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    losses = [json.loads(line)["train_loss"]
              for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert summary["status"] == "completed" and losses[-1] < 0.15 * losses[0], losses
    assert summary["test_rmse"] < 60  # the target's standard deviation is 79


def test_digits_keep_the_default_learning_rate(tmp_path):
    from gdlab import theory

    ds = data.load("digits")
    assert theory.input_curvature(ds.x_train, 32) < 36  # the rule's reference: 33
    r = run_experiment("train", "--epochs=1", f"--workdir={tmp_path}")
    assert r.returncode == 0 and "scaled by" not in r.stdout, r.stderr
    assert json.loads((tmp_path / "config.json").read_text())["lr"] == 0.05


def test_images_as_numpy_arrays_train_with_the_defaults_and_the_cnn(tmp_path, sparse_files):
    """The MNIST-like images saved with numpy.savez: the MLP of the MNIST command, and the
    default for images a user brings, the CNN (the images keep their shape), train as the
    IDX files do."""
    path = tmp_path / "images.npz"
    np.savez_compressed(
        path, x_train=data.read_idx(sparse_files / "train-images-idx3-ubyte.gz"),
        y_train=data.read_idx(sparse_files / "train-labels-idx1-ubyte.gz"),
        x_test=data.read_idx(sparse_files / "t10k-images-idx3-ubyte.gz"),
        y_test=data.read_idx(sparse_files / "t10k-labels-idx1-ubyte.gz"))
    for name, flags in (("mlp", ["--model=mlp", "--hidden=256"]), ("cnn", ["--epochs=2"])):
        r = run_experiment("train", "--dataset=npz", f"--npz_path={path}", *flags,
                           f"--workdir={tmp_path / name}")
        assert r.returncode == 0, r.stderr
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["status"] == "completed", summary
        assert summary["test_accuracy"] >= ACCURACY_BAR, (name, summary["test_accuracy"])
        assert "3000 train / 1000 test" in summary["dataset"]
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert config["model"] == name and config["optimizer"] == (
            "adam" if name == "cnn" else "momentum")
    # --pixel_scaling reaches npz images too: per pixel, the rare border strokes warn
    r = run_experiment("train", "--dataset=npz", f"--npz_path={path}", "--model=mlp",
                       "--hidden=16", "--epochs=1", "--pixel_scaling=per_pixel",
                       f"--workdir={tmp_path / 'pp'}")
    assert r.returncode == 0, r.stderr
    assert "beyond 50 after scaling" in r.stderr
    assert json.loads((tmp_path / "pp" / "config.json").read_text())["pixel_scaling"] == "per_pixel"


def test_images_as_png_folders_train_with_the_defaults(tmp_path, sparse_files):
    """The MNIST-like images written as PNG files in train/<class>/ and test/<class>/: the
    MLP of the MNIST command trains on them as on the IDX files."""
    from PIL import Image

    for split, stem in (("train", "train"), ("test", "t10k")):
        images = data.read_idx(sparse_files / f"{stem}-images-idx3-ubyte.gz")
        labels = data.read_idx(sparse_files / f"{stem}-labels-idx1-ubyte.gz")
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = tmp_path / "png" / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i}.png")
    r = run_experiment("train", "--dataset=images", f"--data_dir={tmp_path / 'png'}",
                       "--model=mlp", "--hidden=256", f"--workdir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed", summary
    assert summary["test_accuracy"] >= ACCURACY_BAR
    assert "3000 train / 1000 test, 784 features, 10 classes" in summary["dataset"]
    r = run_experiment("train", "--dataset=images", f"--workdir={tmp_path / 'none'}")
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: --dataset=images needs --data_dir, a folder with a subfolder of image files "
        "per class")


def colour_pictures(folder, n_per_class: int = 60, size: int = 16, seed: int = 0) -> None:
    """Three classes of bars (horizontal, vertical, diagonal), each in a random colour on a
    background of random colour and brightness: pixels that move together from picture to
    picture, as in photos, which the MLP's first layer sums into a large curvature."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for label, name in enumerate(("horizontal", "vertical", "diagonal")):
        (folder / name).mkdir(parents=True)
        for i in range(n_per_class):
            image = np.ones((size, size, 3)) * rng.uniform(0, 255, 3)
            k = rng.integers(2, size - 4)
            image[[abs(yy - k) <= 1, abs(xx - k) <= 1,
                   abs(yy - xx - (k - size // 2)) <= 1][label]] = rng.uniform(0, 255, 3)
            Image.fromarray(image.astype(np.uint8)).save(folder / name / f"{i}.png")


def test_an_image_folder_trains_the_cnn_by_default(tmp_path):
    """--dataset=images (and npz images: test above) with no --model trains the CNN with its own defaults (recorded, so
    --flagfile replays it); the MLP, given explicitly, does much worse on colour pictures;
    an MLP flag with the CNN is refused, not ignored, and before any data is read."""
    colour_pictures(tmp_path / "pictures")
    runs = {}
    for name, flags in (("default", []), ("mlp", ["--model=mlp"])):
        r = run_experiment("train", "--dataset=images", f"--data_dir={tmp_path / 'pictures'}",
                           *flags, f"--workdir={tmp_path / name}")
        assert r.returncode == 0, r.stderr
        runs[name] = json.loads((tmp_path / name / "summary.json").read_text())
    config = json.loads((tmp_path / "default" / "config.json").read_text())
    assert (config["model"], config["optimizer"], config["lr"], config["epochs"]) == (
        "cnn", "adam", 0.002, 30)
    assert "--model=cnn" in (tmp_path / "default" / "flags.txt").read_text().splitlines()
    assert runs["default"]["status"] == "completed"
    assert runs["default"]["test_accuracy"] >= 0.85, runs["default"]
    assert runs["mlp"]["test_accuracy"] < runs["default"]["test_accuracy"] - 0.2, runs
    r = run_experiment("train", "--dataset=images", f"--data_dir={tmp_path / 'pictures'}",
                       "--hidden=256", f"--workdir={tmp_path / 'hidden'}")
    assert_bad_input(r, "--hidden is for --model=mlp, but this run's model is cnn, the default "
                        "for image data a user brings; give --model=mlp to use --hidden")
    assert not (tmp_path / "hidden").exists()
    # refused before any data is read: the folder need not even exist
    r = run_experiment("train", "--dataset=images", f"--data_dir={tmp_path / 'nowhere'}",
                       "--heads=2", f"--workdir={tmp_path / 'heads'}")
    assert_bad_input(r, "--heads is for --model=transformer, but this run's model is cnn, the "
                        "default for image data a user brings; --model=transformer is for "
                        "token sequences (--dataset=sort)")


def _big_pictures(root):
    """Two classes of three 600×800 grey pictures, and one cut short after its header: a
    preview reads its size, decoding it fails, so a run refused for its size rather than
    for that file was refused before the pictures were decoded."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        folder = root / label
        folder.mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (600, 800), dtype=np.uint8)).save(
                folder / f"{i}.png")
    (root / "b" / "z_broken.png").write_bytes((root / "b" / "0.png").read_bytes()[:200])


def test_pictures_too_large_for_the_model_are_refused_with_a_size_that_fits(tmp_path):
    """A run that would not fit in the device's memory is one sentence; for an image folder
    it names the pictures' size and an --image_size, halving each side, that fits."""
    _big_pictures(tmp_path / "big")
    r = run_experiment("train", "--dataset=images", f"--data_dir={tmp_path / 'big'}",
                       "--model=mlp", "--hidden=100000", "--batch_size=4",
                       f"--workdir={tmp_path / 'run'}")
    assert_bad_input(r, "needs about")  # before decoding: the broken file is not reached
    assert ("use a smaller model or batch, or smaller images: these are 600×800×1; "
            "--image_size resizes them as they are read, e.g. --image_size=") in r.stderr
    height, width = map(int, r.stderr.split("--image_size=")[-1].strip().split(","))
    assert (height, width) in {(600 // k, 800 // k) for k in (2, 4, 8, 16, 32, 64)}
    assert not (tmp_path / "run" / "summary.json").exists()
    r = run_experiment("train", "--dataset=images", f"--data_dir={tmp_path / 'big'}",
                       "--model=mlp", "--hidden=8", "--batch_size=4",
                       f"--workdir={tmp_path / 'run'}")
    assert_bad_input(r, "z_broken.png' cannot be read as an image")  # decoded: it is


@pytest.mark.parametrize("experiment", ["lr_sweep", "descent_modes"])
def test_the_other_experiments_size_an_image_folder_before_reading_it_too(tmp_path, experiment):
    _big_pictures(tmp_path / "big")
    r = run_experiment(experiment, "--dataset=images", f"--data_dir={tmp_path / 'big'}",
                       "--model=mlp", "--hidden=100000", "--batch_size=4",
                       f"--workdir={tmp_path / 'run'}")
    assert_bad_input(r, "needs about")
    assert "smaller images: these are 600×800×1" in r.stderr
    assert not (tmp_path / "run").exists()


def test_an_mlp_on_an_image_folder_is_sized_on_flat_pixels_before_reading(tmp_path):
    """The preview gives the MLP the flat pixels it will be given, as loading does: sized
    on (H, W, C) instead, its first layer ran per pixel and 16 configurations of an MLP on
    40 pictures of 400×400 were estimated at some 85 GiB and refused; they take under 2."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for label in ("a", "b"):
        (tmp_path / "pics" / label).mkdir(parents=True)
        for i in range(20):
            Image.fromarray(rng.integers(0, 256, (400, 400), dtype=np.uint8)).save(
                tmp_path / "pics" / label / f"{i}.png")
    r = run_experiment("lr_sweep", "--dataset=images", f"--data_dir={tmp_path / 'pics'}",
                       "--model=mlp", "--num=16", "--epochs=1", f"--workdir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "sweep.json").exists()



@pytest.mark.parametrize("experiment, output", [("lr_sweep", "sweep.json"),
                                                ("descent_modes", "modes.json")])
def test_the_sweeps_keep_the_datas_warnings_too(tmp_path, experiment, output):
    """What was printed about the data (here, the missing values filled) is kept in the
    results file, as train's summary.json keeps it."""
    rng = np.random.default_rng(3)
    a = [f"{v:.3f}" for v in rng.normal(size=60)]
    a[5] = ""  # one missing value
    rows = ["a,b,y"] + [f"{a[i]},{v:.3f},{i % 2}" for i, v in enumerate(rng.normal(size=60))]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    r = run_experiment(experiment, "--dataset=csv", f"--csv_path={tmp_path / 't.csv'}",
                       "--target=y", "--epochs=1", f"--workdir={tmp_path / 'run'}",
                       *(["--lrs=0.1,0.2"] if experiment == "lr_sweep" else []))
    assert r.returncode == 0, r.stderr
    kept = json.loads((tmp_path / "run" / output).read_text())["data_warnings"]
    assert len(kept) == 1 and "1 missing values in 1 column (a)" in kept[0], kept
    assert f"warning: {kept[0]}\n" in r.stderr
