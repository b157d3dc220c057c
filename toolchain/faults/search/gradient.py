"""The gradient searcher: first-order ranking of every (element, bit) flip with the torch
replica, then the exact attack loss of the best few per layer.

For each target layer, dL/dW on the attack batch times each flip's value change ranks all
flips (int8: two's complement, MSB worth -128; FP32: the IEEE-754 word with the bit toggled,
non-finite results left out of the ranking); the top `per_layer` that raise the loss are
then measured in the replica with that one element changed.
"""

from __future__ import annotations

import numpy as np

from qtool.faults.search.attacked import SearchModel
from qtool.faults.search.values import SEARCH_TYPES, flipped_values

MARGIN_CAP = 1.0
# (first-order gain, target, word, bit, new value)
Candidate = tuple[float, int, int, int, float]


class GradientSearcher:
    """First-order ranking with the torch replica, exact loss of the best few per layer."""

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

    def candidates(self) -> tuple[float, list[Candidate]]:
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

    def measure(self, i: int, word: int, new_value: float) -> tuple[float, float]:
        """(real attack loss, attack error rate) with one element changed (then restored)."""
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
