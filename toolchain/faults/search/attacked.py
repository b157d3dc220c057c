"""The model under attack: its bytes, weight targets, attack batch and ONNX Runtime scoring,
shared by both searchers (gradient and oracle)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from qtool.data.datasets import Dataset, load_dataset, parse_spec
from qtool.errors import QtoolError
from qtool.evaluation.evaluate import ModelIO, model_io, run_scores
from qtool.faults.campaign.trials import Scores, predict
from qtool.faults.search.values import NUMPY_TYPES, SEARCH_TYPES
from qtool.faults.storage.models import FAULT_MODELS, Undo
from qtool.faults.storage.selection import Selection
from qtool.faults.storage.targets import prepare_bytes, select_targets
from qtool.modelfile.buffers import ModelFiles, read_model_files
from qtool.modelfile.metadata import qtool_metadata
from qtool.modelfile.roles import graph_roles
from qtool.runtimes import make_session

ATTACK_SPLIT = "train"
OPT_LEVEL = "basic"
WEIGHTS = Selection()  # every weight tensor, every bit: the attacker may choose any of them
FLIP = FAULT_MODELS.get("flip")


def loss_from_scores(scores: np.ndarray, labels: np.ndarray, kind: str) -> float:
    """Mean cross-entropy of ORT scores (logits, probabilities or log-probabilities)."""
    s = np.asarray(scores, dtype=np.float64)
    with np.errstate(all="ignore"):
        if kind == "probs":
            logp = np.log(np.clip(s, 1e-45, None))
        elif kind == "log_probs":
            logp = s
        else:
            m = s.max(axis=1, keepdims=True)
            logp = s - m - np.log(np.exp(s - m).sum(axis=1, keepdims=True))
        loss = float(-logp[np.arange(len(labels)), labels].mean())
    return loss if np.isfinite(loss) else float("inf")


def score_kind(proto: onnx.ModelProto, output: str) -> str:
    """What the model's output holds: "probs" (after Softmax), "log_probs" or "logits"."""
    node = next((n for n in proto.graph.node if output in n.output), None)
    if node is not None and node.op_type == "Softmax":
        return "probs"
    if node is not None and node.op_type == "LogSoftmax":
        return "log_probs"
    return "logits"


Loader = Callable[[str, str], Dataset]  # (spec, split) -> samples; load_dataset by default


def split_data(
    data: str, attack_samples: int, seed: int, load: Loader = load_dataset
) -> tuple[Dataset, Dataset]:
    """Attack batch (train split, seeded) and evaluation set (the spec's split, default test).

    Samples byte-identical to an evaluation sample are dropped from the attack pool, so the
    two sets are disjoint even for files whose splits share samples.
    """
    parsed = parse_spec(data)
    eval_split = parsed.split or "test"
    if eval_split == ATTACK_SPLIT:
        raise QtoolError(
            f"{data}: the attack batch comes from the train split, so evaluate on another "
            "split (drop ':train' or use ':test' / ':val')",
            param="data_spec",
        )
    evaluation = load(data, eval_split)
    if evaluation.y is None:
        raise QtoolError(
            f"data set {data} ({eval_split}) has no labels to measure accuracy", param="data_spec"
        )
    pool = load(data, ATTACK_SPLIT)
    seen = {row.tobytes() for row in evaluation.x}
    keep = np.array([row.tobytes() not in seen for row in pool.x], dtype=bool)
    if not keep.all():
        pool = Dataset(pool.spec, pool.split, pool.x[keep], None, pool.class_names, pool.kind)
    if len(pool) == 0:
        raise QtoolError(f"data set {data} has no train samples to attack with", param="data_spec")
    attack = pool.take(attack_samples, seed)
    overlap = {row.tobytes() for row in attack.x} & seen
    assert not overlap, "attack and evaluation samples must be disjoint"
    return attack, evaluation


class SearchModel:
    """The model's bytes, its target tensors and ORT evaluation, shared by both searchers."""

    def __init__(
        self,
        path: Path,
        data: str,
        attack_samples: int,
        seed: int,
        provider: str = "cpu",
        precision: str = "fp32",
        *,
        files: ModelFiles | None = None,
        load: Loader | None = None,
    ):
        """`files` (the bytes read from `path`, flipped in place) and `load` stand in for the
        file system on a worker that was sent them (`search/distributed.py`)."""
        self.path = path
        self.provider, self.precision = provider, precision
        self.files = files if files is not None else read_model_files(path)
        if self.files.external:
            raise QtoolError(
                f"{path} keeps weights in external-data files; the bit search needs them inside "
                "the .onnx file (re-save the model without external data)"
            )
        self.source_sha = self.files.sha256()
        targets = select_targets(self.files.main, WEIGHTS)
        targets, self.converted, self.originals = prepare_bytes(self.files, targets, ("any",))
        self.targets = [t for t in targets if t.loc.data_type in SEARCH_TYPES and t.words > 0]
        if not self.targets:
            raise QtoolError(
                f"{path} has no float32/int8/uint8 weight tensors (Conv/Gemm/MatMul inputs) "
                "for the bit search to attack"
            )
        self.flippable_sha = self.files.sha256()[""]
        _, self.readers = graph_roles(self.files.main)
        self.proto = onnx.ModelProto.FromString(bytes(self.files.main))
        session = self.session()
        self.io: ModelIO = model_io(session, qtool_metadata(self.proto))
        self.kind = score_kind(self.proto, self.io.output_name)
        self.attack, self.evaluation = split_data(data, attack_samples, seed, load or load_dataset)
        self.xa = self.io.prepare(self.attack.x)
        self.xe = self.io.prepare(self.evaluation.x)
        self.labels = predict(session, self.io, self.xa).pred  # the model's own answers
        self.flipped: set[tuple[int, int, int]] = set()

    @property
    def total_bits(self) -> int:
        return sum(t.words * SEARCH_TYPES[t.loc.data_type] for t in self.targets)

    def session(self):
        return make_session(
            bytes(self.files.main),
            [self.provider],
            threads=1,
            opt_level=OPT_LEVEL,
            spinning=False,
            precision=self.precision,
        )

    def words(self, i: int) -> np.ndarray:
        """Target i's stored values (no copy: they follow the flips)."""
        t = self.targets[i]
        dtype = NUMPY_TYPES[t.loc.data_type]
        return np.frombuffer(self.files.main, dtype=dtype, count=t.words, offset=t.loc.offset)

    def flip(self, i: int, word: int, bit: int) -> Undo:
        """Toggle one bit of target i in the bytes."""
        return FLIP.apply({None: self.files.main}, [self.targets[i].site(word, bit)])

    def ort_attack_loss(self, session=None) -> tuple[float, float]:
        """(attack loss, fraction of attack samples still given their clean label) in ORT."""
        try:
            session = session or self.session()
        except QtoolError:
            return float("inf"), 0.0
        scores = run_scores(session, self.io, self.xa, batch=max(1, len(self.xa)))
        agree = float((np.argmax(np.nan_to_num(scores, nan=-np.inf), 1) == self.labels).mean())
        return loss_from_scores(scores, self.labels, self.kind), agree

    def evaluate(self) -> tuple[Scores | None, float, float, float]:
        """(test scores, test accuracy, ORT attack loss, attack agreement) of the current bytes."""
        try:
            session = self.session()
        except QtoolError:  # ORT refuses the flipped file: the model is broken
            return None, 0.0, float("inf"), 0.0
        scores = predict(session, self.io, self.xe)
        acc = float((scores.pred == self.evaluation.y).mean())
        loss, agree = self.ort_attack_loss(session)
        return scores, acc, loss, agree
