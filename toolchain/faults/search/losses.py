"""The attack objectives on ONNX Runtime scores (logits, probabilities or log-probabilities)."""

from __future__ import annotations

import numpy as np
import onnx

MARGIN_CAP = 1.0  # the margin objective counts a sample as done once it is this far across


def score_kind(proto: onnx.ModelProto, output: str) -> str:
    """What the model's output holds: "probs" (after Softmax), "log_probs" or "logits"."""
    node = next((n for n in proto.graph.node if output in n.output), None)
    if node is not None and node.op_type == "Softmax":
        return "probs"
    if node is not None and node.op_type == "LogSoftmax":
        return "log_probs"
    return "logits"


def log_scores(scores: np.ndarray, kind: str) -> np.ndarray:
    """Scores on a log scale whose differences are logit differences (float64)."""
    s = np.asarray(scores, dtype=np.float64)
    with np.errstate(all="ignore"):
        return np.log(np.clip(s, 1e-45, None)) if kind == "probs" else s


def loss_from_scores(scores: np.ndarray, labels: np.ndarray, kind: str) -> float:
    """Mean cross-entropy of ORT scores (logits, probabilities or log-probabilities)."""
    s = log_scores(scores, kind)
    with np.errstate(all="ignore"):
        if kind == "logits":
            m = s.max(axis=1, keepdims=True)
            s = s - m - np.log(np.exp(s - m).sum(axis=1, keepdims=True))
        loss = float(-s[np.arange(len(labels)), labels].mean())
    return loss if np.isfinite(loss) else float("inf")


def margin_from_scores(scores: np.ndarray, labels: np.ndarray, kind: str) -> float:
    """Mean clamped margin (best other class minus own class, at most MARGIN_CAP): the
    margin objective of the gradient searcher, on ORT scores."""
    s = log_scores(scores, kind)
    rows = np.arange(len(labels))
    with np.errstate(all="ignore"):
        own = s[rows, labels]
        others = s.copy()
        others[rows, labels] = -np.inf
        value = float(np.minimum(np.nan_to_num(others.max(1) - own, nan=np.inf), MARGIN_CAP).mean())
    return value if np.isfinite(value) else float("inf")


OBJECTIVES = {"ce": loss_from_scores, "margin": margin_from_scores}
