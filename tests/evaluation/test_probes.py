import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import StandardScaler

from ldm_pyro.data import ArrayDataset, load_digits_split
from ldm_pyro.encoders import build_encoder
from ldm_pyro.evaluation import (
    ProbeRow,
    format_probe_table,
    knn_accuracy,
    linear_probe_accuracy,
    probe_report,
)


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def flat(x):
    return x.reshape(x.shape[0], -1).numpy()


def test_linear_probe_raw_pixels_digits(digits):
    accuracy = linear_probe_accuracy(
        digits.x_train, digits.y_train, digits.x_test, digits.y_test
    )
    # Standardized logistic regression on the 64 raw pixels reaches about 0.97.
    assert accuracy >= 0.95


def test_linear_probe_matches_sklearn_by_hand(digits):
    # Reference: the scaler and the classifier fitted step by step.
    scaler = StandardScaler().fit(flat(digits.x_train))
    classifier = LogisticRegression(max_iter=5000, random_state=0)
    classifier.fit(scaler.transform(flat(digits.x_train)), digits.y_train.numpy())
    predicted = classifier.predict(scaler.transform(flat(digits.x_test)))
    expected = accuracy_score(digits.y_test.numpy(), predicted)
    accuracy = linear_probe_accuracy(
        digits.x_train, digits.y_train, digits.x_test, digits.y_test, seed=0
    )
    assert accuracy == expected


def knn_by_hand(train, train_labels, test, test_labels, k, metric):
    if metric == "cosine":
        a = train / np.linalg.norm(train, axis=1, keepdims=True)
        b = test / np.linalg.norm(test, axis=1, keepdims=True)
        distance = 1.0 - b @ a.T
    else:
        distance = np.linalg.norm(test[:, None] - train[None], axis=-1)
    nearest = np.argsort(distance, axis=1, kind="stable")[:, :k]
    votes = train_labels[nearest]
    # Majority vote, where np.argmax of the bincount picks the smallest label on ties.
    predicted = np.array([np.argmax(np.bincount(row)) for row in votes])
    return float(np.mean(predicted == test_labels))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_knn_matches_hand_computation(metric):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 5))
    labels = rng.integers(0, 3, size=300)
    features = centres[labels] + rng.normal(size=(300, 5))
    train, test = features[:200], features[200:]
    expected = knn_by_hand(train, labels[:200], test, labels[200:], 7, metric)
    accuracy = knn_accuracy(train, labels[:200], test, labels[200:], k=7, metric=metric)
    assert accuracy == expected


def test_knn_raw_pixels_digits(digits):
    accuracy = knn_accuracy(
        digits.x_train, digits.y_train, digits.x_test, digits.y_test
    )
    assert accuracy >= 0.95


def test_probes_on_noise_near_chance(digits):
    # Features independent of the labels: accuracy ~ 1/10, and 0.2 is more than
    # 6 standard errors (sqrt(0.09 / 450) = 0.014) above chance.
    rng = np.random.default_rng(1)
    train = rng.normal(size=(len(digits.y_train), 32))
    test = rng.normal(size=(len(digits.y_test), 32))
    linear = linear_probe_accuracy(train, digits.y_train, test, digits.y_test)
    knn = knn_accuracy(train, digits.y_train, test, digits.y_test)
    assert linear < 0.2
    assert knn < 0.2


def test_random_encoder_keeps_information(digits):
    # A random MLP of the pixels is a random feature map: a linear probe on it
    # stays far above chance.
    encoder = build_encoder("mlp", digits.input_shape, 64, hidden=[128])
    with torch.no_grad():
        train = encoder(digits.x_train.double())
        test = encoder(digits.x_test.double())
    accuracy = linear_probe_accuracy(train, digits.y_train, test, digits.y_test)
    assert accuracy > 0.8


def test_probe_report_rows(digits):
    # Small feature widths keep the L-BFGS fits short.
    settings = dict(hidden=[4, 8], projector=[], feature_dim=16)
    encoder = build_encoder("cnn", digits.input_shape, 8, **settings)
    random_encoder = build_encoder("cnn", digits.input_shape, 8, **settings)

    def features(x):
        return encoder.features(x.double())

    def random_features(x):
        return random_encoder.features(x.double()).numpy()

    rows = probe_report(features, digits, random_features, batch_size=500)
    assert [row.name for row in rows] == [
        "encoder",
        "random encoder (same architecture)",
        "raw pixels",
    ]
    assert all(isinstance(row, ProbeRow) for row in rows)
    raw = rows[-1]
    assert raw.linear_accuracy == linear_probe_accuracy(
        digits.x_train, digits.y_train, digits.x_test, digits.y_test
    )
    assert raw.knn_accuracy == knn_accuracy(
        digits.x_train, digits.y_train, digits.x_test, digits.y_test
    )
    with torch.no_grad():
        expected = linear_probe_accuracy(
            features(digits.x_train),
            digits.y_train,
            features(digits.x_test),
            digits.y_test,
        )
    assert rows[0].linear_accuracy == expected


def test_probe_report_without_random_encoder(digits):
    rows = probe_report(lambda x: x.flatten(1), digits, knn_k=3)
    assert [row.name for row in rows] == ["encoder", "raw pixels"]
    assert rows[0] == ProbeRow("encoder", *rows[1][1:])


def test_probe_report_rejects_unlabelled():
    x = torch.rand(10, 4)
    dataset = ArrayDataset(x[:8], None, x[8:], None, "unlabelled")
    with pytest.raises(ValueError, match="'unlabelled' has no labels"):
        probe_report(lambda v: v, dataset)


def test_format_probe_table():
    rows = [ProbeRow("encoder", 0.9123, 0.95), ProbeRow("raw pixels", 0.96889, 1.0)]
    table = format_probe_table(rows)
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[0].split() == ["features", "linear", "probe", "(%)", "kNN", "(%)"]
    assert lines[2].split() == ["encoder", "91.23", "95.00"]
    assert lines[3].split() == ["raw", "pixels", "96.89", "100.00"]
    assert len({len(line) for line in lines}) == 1


def test_probes_reject_bad_inputs():
    x = np.ones((6, 3))
    y = np.array([0, 1, 0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"train_labels must have shape \(6,\)"):
        linear_probe_accuracy(x, y[:5], x, y)
    with pytest.raises(ValueError, match="same number of features, got 3 and 2"):
        knn_accuracy(x, y, x[:, :2], y)
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 6\]"):
        knn_accuracy(x, y, x, y, k=7)
    with pytest.raises(ValueError, match="metric must be one of"):
        knn_accuracy(x, y, x, y, metric="manhattan")
    with pytest.raises(ValueError, match="at least 2 classes"):
        linear_probe_accuracy(x, np.zeros(6), x, y)
    with pytest.raises(ValueError, match="non-finite"):
        linear_probe_accuracy(np.full((6, 3), np.nan), y, x, y)
