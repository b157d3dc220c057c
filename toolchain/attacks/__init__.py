"""Lightweight black-box attacks on deployed ONNX models (`qtool attack`).

The attacker of Sun et al. (NeurIPS 2022) has a few labelled images per class and nothing else:
no weights, no training data, no outputs. `qtool.attacks` trains a surrogate on those images,
crafts examples on its shallow layers (feature disruption, ETF) or its logits (PGD transfer),
and measures them on the deployed models in ONNX Runtime, beside a query attack that sees the
scores (Square Attack via ART) and the floor of random noise of the same norm.

Layout: `methods` (the registry; one module per method: feature, etf (etf-i and etf-c),
pgd_transfer, square, noise), `budget` (norm balls), `knowledge` (K samples per class),
`surrogate` (torch), `pretext` (the registry of surrogate training tasks: supervised,
instance, contrastive), `augment` (random training views, ETF's fixed views), `target` (ONNX
Runtime only), `run` (seeded units), `campaign` (a whole run, summaries), `stats` (bootstrap),
`settings` (typed settings and limits).
"""
