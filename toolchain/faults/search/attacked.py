"""The model under attack: its bytes, weight targets, attack batch and test split, scored in
ONNX Runtime (`scoring.py`), shared by both searchers (gradient and oracle)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from qtool.data.datasets import Dataset, load_dataset, parse_spec
from qtool.errors import QtoolError
from qtool.evaluation.evaluate import ModelIO, model_io
from qtool.faults.campaign.trials import Scores, scores_of
from qtool.faults.incremental import DEFAULT_CACHE_MB
from qtool.faults.search.losses import OBJECTIVES, loss_from_scores, score_kind
from qtool.faults.search.scoring import FLIP, OPT_LEVEL, Scoring
from qtool.faults.search.values import NUMPY_TYPES, SEARCH_TYPES
from qtool.faults.storage.selection import Selection
from qtool.faults.storage.targets import prepare_bytes, select_targets
from qtool.modelfile.buffers import ModelFiles, read_model_files
from qtool.modelfile.metadata import qtool_metadata
from qtool.modelfile.roles import graph_roles
from qtool.runtimes import make_session
from qtool.stopping import Deadline

ATTACK_SPLIT = "train"
WEIGHTS = Selection()  # every weight tensor, every bit: the attacker may choose any of them


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
        incremental: bool = True,
        cache_mb: float = DEFAULT_CACHE_MB,
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
        session = make_session(
            bytes(self.files.main), [provider], threads=1, opt_level=OPT_LEVEL,
            spinning=False, precision=precision,
        )  # fmt: skip
        self.io: ModelIO = model_io(session, qtool_metadata(self.proto))
        self.kind = score_kind(self.proto, self.io.output_name)
        self.attack, self.evaluation = split_data(data, attack_samples, seed, load or load_dataset)
        self.xa = self.io.prepare(self.attack.x)
        self.xe = self.io.prepare(self.evaluation.x)
        self.scoring = Scoring(
            self.files.main, self.proto, self.io, self.targets, self.xa, self.xe,
            incremental=incremental, cache_mb=cache_mb, provider=provider, precision=precision,
        )  # fmt: skip
        self.labels = scores_of(self.scoring.attack).pred  # the model's own answers
        self.broken = False  # ONNX Runtime refused the flipped bytes
        self.flipped: set[tuple[int, int, int]] = set()

    @property
    def total_bits(self) -> int:
        return sum(t.words * SEARCH_TYPES[t.loc.data_type] for t in self.targets)

    def words(self, i: int) -> np.ndarray:
        """Target i's stored values (no copy: they follow the flips)."""
        t = self.targets[i]
        dtype = NUMPY_TYPES[t.loc.data_type]
        return np.frombuffer(self.files.main, dtype=dtype, count=t.words, offset=t.loc.offset)

    def objective(self, name: str) -> Callable[[np.ndarray], float]:
        """The attack objective ("ce" or "margin") of attack-batch scores (inf: broken)."""
        fn = OBJECTIVES[name]
        return lambda scores: float("inf") if scores is None else fn(scores, self.labels, self.kind)

    def candidate_losses(
        self, bits: list[tuple[int, int, int]], objective: str, deadline: Deadline | None = None
    ) -> list[tuple[float, float]]:
        """(objective, attack error rate) with each (target, word, bit) flipped alone."""
        sites = [self.targets[i].site(w, b) for i, w, b in bits]
        loss = self.objective(objective)
        out = []
        for scores in self.scoring.candidate_scores(sites, deadline):
            errors = 1.0 if scores is None else 1.0 - self.agreement(scores)
            out.append((loss(scores), errors))
        return out

    def agreement(self, scores: np.ndarray) -> float:
        """Fraction of attack samples still given their clean label."""
        return float((scores_of(scores).pred == self.labels).mean())

    def commit(self, i: int, word: int, bit: int) -> None:
        """Toggle one bit of target i in the bytes and score the result."""
        site = self.targets[i].site(word, bit)
        FLIP.apply({None: self.files.main}, [site])
        self.flipped.add((i, word, bit))
        self.broken = self.broken or not self.scoring.commit(site)

    def attack_loss(self) -> tuple[float, float]:
        """(cross-entropy, agreement) of the current bytes on the attack batch."""
        if self.broken:
            return float("inf"), 0.0
        scores = self.scoring.attack
        return loss_from_scores(scores, self.labels, self.kind), self.agreement(scores)

    def evaluate(self) -> tuple[Scores | None, float, float, float]:
        """(test scores, test accuracy, ORT attack loss, attack agreement) of the current bytes."""
        if self.broken:  # ORT refuses the flipped file: the model is broken
            return None, 0.0, float("inf"), 0.0
        scores = scores_of(self.scoring.test)
        acc = float((scores.pred == self.evaluation.y).mean())
        loss, agree = self.attack_loss()
        return scores, acc, loss, agree
