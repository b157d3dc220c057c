"""Surrogate training tasks: the label-free ones never read a label, learn their task, and
are deterministic; the supervised one is the classifier it always was."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import torch  # noqa: E402
from attack_helpers import surrogate  # noqa: E402

from qtool.attacks.knowledge import Knowledge, attacker_samples  # noqa: E402
from qtool.attacks.pretext import EMBED, TASKS  # noqa: E402
from qtool.attacks.settings import SurrogateSpec  # noqa: E402
from qtool.attacks.surrogate import train_surrogate  # noqa: E402
from qtool.data.datasets import load_dataset  # noqa: E402

SPEC = SurrogateSpec(steps=25)


def _weights(s):
    return [t.clone() for t in s.model.state_dict().values()]


@pytest.mark.parametrize("task", ["instance", "contrastive"])
def test_label_free_tasks_never_read_labels_and_are_seeded(task):
    k = attacker_samples(load_dataset("digits", "train"), 2, 0)
    shuffled = Knowledge(k.x, np.random.default_rng(1).permutation(k.y), k.num_classes, k.k)
    a = train_surrogate(SPEC, k, 0, task)
    b = train_surrogate(SPEC, shuffled, 0, task)
    c = train_surrogate(SPEC, k, 1, task)
    for wa, wb in zip(_weights(a), _weights(b), strict=True):
        assert torch.equal(wa, wb)
    assert not all(torch.equal(p, q) for p, q in zip(_weights(a), _weights(c), strict=True))
    assert a.task == task and a.feature_layer == "stage1"


def test_each_task_learns_its_task_and_has_its_head():
    x = torch.from_numpy(load_dataset("digits", "test").x[:3])
    sup = surrogate(1, 0)
    assert sup.train_accuracy == 1.0 and sup.model.head is None
    assert sup.logits(x).shape == (3, 10)
    inst = surrogate(1, 0, "instance")  # ten images, each its own class
    assert inst.train_accuracy >= 0.8 and inst.logits(x).shape == (3, 10)
    con = surrogate(1, 0, "contrastive")
    assert con.train_accuracy >= 0.3  # finds its own view among ten: chance is 0.1
    z = con.logits(x)
    assert z.shape == (3, EMBED)
    assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)


def test_contrastive_loss_goes_down():
    from qtool.attacks.pretext import Batch

    k = attacker_samples(load_dataset("digits", "train"), 5, 0)
    x, y = torch.from_numpy(k.x), torch.from_numpy(k.y)

    def loss(s) -> float:
        batch = Batch(x, y, 50, torch.Generator().manual_seed(7))
        with torch.no_grad():
            return float(TASKS.get("contrastive").loss(s.model, batch))

    before = train_surrogate(SurrogateSpec(steps=1), k, 0, "contrastive")
    after = train_surrogate(SurrogateSpec(steps=60), k, 0, "contrastive")
    assert loss(after) < loss(before) - 0.3
