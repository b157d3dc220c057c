"""The gradient searcher: first-order ranking of every (element, bit) flip with the torch
replica; the progressive loop then measures the best few per layer in ONNX Runtime.

For each target layer, dL/dW on the attack batch times each flip's value change ranks all
flips (int8: two's complement, MSB worth -128; FP32: the IEEE-754 word with the bit toggled,
non-finite results left out of the ranking); the top `per_layer` that raise the loss are
the layer's candidates. dL/dW is accumulated over chunks of the attack batch sized so the
autograd graph of one chunk stays under GRAD_MEMORY_MB: memory no longer grows with the
number of attack samples.
"""

from __future__ import annotations

import numpy as np

from qtool.faults.search.attacked import SearchModel
from qtool.faults.search.losses import MARGIN_CAP
from qtool.faults.search.values import NUMPY_TYPES, SEARCH_TYPES, flipped_values
from qtool.stopping import Deadline

GRAD_MEMORY_MB = 512  # autograd memory of one chunk of the attack batch (estimated)
AUTOGRAD_FACTOR = 4  # saved activations, their gradients and temporaries per forward tensor
# (first-order gain, target, word, bit, new value)
Candidate = tuple[float, int, int, int, float]


class GradientSearcher:
    """First-order ranking of every bit flip with the torch replica."""

    def __init__(self, model: SearchModel, per_layer: int, objective: str = "auto"):
        from qtool.runtimes.torch_replica import TorchReplica, UnsupportedGraph, torch_module

        self.torch = torch_module()
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
        self.chunk = self._chunk_rows()
        with self.torch.no_grad():
            pred = np.concatenate([self._forward(s).argmax(1).numpy() for s in self._chunks()])
        agreement = float((pred == model.labels).mean())
        if agreement < 0.9:
            raise UnsupportedGraph(
                f"the torch replica agrees with ONNX Runtime on only {100 * agreement:.0f} % "
                "of the attack batch"
            )

    def _chunk_rows(self) -> int:
        """Attack samples per chunk: GRAD_MEMORY_MB over the replica's bytes per sample (the
        growth of its tensors from one sample to two: weights and their dequantised copies
        do not grow with the batch)."""
        made = {o for node in self.replica.graph.node for o in node.output}

        def nbytes(rows: int) -> int:
            with self.torch.no_grad():
                env = self.replica.run_env({self.model.io.input_name: self.x[:rows]})
            return sum(
                v.numel() * v.element_size()
                for name, v in env.items()
                if name in made and isinstance(v, self.torch.Tensor)
            )

        per_row = nbytes(2) - nbytes(1) if len(self.x) > 1 else nbytes(1)
        rows = GRAD_MEMORY_MB * 2**20 // max(1, per_row * AUTOGRAD_FACTOR)
        return int(min(len(self.x), max(1, rows)))

    def _chunks(self) -> list[slice]:
        return [slice(s, s + self.chunk) for s in range(0, len(self.x), self.chunk)]

    def _forward(self, rows: slice, given: dict | None = None):
        env = self.replica.run_env({self.model.io.input_name: self.x[rows]}, given=given)
        return env[self.loss_tensor].reshape(len(self.x[rows]), -1)

    def _loss(self, rows: slice, given: dict):
        """The objective's mean over one chunk."""
        torch = self.torch
        out, y = self._forward(rows, given), self.y[rows]
        if self.objective == "margin":  # mean clamped logit margin (CW-style)
            own = out.gather(1, y[:, None])[:, 0]
            mask = torch.nn.functional.one_hot(y, out.shape[1]).bool()
            other = out.masked_fill(mask, float("-inf")).amax(1)
            return torch.clamp(other - own, max=MARGIN_CAP).mean()
        if self.loss_kind == "log_probs":
            return torch.nn.functional.nll_loss(out, y)
        return torch.nn.functional.cross_entropy(out, y)

    def sync(self, i: int, word: int) -> None:
        """Copy a flipped element's value from the bytes into the replica."""
        t = self.model.targets[i]
        self.replica.set_element(t.loc.name, word, float(self.model.words(i)[word]))

    def gradients(self, deadline: Deadline | None = None) -> float:
        """dL/dW of the attack batch into the replica's leaves, chunk by chunk; the loss."""
        for p in self.replica.params.values():
            p.grad = None
        weights = self.replica.static_values()  # dequantised once, differentiated per chunk
        total = 0.0
        for rows in self._chunks():
            if deadline is not None:
                deadline.check()
            loss = self._loss(rows, weights) * (len(self.x[rows]) / len(self.x))
            value = float(loss.detach())
            total += value
            if not np.isfinite(value):
                return float("inf")
            loss.backward(retain_graph=True)  # the weights' part serves the next chunk
            del loss  # the chunk's own graph goes now, before the next one is built
        return total

    def candidates(self, deadline: Deadline | None = None) -> tuple[float, list[Candidate]]:
        """(current replica loss, [(first-order gain, target, word, bit, new value)]): the top
        `per_layer` flips of each layer that raise the loss."""
        base = self.gradients(deadline)
        if not np.isfinite(base):
            return float("inf"), []
        out = []
        for i, t in enumerate(self.model.targets):
            leaf = self.replica.params[t.loc.name]
            if leaf.grad is None:
                continue
            g = np.nan_to_num(leaf.grad.detach().reshape(-1).double().numpy())
            flipped = [(w, b) for j, w, b in self.model.flipped if j == i]
            for gain, w, b, new in self._layer_top(i, g, flipped):
                out.append((gain, i, w, b, new))
        return base, out

    def _layer_top(self, i: int, g: np.ndarray, flipped: list[tuple[int, int]]):
        t = self.model.targets[i]
        return top_flips(t.loc.data_type, self.model.words(i), g, flipped, self.per_layer)


def top_flips(
    data_type: int, values: np.ndarray, g: np.ndarray, flipped: list[tuple[int, int]], k: int
) -> list[tuple[float, int, int, float]]:
    """The k flips of one tensor with the largest positive first-order gain g x (new - old),
    as (gain, word, bit, new value), best first (ties: lowest word, then bit); `flipped`
    (word, bit) pairs are left out."""
    nbits = SEARCH_TYPES[data_type]
    k = min(k, values.size * nbits)
    if k == 1 and nbits == 8:
        return _best_byte_flip(data_type, values, g, flipped)
    return _ranked_flips(data_type, values, g, flipped, k)


def _ranked_flips(data_type, values, g, flipped, k):
    """`top_flips` one bit position at a time: memory is a few copies of the tensor, not one
    per bit."""
    nbits = SEARCH_TYPES[data_type]
    old = values.astype(np.float64)
    best: list[tuple[float, int, float]] = []  # (gain, flat index w * nbits + b, new)
    table = _byte_table(data_type)  # int8/uint8: new value per stored byte and bit
    codes = values.view(np.uint8) if table is not None else None
    for b in range(nbits):
        if table is not None:
            new = table[b][codes]  # exact, as flipped_values, one gather instead of five
        else:
            new = flipped_values(data_type, values, [b])[:, 0]
        with np.errstate(over="ignore", invalid="ignore"):
            gain = g * (new - old)
        gain[~np.isfinite(new) | ~np.isfinite(gain)] = -np.inf  # rank with finite values
        for w, fb in flipped:
            if fb == b:
                gain[w] = -np.inf
        if k == 1:
            top = [int(np.argmax(gain))]  # the first of equal gains
        elif k < gain.size:
            top = np.argpartition(-gain, k - 1)[:k]
        else:
            top = np.arange(gain.size)
        best += [(float(gain[w]), int(w) * nbits + b, float(new[w])) for w in top]
    best.sort(key=lambda c: (-c[0], c[1]))
    return [(gain, *divmod(idx, nbits), new) for gain, idx, new in best[:k] if gain > 0]


def _byte_table(data_type: int) -> np.ndarray | None:
    """(8, 256) new values of every stored byte with bit b toggled, for int8/uint8 weights."""
    if SEARCH_TYPES[data_type] != 8:
        return None
    stored = np.arange(256, dtype=np.uint8).view(NUMPY_TYPES[data_type])
    return np.ascontiguousarray(flipped_values(data_type, stored, np.arange(8)).T)


def _best_byte_flip(
    data_type: int, values: np.ndarray, g: np.ndarray, flipped: list[tuple[int, int]]
) -> list[tuple[float, int, int, float]]:
    """`top_flips` with k = 1 for int8/uint8 weights in one pass instead of eight.

    A byte's eight flips change its value by eight distinct powers of two, so for a gradient
    g the best of them is the largest increase (g > 0) or decrease (g < 0): one table lookup
    per element. The winner is the same flip the eight-pass ranking picks (highest gain,
    then lowest word; one element never has two best bits), bits already flipped excluded."""
    table = _byte_table(data_type)
    assert table is not None
    delta = table - np.arange(256, dtype=np.uint8).view(NUMPY_TYPES[data_type])[None, :]
    up, down = delta.argmax(0), delta.argmin(0)  # per stored byte: the bit of each extreme
    every = np.arange(256)
    codes = values.view(np.uint8)
    rising = g > 0
    best_bit = np.where(rising, up[codes], down[codes])
    with np.errstate(over="ignore", invalid="ignore"):
        gain = g * np.where(rising, delta[up, every][codes], delta[down, every][codes])
        done: dict[int, set[int]] = {}
        for w, fb in flipped:
            done.setdefault(w, set()).add(fb)
        for w, bits in done.items():  # the best bit of an element not flipped before
            others = [b for b in range(8) if b not in bits]
            if not others:
                gain[w] = -np.inf
                continue
            gains = g[w] * delta[others, codes[w]]
            best_bit[w], gain[w] = others[int(np.argmax(gains))], gains.max()
    gain[~np.isfinite(gain)] = -np.inf
    w = int(np.argmax(gain))
    if not gain[w] > 0:
        return []
    b = int(best_bit[w])
    return [(float(gain[w]), w, b, float(table[b][codes[w]]))]
