"""toplib.metrics against hand-worked values and scikit-learn / scipy."""
import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from toplib.data import TaskSpec
from toplib.data.metrics import compute_metrics, primary_metric, score

# Confusion matrix TP=4, FN=2, FP=1, TN=3 (positive = 1)
LABELS = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
PREDS = np.array([1, 1, 1, 1, 0, 0, 1, 0, 0, 0])
LOGITS = np.eye(2)[PREDS] * 3.0 - 1.0  # (B, 2), argmax = PREDS


@pytest.mark.parametrize("task, expected", [
    ("cola", {"matthews": (4 * 3 - 1 * 2) / np.sqrt(5 * 6 * 4 * 5)}),
    ("mrpc", {"f1": 2 * 4 / (2 * 4 + 1 + 2), "accuracy": 0.7}),
    ("qqp", {"f1": 8 / 11, "accuracy": 0.7}),
    ("sst2", {"accuracy": 0.7}),
    ("rte", {"accuracy": 0.7}),
])
def test_hand_computed_confusion_matrix(task, expected):
    metrics = compute_metrics(task, LOGITS, LABELS)
    assert list(metrics) == list(expected)  # primary first
    assert metrics == pytest.approx(expected)
    assert all(type(v) is float for v in metrics.values())


def test_class_ids_accepted_and_mnli_three_way():
    assert compute_metrics("sst2", PREDS, LABELS) == {"accuracy": 0.7}
    logits = np.array([[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0], [3.0, 0, 0]])
    assert compute_metrics("mnli", logits, np.array([0, 1, 1, 2])) == {"accuracy": 0.5}


def test_regression_hand_values():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert compute_metrics("stsb", x[:, None], 2 * x + 1) == pytest.approx(
        {"pearson": 1.0, "spearman": 1.0})
    # monotone but not linear: Spearman 1, Pearson < 1
    out = compute_metrics("stsb", x, x ** 3)
    assert out["spearman"] == pytest.approx(1.0) and out["pearson"] < 0.99
    assert compute_metrics("stsb", -x, x) == pytest.approx({"pearson": -1.0, "spearman": -1.0})


def test_constant_regression_scores_zero_not_nan():
    assert compute_metrics("stsb", np.ones(5), np.arange(5.0)) == {"pearson": 0.0, "spearman": 0.0}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn_and_scipy_random(seed):
    rng = np.random.default_rng(seed)
    logits, labels = rng.normal(size=(200, 2)), rng.integers(0, 2, 200)
    preds = logits.argmax(-1)
    assert compute_metrics("cola", logits, labels)["matthews"] == pytest.approx(
        matthews_corrcoef(labels, preds))
    assert compute_metrics("qqp", logits, labels) == pytest.approx(
        {"f1": f1_score(labels, preds), "accuracy": accuracy_score(labels, preds)})
    scores, gold = rng.normal(size=(200, 1)), rng.uniform(0, 5, 200)
    assert compute_metrics("stsb", scores, gold) == pytest.approx(
        {"pearson": stats.pearsonr(scores[:, 0], gold)[0],
         "spearman": stats.spearmanr(scores[:, 0], gold)[0]})


def test_primary_metric_and_score():
    assert [primary_metric(t) for t in ("cola", "mrpc", "stsb", "mnli", "20news")] == [
        "matthews", "f1", "pearson", "accuracy", "accuracy"]
    assert score("mrpc", {"accuracy": 0.8, "f1": 0.9}) == 0.9
    spec = TaskSpec("custom", 1, ("pearson", "spearman"), 128, ("sentence",))
    assert primary_metric(spec) == "pearson"
    assert compute_metrics(spec, np.arange(3.0), np.arange(3.0)) == pytest.approx(
        {"pearson": 1.0, "spearman": 1.0})
    with pytest.raises(ValueError, match="lacks the primary metric 'matthews'"):
        score("cola", {"accuracy": 1.0})


def test_length_mismatch_is_reported():
    with pytest.raises(ValueError, match="predictions has 3 rows but labels has 2"):
        compute_metrics("sst2", np.zeros((3, 2)), np.zeros(2))


@pytest.mark.parametrize("seed", [0, 1])
def test_chance_scores_are_the_label_blind_guesses_scikit_learn_scores(seed):
    from sklearn.dummy import DummyClassifier

    from toplib.data import chance_scores
    labels = np.random.default_rng(seed).choice(2, size=101, p=[0.3, 0.7])
    x = np.zeros((len(labels), 1))
    majority = DummyClassifier(strategy="most_frequent").fit(x, labels).score(x, labels)
    assert chance_scores("sst2", labels) == pytest.approx({"accuracy": majority})
    # MRPC/QQP: F1 of always answering positive, accuracy of the majority class
    assert chance_scores("qqp", 1 - labels) == pytest.approx(
        {"f1": f1_score(1 - labels, np.ones_like(labels)), "accuracy": majority})
    assert chance_scores("cola", labels) == {"matthews": 0.0}
    assert matthews_corrcoef(labels, np.ones_like(labels)) == 0.0  # any constant guess


def test_chance_scores_hand_values():
    from toplib.data import chance_scores
    # 3 positives of 4: majority accuracy 3/4; F1 of all-positive 2*3 / (2*3 + 1) = 6/7
    assert chance_scores("mrpc", [1, 0, 1, 1]) == pytest.approx({"f1": 6 / 7, "accuracy": 0.75})
    assert chance_scores("mnli", [2, 2, 0, 1, 2]) == pytest.approx({"accuracy": 0.6})
    assert chance_scores("stsb", [0.5, 3.2, 4.0]) == {"pearson": 0.0, "spearman": 0.0}
    with pytest.raises(ValueError, match="labels is empty"):
        chance_scores("sst2", [])
