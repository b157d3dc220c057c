"""Targeted bit flips: the Bit-Flip Attack's progressive bit search on a deployable ONNX file.

Random flips barely hurt an INT8 model; an adversary who *chooses* the bits can break it with
a handful (Rakin et al. 2019, "Bit-Flip Attack: Crushing Neural Network with Progressive Bit
Search"). This module answers "how many chosen bits does it take to break this file?".

Each iteration of the progressive bit search:
1. computes dL/dW on an attack batch (train split, labels = the clean model's own predictions)
   with a differentiable torch replica of the ONNX graph (`qtool.runtimes.torch_replica`);
2. in every target layer ranks all (element, bit) flips by the first-order loss change
   gradient x value change (int8: two's complement, MSB worth -128; FP32: the IEEE-754 word
   with the bit toggled, non-finite results left out of the ranking) and keeps the top
   `per_layer` flips that raise the loss;
3. tentatively applies each layer's candidates in the replica, measures the real loss and
   keeps the one flip that raises it most;
4. applies that flip to the ONNX *bytes* (XOR at the locator's offset, as random flips do)
   and measures accuracy on the test split in ONNX Runtime from those bytes.
It stops after N flips or when the test accuracy reaches the target.

When the graph cannot be replicated (an op outside the replica, QOperator models) or torch
is missing, a gradient-free loss oracle does the search in ONNX Runtime: candidate bits are
the high-order bits (int8 MSB, FP32 exponent MSB and sign) of the largest-|w| elements and of
a seeded random sample of elements of each layer; the one with the highest attack loss wins.

The manifest has the random-flip format (`qtool flip --apply/--undo`, `qtool verify` work on
it) plus a `search` section logging every iteration.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from qtool import __version__
from qtool.data.datasets import Dataset, load_dataset, parse_spec
from qtool.errors import QtoolError, WorkFailed
from qtool.evaluation.evaluate import ModelIO, model_io
from qtool.faults.campaign import Scores, predict
from qtool.faults.flip import (
    MANIFEST_FORMAT,
    ModelFiles,
    byte_position,
    flip_entry,
    graph_roles,
    prepare_bytes,
    read_model_files,
    select_targets,
    write_model_files,
)
from qtool.modelfile.metadata import qtool_metadata
from qtool.modelfile.summary import dtype_name
from qtool.outputs import check_output_path, write_json
from qtool.report import fmt_pct, info, progress, table
from qtool.runtimes import make_session

FLOAT, UINT8, INT8 = 1, 2, 3
SEARCH_TYPES = {FLOAT: 32, UINT8: 8, INT8: 8}  # stored data type -> bits per word
ORACLE_BITS = {INT8: (7, 6), UINT8: (7, 6), FLOAT: (30, 31)}  # MSB / exponent-MSB first
METHODS = ("auto", "gradient", "oracle")
ATTACK_SPLIT = "train"
OPT_LEVEL = "basic"
DEFAULT_BUDGETS = (1, 2, 5, 10, 20)
MARGIN_CAP = 1.0


# --- value arithmetic ------------------------------------------------------------------------


def flipped_values(data_type: int, values: np.ndarray, bits: np.ndarray | list[int]) -> np.ndarray:
    """New value of each element when each bit is toggled: shape (len(values), len(bits)).

    int8 is two's complement (bit 7 is worth -128), so flipping bit 7 of 5 gives -123;
    float32 toggles a bit of the IEEE-754 word (results may be huge, Inf or NaN).
    """
    bits = np.asarray(bits, dtype=np.int64)
    if data_type == INT8:
        u = np.asarray(values).astype(np.int64) & 0xFF
        new = u[:, None] ^ (1 << bits)[None, :]
        return np.where(new >= 128, new - 256, new).astype(np.float64)
    if data_type == UINT8:
        u = np.asarray(values).astype(np.int64)
        return (u[:, None] ^ (1 << bits)[None, :]).astype(np.float64)
    if data_type == FLOAT:
        u = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
        new = (u[:, None] ^ (np.uint64(1) << bits.astype(np.uint64))[None, :]).astype(np.uint32)
        with np.errstate(over="ignore", invalid="ignore"):
            return new.view(np.float32).astype(np.float64)
    raise QtoolError(
        f"bit search supports float32, int8 and uint8 weights, not {dtype_name(data_type)}"
    )


def int8_flip(value: int, bit: int) -> int:
    """The int8 value after toggling one bit (two's complement): int8_flip(5, 7) == -123."""
    return int(flipped_values(INT8, np.array([value]), [bit])[0, 0])


# --- results ---------------------------------------------------------------------------------


@dataclass
class SearchStep:
    """One chosen flip and what it did (losses on the attack batch, accuracy on the test set)."""

    step: int
    method: str  # gradient | oracle
    tensor: str
    layer: list[str]  # nodes reading the tensor
    flat_index: int
    coords: list[int]
    bit: int
    old_value: float
    new_value: float
    predicted_gain: float | None  # first-order loss change (gradient path)
    loss_before: float  # the searcher's attack loss before this flip
    loss: float  # attack loss after the flip as measured by the searcher (replica or ORT)
    attack_loss: float  # attack loss after the flip, ONNX Runtime on the flipped bytes
    attack_agreement: float  # attack samples still given their clean label
    test_accuracy: float  # ONNX Runtime, flipped bytes
    nonfinite_outputs: int
    candidates: int  # candidates whose real loss was measured in this iteration


@dataclass
class SearchResult:
    model: str
    data: str
    seed: int
    method: str  # what found the bits: gradient, oracle, or gradient+oracle
    fallback_reason: str | None
    bits: int
    until_accuracy: float | None
    attack_samples: int
    attack_split: str
    eval_split: str
    eval_samples: int
    chance: float
    clean_accuracy: float
    clean_attack_loss: float
    flips_to_target: int | None
    final_accuracy: float
    accuracies: list[float]  # test accuracy after 0, 1, 2, ... flips
    steps: list[SearchStep]
    seconds: float
    manifest: dict = field(repr=False, default_factory=dict)
    files: ModelFiles | None = field(repr=False, default=None)

    def accuracy_at(self, budget: int) -> float:
        """Accuracy after `budget` flips (the last one when the search stopped earlier)."""
        return self.accuracies[min(budget, len(self.accuracies) - 1)]

    def summary(self) -> dict:
        out = asdict(self)
        out.pop("manifest")
        out.pop("files")
        return out


# --- helpers ---------------------------------------------------------------------------------


def _loss_from_scores(scores: np.ndarray, labels: np.ndarray, kind: str) -> float:
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


def _score_kind(proto: onnx.ModelProto, output: str) -> str:
    node = next((n for n in proto.graph.node if output in n.output), None)
    if node is not None and node.op_type == "Softmax":
        return "probs"
    if node is not None and node.op_type == "LogSoftmax":
        return "log_probs"
    return "logits"


def split_data(data: str, attack_samples: int, seed: int) -> tuple[Dataset, Dataset]:
    """Attack batch (train split, seeded) and evaluation set (the spec's split, default test).

    Samples byte-identical to an evaluation sample are dropped from the attack pool, so the
    two sets are disjoint even for files whose splits share samples.
    """
    parsed = parse_spec(data)
    eval_split = parsed.split or "test"
    if eval_split == ATTACK_SPLIT:
        raise QtoolError(
            f"--data {data}: the attack batch comes from the train split, so evaluate on "
            "another split (drop ':train' or use ':test' / ':val')"
        )
    evaluation = load_dataset(data, eval_split)
    if evaluation.y is None:
        raise QtoolError(f"data set {data} ({eval_split}) has no labels to measure accuracy")
    pool = load_dataset(data, ATTACK_SPLIT)
    seen = {row.tobytes() for row in evaluation.x}
    keep = np.array([row.tobytes() not in seen for row in pool.x], dtype=bool)
    if not keep.all():
        pool = Dataset(pool.spec, pool.split, pool.x[keep], None, pool.class_names, pool.kind)
    if len(pool) == 0:
        raise QtoolError(f"data set {data} has no train samples to attack with")
    attack = pool.take(attack_samples, seed)
    overlap = {row.tobytes() for row in attack.x} & seen
    assert not overlap, "attack and evaluation samples must be disjoint"
    return attack, evaluation


class _Model:
    """The model's bytes, its target tensors and ORT evaluation, shared by both searchers."""

    def __init__(self, path: Path, data: str, attack_samples: int, seed: int):
        self.path = path
        self.files = read_model_files(path)
        if self.files.external:
            raise QtoolError(
                f"{path} keeps weights in external-data files; the bit search needs them inside "
                "the .onnx file (re-save the model without external data)"
            )
        self.source_sha = self.files.sha256()
        targets = select_targets(self.files.main, "weights", None, "any")
        targets, self.converted, self.originals = prepare_bytes(self.files, targets, "any")
        self.targets = [t for t in targets if t.loc.data_type in SEARCH_TYPES and t.words > 0]
        if not self.targets:
            raise QtoolError(
                f"{path} has no float32/int8/uint8 weight tensors (Conv/Gemm/MatMul inputs) "
                "for the bit search to attack"
            )
        self.flippable_sha = self.files.sha256()[""]
        _, self.readers = graph_roles(self.files.main)
        self.proto = onnx.ModelProto.FromString(bytes(self.files.main))
        meta = qtool_metadata(self.proto)
        session = self.session()
        self.io: ModelIO = model_io(session, meta)
        self.kind = _score_kind(self.proto, self.io.output_name)
        self.attack, self.evaluation = split_data(data, attack_samples, seed)
        self.xa = self.io.prepare(self.attack.x)
        self.xe = self.io.prepare(self.evaluation.x)
        self.labels = predict(session, self.io, self.xa).pred  # the model's own answers
        self.flipped: set[tuple[int, int, int]] = set()

    def session(self):
        return make_session(bytes(self.files.main), threads=1, opt_level=OPT_LEVEL, spinning=False)

    def words(self, i: int) -> np.ndarray:
        t = self.targets[i]
        dtype = {FLOAT: "<f4", UINT8: "u1", INT8: "i1"}[t.loc.data_type]
        return np.frombuffer(self.files.main, dtype=dtype, count=t.words, offset=t.loc.offset)

    def xor(self, i: int, word: int, bit: int) -> None:
        off, b = byte_position(self.targets[i], word, bit)
        self.files.main[off] ^= 1 << b

    def ort_attack_loss(self, session=None) -> tuple[float, float]:
        """(attack loss, fraction of attack samples still given their clean label) in ORT."""
        try:
            session = session or self.session()
        except QtoolError:
            return float("inf"), 0.0
        from qtool.evaluation.evaluate import run_scores

        scores = run_scores(session, self.io, self.xa, batch=max(1, len(self.xa)))
        agree = float((np.argmax(np.nan_to_num(scores, nan=-np.inf), 1) == self.labels).mean())
        return _loss_from_scores(scores, self.labels, self.kind), agree

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


# --- the gradient searcher -------------------------------------------------------------------


class _GradientSearcher:
    """First-order ranking with the torch replica, exact loss of the best few per layer."""

    def __init__(self, model: _Model, per_layer: int, objective: str = "auto"):
        from qtool.runtimes.torch_replica import TorchReplica, UnsupportedGraph, _torch

        self.torch = _torch()
        self.model = model
        if any(t.loc.graph != "main" for t in model.targets):
            raise UnsupportedGraph("weights inside subgraphs (If/Loop/Scan bodies)")
        names = [t.loc.name for t in model.targets]
        self.replica = TorchReplica(model.proto, names)
        self.per_layer = per_layer
        classes = int(model.evaluation.num_classes or model.labels.max() + 1)
        # auto: the clamped logit margin when there are 3+ classes (it counts every sample
        # still right, so flips that push many samples across win); cross-entropy for 2
        # classes, where lifting one logit helps the margin of one class as much as it hurts
        # the other's and CE's focus on the samples near the boundary works better.
        self.objective = objective if objective != "auto" else ("margin" if classes > 2 else "ce")
        self.loss_tensor, self.loss_kind = self.replica.logits_name(model.io.output_name)
        self.x = self.torch.from_numpy(np.ascontiguousarray(model.xa))
        self.y = self.torch.from_numpy(model.labels.astype(np.int64))
        replica_pred = self._forward().argmax(1).numpy()
        agreement = float((replica_pred == model.labels).mean())
        if agreement < 0.9:
            raise UnsupportedGraph(
                f"the torch replica agrees with ONNX Runtime on only {100 * agreement:.0f} % "
                "of the attack batch"
            )

    def _forward(self, changed: str | None = None):
        if changed is None:
            env = self.replica.run_env({self.model.io.input_name: self.x})
            self.cache = env
        else:
            env = self.replica.run_env(cache=self.cache, changed=[changed])
        self.cache_out = env[self.loss_tensor].reshape(len(self.x), -1)
        return self.cache_out

    def loss(self, grad: bool = False, changed: str | None = None):
        torch = self.torch
        with torch.set_grad_enabled(grad):
            out = self._forward(changed)
            if self.objective == "margin":  # mean clamped logit margin (CW-style)
                own = out.gather(1, self.y[:, None])[:, 0]
                mask = torch.nn.functional.one_hot(self.y, out.shape[1]).bool()
                other = out.masked_fill(mask, float("-inf")).amax(1)
                return torch.clamp(other - own, max=MARGIN_CAP).mean()
            if self.loss_kind == "log_probs":
                return torch.nn.functional.nll_loss(out, self.y)
            return torch.nn.functional.cross_entropy(out, self.y)

    def sync(self, i: int, word: int) -> None:
        """Copy a flipped element's value from the bytes into the replica."""
        t = self.model.targets[i]
        self.replica.set_element(t.loc.name, word, float(self.model.words(i)[word]))

    def candidates(self) -> tuple[float, list[tuple[float, int, int, int, float]]]:
        """(current loss, [(first-order gain, target, word, bit, new value)]) per layer."""
        for p in self.replica.params.values():
            p.grad = None
        loss = self.loss(grad=True)
        base = float(loss.detach())
        if not np.isfinite(base):
            return float("inf"), []
        loss.backward()
        out = []
        for i, t in enumerate(self.model.targets):
            leaf = self.replica.params[t.loc.name]
            if leaf.grad is None:
                continue
            g = np.nan_to_num(leaf.grad.detach().reshape(-1).double().numpy())
            values = self.model.words(i)
            nbits = SEARCH_TYPES[t.loc.data_type]
            new = flipped_values(t.loc.data_type, values, np.arange(nbits))
            with np.errstate(over="ignore", invalid="ignore"):
                delta = new - values.astype(np.float64)[:, None]
                gain = g[:, None] * delta
            gain[~np.isfinite(new) | ~np.isfinite(gain)] = -np.inf  # rank with finite values
            for j, w, b in self.model.flipped:
                if j == i:
                    gain[w, b] = -np.inf
            flat = gain.reshape(-1)
            k = min(self.per_layer, flat.size)
            top = np.argpartition(-flat, k - 1)[:k]
            for idx in top[np.argsort(-flat[top])]:
                if flat[idx] > 0:
                    w, b = divmod(int(idx), nbits)
                    out.append((float(flat[idx]), i, w, b, float(new[w, b])))
        return base, out

    def measure(self, i: int, word: int, new_value: float) -> float:
        """Real attack loss with one element changed (then restored)."""
        name = self.model.targets[i].loc.name
        leaf = self.replica.params[name]
        old = float(leaf.detach().reshape(-1)[word])
        self.replica.set_element(name, word, new_value)
        try:
            with np.errstate(all="ignore"):
                value = float(self.loss(changed=name))
                pred = self.cache_out.argmax(1)
                errors = float((pred != self.y).float().mean())
        finally:
            self.replica.set_element(name, word, old)
        if not np.isfinite(value):
            return float("inf"), 1.0
        return value, errors


# --- the gradient-free searcher --------------------------------------------------------------


def _oracle_candidates(
    model: _Model, rng: np.random.Generator, elements: int
) -> list[tuple[int, int, int]]:
    """High-order bits of the largest-|w| elements and of random elements of each layer."""
    out = []
    for i, t in enumerate(model.targets):
        with np.errstate(invalid="ignore", over="ignore"):  # flipped words may be NaN/Inf
            values = model.words(i).astype(np.float64)
        mags = np.nan_to_num(np.abs(values), nan=-1.0, posinf=-1.0)
        order = np.argsort(-mags, kind="stable")
        chosen = list(order[:elements])
        if len(values) > elements:
            chosen += list(rng.choice(len(values), size=min(elements, len(values)), replace=False))
        for w in dict.fromkeys(int(c) for c in chosen):
            for b in ORACLE_BITS[t.loc.data_type]:
                if (i, w, b) not in model.flipped:
                    out.append((i, w, b))
    return out


def _oracle_step(
    model: _Model, rng: np.random.Generator, elements: int
) -> tuple[int, int, int, float, int]:
    """(target, word, bit, ORT attack loss after the flip, candidates measured)."""
    best: tuple[float, int, int, int] | None = None
    cands = _oracle_candidates(model, rng, elements)
    for i, w, b in cands:
        model.xor(i, w, b)
        try:
            loss, _ = model.ort_attack_loss()
        finally:
            model.xor(i, w, b)
        if best is None or loss > best[0]:
            best = (loss, i, w, b)
    if best is None:
        raise WorkFailed("the oracle search ran out of candidate bits")
    return best[1], best[2], best[3], best[0], len(cands)


# --- the search ------------------------------------------------------------------------------


def progressive_search(
    model: Path | str,
    data: str,
    bits: int,
    until_accuracy: float | None = None,
    attack_samples: int = 128,
    seed: int = 0,
    *,
    method: str = "auto",
    per_layer: int = 1,
    oracle_elements: int = 4,
    select: str = "loss",
    objective: str = "auto",
    show_progress: bool = False,
) -> SearchResult:
    """Choose up to `bits` bit flips that raise the attack loss most (Rakin et al. 2019).

    `until_accuracy` is a fraction (0.2 = 20 %); the search stops once the ONNX Runtime test
    accuracy is at or below it. `method`: auto (gradient, falling back to the oracle when the
    graph cannot be replicated or torch is missing), gradient, or oracle. The flipped model is
    in `result.files` (write it with `write_search`); the model file is never modified.
    """
    start = time.perf_counter()
    if method not in METHODS:
        raise QtoolError(f"bad search method {method!r}: use {', '.join(METHODS)}")
    if bits < 1:
        raise QtoolError("--bits must be at least 1 for a bit search")
    if attack_samples < 1:
        raise QtoolError("--attack-samples must be at least 1")
    if until_accuracy is not None and not 0.0 <= until_accuracy <= 1.0:
        raise QtoolError("the accuracy target must be a fraction between 0 and 1")
    path = Path(model)
    m = _Model(path, data, attack_samples, seed)
    total_bits = sum(t.words * SEARCH_TYPES[t.loc.data_type] for t in m.targets)
    if bits > total_bits:
        raise QtoolError(f"--bits {bits} is more than the {total_bits} weight bits of {path}")
    rng = np.random.default_rng([seed, 0xB175])
    searcher: _GradientSearcher | None = None
    reason = None
    if method in ("auto", "gradient"):
        from qtool.runtimes.torch_replica import UnsupportedGraph

        try:
            searcher = _GradientSearcher(m, per_layer, objective)
        except UnsupportedGraph as exc:
            if method == "gradient":
                raise
            reason = str(exc)
            info(f"gradient search unavailable ({reason}); using the ONNX Runtime loss oracle")
    _, clean_acc, clean_loss, _ = m.evaluate()
    counts = np.bincount(m.evaluation.y)
    chance = float(counts.max() / counts.sum())
    accuracies = [clean_acc]
    steps: list[SearchStep] = []
    entries: list[dict] = []
    used: set[str] = set()
    with progress() as bar:
        task = bar.add_task("bit search", total=bits, status="")
        if not show_progress:
            bar.update(task, visible=False)
        for step in range(1, bits + 1):
            if until_accuracy is not None and accuracies[-1] <= until_accuracy:
                break
            chosen = None
            if searcher is not None:
                before, cands = searcher.candidates()
                best = None
                for gain, i, w, b, new in cands:
                    loss, errors = searcher.measure(i, w, new)
                    key = (errors, loss) if select == "errors" else (loss, errors)
                    if best is None or key > best[0]:
                        best = (key, loss, gain, i, w, b)
                if best is not None:
                    _, loss, gain, i, w, b = best
                    chosen = ("gradient", i, w, b, before, loss, gain, len(cands))
            if chosen is None:  # no gradient path, or no first-order candidate raises the loss
                before = m.ort_attack_loss()[0]
                i, w, b, loss, n = _oracle_step(m, rng, oracle_elements)
                chosen = ("oracle", i, w, b, before, loss, None, n)
            how, i, w, b, before, loss, gain, n = chosen
            used.add(how)
            t = m.targets[i]
            start_byte = t.loc.offset + w * t.word
            old_word = bytes(m.files.main[start_byte : start_byte + t.word])
            off, _ = byte_position(t, w, b)
            old_byte = m.files.main[off]
            m.xor(i, w, b)
            m.flipped.add((i, w, b))
            new_word = bytes(m.files.main[start_byte : start_byte + t.word])
            if searcher is not None:
                searcher.sync(i, w)
            scores, acc, ort_loss, agree = m.evaluate()
            accuracies.append(acc)
            entry = flip_entry(t, w, b, old_word, new_word, old_byte, m.files.main[off])
            entries.append(entry)
            flat, coords = entry["flat_index"], entry["coords"]
            old_value, new_value = entry["old_value"], entry["new_value"]
            steps.append(
                SearchStep(
                    step=step,
                    method=how,
                    tensor=t.loc.name,
                    layer=sorted(set(m.readers.get(t.key, []))),
                    flat_index=flat,
                    coords=coords,
                    bit=b,
                    old_value=old_value,
                    new_value=new_value,
                    predicted_gain=gain,
                    loss_before=before,
                    loss=loss,
                    attack_loss=ort_loss,
                    attack_agreement=agree,
                    test_accuracy=acc,
                    nonfinite_outputs=0 if scores is None else int(scores.nonfinite.sum()),
                    candidates=n,
                )
            )
            bar.update(task, advance=1, status=f"accuracy {100 * acc:.1f} %")
    flips_to_target = None
    if until_accuracy is not None:
        flips_to_target = next(
            (k for k, a in enumerate(accuracies) if a <= until_accuracy + 1e-12), None
        )
    how = "+".join(h for h in ("gradient", "oracle") if h in used) or (
        "gradient" if searcher is not None else "oracle"
    )
    result = SearchResult(
        model=str(path),
        data=data,
        seed=seed,
        method=how,
        fallback_reason=reason,
        bits=bits,
        until_accuracy=until_accuracy,
        attack_samples=len(m.xa),
        attack_split=ATTACK_SPLIT,
        eval_split=m.evaluation.split,
        eval_samples=len(m.xe),
        chance=chance,
        clean_accuracy=clean_acc,
        clean_attack_loss=clean_loss,
        flips_to_target=flips_to_target,
        final_accuracy=accuracies[-1],
        accuracies=accuracies,
        steps=steps,
        seconds=time.perf_counter() - start,
        files=m.files,
    )
    result.manifest = _manifest(m, result, entries, total_bits)
    return result


def _manifest(m: _Model, result: SearchResult, entries: list[dict], total_bits: int) -> dict:
    import base64

    from qtool.faults.flip import _sha

    search = result.summary()
    return {
        "format": MANIFEST_FORMAT,
        "qtool_version": __version__,
        "model": str(m.path),
        "source_sha256": m.source_sha[""],
        "source_files_sha256": {k: v for k, v in m.source_sha.items() if k},
        "flippable_sha256": m.flippable_sha,
        "converted_to_raw_data": m.converted,
        "converted_originals": [
            {"graph": g, "tensor": n, "tensor_proto_base64": base64.b64encode(b).decode()}
            for (g, n), b in m.originals.items()
        ],
        "flipped_sha256": _sha(m.files.main),
        "flipped_files_sha256": {},
        "seed": result.seed,
        "bits": len(entries),
        "fault": "flip",
        "targets": "weights",
        "layers": None,
        "positions": "any",
        "eligible_bits": total_bits,
        "eligible_tensors": [
            {
                "tensor": t.loc.name,
                "graph": t.loc.graph,
                "role": t.role,
                "dtype": dtype_name(t.loc.data_type),
                "bits": t.words * SEARCH_TYPES[t.loc.data_type],
            }
            for t in m.targets
        ],
        "flips": entries,
        "search": {"algorithm": "progressive bit search (Rakin et al. 2019)", **search},
    }


def write_search(
    result: SearchResult, out: Path | str, manifest: Path | str | None, force: bool = False
) -> None:
    """Write the flipped model and its manifest atomically (existing files need `force`)."""
    if result.files is None:
        raise QtoolError("this search result holds no model bytes to write")
    write_model_files(result.files, out, force=force)
    if manifest is not None:
        write_json(manifest, result.manifest)


# --- several seeds, targeted vs random -------------------------------------------------------


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    if not len(arr):
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def budget_summary(results: list[SearchResult], budgets: list[int]) -> dict:
    """Mean/std over seeds of flips-to-target and of accuracy at each budget."""
    reached = [r.flips_to_target for r in results if r.flips_to_target is not None]
    mean, std = _mean_std([float(v) for v in reached])
    return {
        "seeds": [r.seed for r in results],
        "flips_to_target": {
            "mean": mean,
            "std": std,
            "reached": len(reached),
            "runs": len(results),
            "values": [r.flips_to_target for r in results],
        },
        "accuracy_at": {
            str(b): dict(
                zip(("mean", "std"), _mean_std([r.accuracy_at(b) for r in results]), strict=True)
            )
            for b in budgets
        },
    }


def _precision(path: Path) -> str:
    proto = onnx.load(str(path), load_external_data=False)
    ops = {n.op_type for n in proto.graph.node}
    return "INT8" if ops & {"DequantizeLinear", "QLinearConv", "QLinearMatMul", "QGemm"} else "FP32"


def _family(path: Path) -> str:
    proto = onnx.load(str(path), load_external_data=False)
    name = qtool_metadata(proto).get("model")
    ops = {n.op_type for n in proto.graph.node}
    if isinstance(name, str) and name:
        return name
    return "cnn" if ops & {"Conv", "QLinearConv", "ConvInteger"} else "mlp"


def compare_targeted_random(
    models: list[Path | str],
    data: str,
    budgets: list[int] | tuple[int, ...] = DEFAULT_BUDGETS,
    seeds: int = 5,
    *,
    attack_samples: int = 128,
    until_accuracy: float | None = None,
    seed: int = 0,
) -> list[dict]:
    """Rows (model x budget): targeted accuracy (search, `seeds` attack batches) beside random
    flips (the flip campaign, `seeds` trials) at the same budget, plus flips-to-target.

    The accuracy target defaults to chance + 10 pp on the evaluation split.
    """
    from qtool.faults.campaign import run_campaign

    budgets = sorted({int(b) for b in budgets})
    rows: list[dict] = []
    for model in models:
        path = Path(model)
        runs = [
            progressive_search(
                path,
                data,
                max(budgets),
                None,
                attack_samples,
                seed + k,
                show_progress=False,
            )
            for k in range(seeds)
        ]
        target = until_accuracy if until_accuracy is not None else runs[0].chance + 0.10
        for r in runs:
            r.until_accuracy = target
            r.flips_to_target = next(
                (k for k, a in enumerate(r.accuracies) if a <= target + 1e-12), None
            )
        summary = budget_summary(runs, budgets)
        eval_spec = data if parse_spec(data).split else f"{data}:test"
        campaign = run_campaign([path], budgets, seeds, eval_spec, seed=seed, show_progress=False)
        random_at = {s.bits: s for s in campaign.stats}
        ftt = summary["flips_to_target"]
        for b in budgets:
            acc = summary["accuracy_at"][str(b)]
            rows.append(
                {
                    "model": path.name,
                    "family": _family(path),
                    "precision": _precision(path),
                    "method": "+".join(sorted({r.method for r in runs})),
                    "clean": runs[0].clean_accuracy,
                    "chance": runs[0].chance,
                    "target": target,
                    "budget": b,
                    "targeted_mean": acc["mean"],
                    "targeted_std": acc["std"],
                    "random_mean": random_at[b].mean,
                    "random_std": random_at[b].std,
                    "flips_to_target_mean": ftt["mean"],
                    "flips_to_target_std": ftt["std"],
                    "reached": f"{ftt['reached']}/{ftt['runs']}",
                    "seeds": seeds,
                }
            )
    return rows


def comparison_table(rows: list[dict]):
    """Render compare_targeted_random rows as one table."""

    def pm(mean: float, std: float) -> str:
        return f"{100 * mean:.1f} ± {100 * std:.1f}"

    body = []
    for r in rows:
        ftt = (
            "—"
            if not np.isfinite(r["flips_to_target_mean"])
            else f"{r['flips_to_target_mean']:.1f} ± {r['flips_to_target_std']:.1f} "
            f"({r['reached']})"
        )
        body.append(
            [
                r["model"],
                r["family"],
                r["precision"],
                fmt_pct(r["clean"], 1),
                r["budget"],
                pm(r["targeted_mean"], r["targeted_std"]),
                pm(r["random_mean"], r["random_std"]),
                f"{100 * r['target']:.0f} %: {ftt}",
            ]
        )
    seeds = rows[0]["seeds"] if rows else 0
    return table(
        f"targeted (progressive bit search) vs random bit flips: test accuracy %, mean ± std over "
        f"{seeds} seeds (ONNX Runtime)",
        ["model", "net", "weights", "clean", "flips", "targeted", "random", "flips to target"],
        body,
    )


# --- the command's work ----------------------------------------------------------------------


def run_search_command(
    model: Path | str,
    out: Path | str,
    manifest: Path | str | None,
    data: str | None,
    bits: int,
    until_accuracy: float | None = None,
    attack_samples: int = 128,
    seeds: int = 1,
    seed: int = 0,
    force: bool = False,
    method: str = "auto",
    show_progress: bool = True,
) -> tuple[SearchResult, dict | None]:
    """`qtool flip MODEL --search progressive ...`: validate, search, write, summarise.

    `until_accuracy` is in percent here (as typed on the command line). With `seeds` > 1 the
    search is repeated with attack batches seeded seed, seed+1, ...; the output model is the
    first run's, and the manifest's `search.seeds_summary` holds mean ± std over the runs.
    """
    if not data:
        raise QtoolError("--search progressive needs --data (a labelled data set, e.g. digits)")
    if seeds < 1:
        raise QtoolError("--seeds must be at least 1")
    if until_accuracy is not None and not 0 <= until_accuracy <= 100:
        raise QtoolError("--until-accuracy is a percentage between 0 and 100")
    if out is not None:
        out = check_output_path(out, force, inputs=(model,))
    if manifest is not None:
        check_output_path(manifest, force, inputs=(model, out))
    target = None if until_accuracy is None else until_accuracy / 100.0
    runs = [
        progressive_search(
            model,
            data,
            bits,
            target,
            attack_samples,
            seed + k,
            method=method,
            show_progress=show_progress,
        )
        for k in range(seeds)
    ]
    summary = None
    if seeds > 1:
        budgets = sorted({b for b in DEFAULT_BUDGETS if b <= bits} | {bits})
        summary = budget_summary(runs, budgets)
        runs[0].manifest["search"]["seeds_summary"] = summary
    if out is not None:
        write_model_files(runs[0].files, out, force=force)
        runs[0].manifest["out"] = str(out)
    if manifest is not None:
        write_json(manifest, runs[0].manifest)
    return runs[0], summary


def search_cli(
    model: Path,
    *,
    search: str,
    bits: list[int],
    out: Path | None,
    manifest: Path | None,
    data: str | None,
    until_accuracy: float | None,
    attack_samples: int,
    seeds: int,
    seed: int,
    force: bool,
    json_path: Path | None,
    defaults_ok: bool,
) -> None:
    """The `qtool flip --search` branch: checks the options, runs, prints, writes --json."""
    from qtool.commands.options import write_json_report
    from qtool.report import show

    if search != "progressive":
        raise QtoolError(f"unknown --search {search!r}: use --search progressive")
    if len(bits) != 1:
        raise QtoolError("--search takes one --bits budget (the most flips to choose), not a list")
    if not defaults_ok:
        raise QtoolError(
            "--search chooses its own bits among all weights: drop --targets/--layers/"
            "--positions/--fault/--trials/--apply/--undo/--split"
        )
    result, summary = run_search_command(
        model, out, manifest, data, bits[0], until_accuracy, attack_samples, seeds, seed, force
    )
    show(search_table(result))
    if summary is not None:
        ftt = summary["flips_to_target"]
        rows = [
            [f"accuracy after {b} flips", f"{100 * v['mean']:.1f} ± {100 * v['std']:.1f} %"]
            for b, v in summary["accuracy_at"].items()
        ]
        if until_accuracy is not None:
            rows.append(
                [
                    f"flips to reach {until_accuracy:g} %",
                    f"{ftt['mean']:.1f} ± {ftt['std']:.1f} (reached in {ftt['reached']} of "
                    f"{ftt['runs']} runs)",
                ]
            )
        show(table(f"{seeds} attack batches (seeds {seed}..{seed + seeds - 1})", ["", ""], rows))
    write_json_report(json_path, {"search": result.summary(), "seeds_summary": summary})


def search_table(result: SearchResult):
    """The per-iteration log as a table."""
    rows = [
        [
            0,
            "clean",
            "",
            "",
            "",
            f"{result.clean_attack_loss:.3f}",
            fmt_pct(result.clean_accuracy, 1),
        ]
    ]
    for s in result.steps:
        rows.append(
            [
                s.step,
                f"{s.tensor}[{','.join(map(str, s.coords)) or s.flat_index}]",
                s.bit,
                f"{s.old_value:g} -> {s.new_value:g}",
                f"{s.loss:.3f}",
                f"{s.attack_loss:.3f}",
                fmt_pct(s.test_accuracy, 1),
            ]
        )
    target = (
        "" if result.until_accuracy is None else f", target {100 * result.until_accuracy:.1f} %"
    )
    return table(
        f"progressive bit search ({result.method}) on {Path(result.model).name}: attack batch "
        f"{result.attack_samples} {result.attack_split} samples (seed {result.seed}), accuracy on "
        f"{result.eval_samples} {result.eval_split} samples in ONNX Runtime (chance "
        f"{100 * result.chance:.1f} %{target})",
        ["flip", "element", "bit", "value", "search loss", "ORT attack loss", "test accuracy"],
        rows,
    )
