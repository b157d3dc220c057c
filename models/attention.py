"""Local multi-head self-attention (SASA, Ramachandran et al. 2019) in two forms.

The *training form* gathers each pixel's k x k neighbourhood with `F.unfold` and reduces with
Mul + Sum: its backward is cheap. The *export form* computes the same numbers with operators
ONNX Runtime runs fast and quantises: the neighbourhood gather is one depthwise `Conv` with
fixed one-hot weights (each output channel copies one neighbour; the weights are exactly 0
and 1, so int8 represents them exactly) whose bias adds the relative position embedding, so
the graph has no Pad/Slice/Concat chains (they were half the run time and made ONNX Runtime's
QDQ quantiser wrap hundreds of data-movement nodes). The one-hot weights are a non-persistent
buffer: not a parameter, not in checkpoints; the export stage marks the Conv as `fixed`
(`qtool.modelfile.roles`), which keeps it out of parameter counts, FLOPs and flip targets.

torch runs the training form, also in eval mode; the export form is traced when exporting, so
the export's parity check compares the two forms on real samples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FORMS = ("unfold", "gather")


def one_hot_gather(channels: int, kernel: int) -> torch.Tensor:
    """(channels * k*k, 1, k, k) weights: output channel c*k*k + i*k + j copies input channel c
    at offset (i, j), row-major like F.unfold."""
    kk = kernel * kernel
    weight = torch.zeros(channels * kk, 1, kernel, kernel)
    for c in range(channels):
        for n in range(kk):
            weight[c * kk + n, 0, n // kernel, n % kernel] = 1.0
    return weight


def exporting() -> bool:
    """True while torch.export or the TorchScript ONNX exporter traces the module."""
    return bool(torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export())


class LocalSelfAttention(nn.Module):
    """Multi-head self-attention over each pixel's k x k neighbourhood (SASA layer).

    Query from the centre pixel, keys and values from the neighbourhood; relative position
    embeddings (half the head channels for the row offset, half for the column offset) are
    added to the keys. Out-of-image neighbours are zero padding, as in convolution, so the
    layer needs no additive -inf mask (which would wreck an INT8 activation range).
    `form` forces "unfold" or "gather"; None picks gather while exporting, else unfold.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int = 3, heads: int = 4, stride: int = 1
    ):
        super().__init__()
        if out_channels % heads or (out_channels // heads) % 2:
            raise ValueError("out_channels must split into heads of an even number of channels")
        self.kernel, self.heads, self.stride = kernel, heads, stride
        self.head_dim = out_channels // heads
        self.out_channels = out_channels
        self.form: str | None = None
        self.query = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
        self.key = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.value = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        half = self.head_dim // 2
        self.rel_rows = nn.Parameter(torch.randn(half, kernel) / math.sqrt(self.head_dim))
        self.rel_cols = nn.Parameter(torch.randn(half, kernel) / math.sqrt(self.head_dim))
        self.register_buffer("gather", one_hot_gather(self.head_dim, kernel), persistent=False)

    def relative_embedding(self) -> torch.Tensor:
        """(head_dim, k*k): embedding of offset (a, b) = [rows[:, a]; cols[:, b]]."""
        k = self.kernel
        rows = self.rel_rows[:, :, None].expand(-1, k, k)
        cols = self.rel_cols[:, None, :].expand(-1, k, k)
        return torch.cat([rows, cols], dim=0).reshape(self.head_dim, k * k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.head_dim**-0.5
        if (self.form or ("gather" if exporting() else "unfold")) == "gather":
            # the scale folded into the query weights: one pass over the activations less
            q = F.conv2d(x, self.query.weight * scale, stride=self.stride)
            out = self._attend_gather(q, self.key(x), self.value(x))
        else:  # query, key, value in this order: see _attend_unfold
            q = self.query(x) * scale
            keys, values = self.key(x), self.value(x)
            out = self._attend_unfold(q, keys, values)
        return out.reshape(-1, self.out_channels, int(q.shape[-2]), int(q.shape[-1]))

    def _attend_unfold(self, q, keys, values) -> torch.Tensor:
        """Training form: Unfold and Mul+Sum, whose backward is cheap (no tiny batched GEMMs).

        (The order of the operations fixes the order gradients are summed in: keep it, or
        the demo's seeded checkpoints change in their last bits.)
        """
        k, kk, hw = self.kernel, self.kernel**2, int(q.shape[-2]) * int(q.shape[-1])
        shape = (-1, self.heads, self.head_dim, kk, hw)
        unfold = {"kernel_size": k, "padding": k // 2, "stride": self.stride}
        keys = F.unfold(keys, **unfold).reshape(shape)  # offsets row-major
        keys = keys + self.relative_embedding()[:, :, None]
        values = F.unfold(values, **unfold).reshape(shape)
        logits = (q.reshape(-1, self.heads, self.head_dim, 1, hw) * keys).sum(2)
        attn = torch.softmax(logits, dim=2)  # (N, heads, kk, hw)
        return (attn.unsqueeze(2) * values).sum(3)  # (N, heads, head_dim, hw)

    def _attend_gather(self, q, keys, values) -> torch.Tensor:
        """Export form: the neighbourhoods by one fixed one-hot depthwise Conv per tensor.

        Heads are folded into the batch, so one (head_dim * k*k, 1, k, k) weight serves every
        head, and the key gather's bias (per head channel and offset) is the relative
        embedding: a zero-padded neighbour gets exactly the embedding, as in the unfold form.
        """
        k, kk, hw = self.kernel, self.kernel**2, int(q.shape[-2]) * int(q.shape[-1])
        h, w = int(keys.shape[-2]), int(keys.shape[-1])
        shape = (-1, self.heads, self.head_dim, kk, hw)

        def neighbourhood(t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
            t = t.reshape(-1, self.head_dim, h, w)  # (N * heads, head_dim, H, W)
            t = F.conv2d(
                t, self.gather, bias, stride=self.stride, padding=k // 2, groups=self.head_dim
            )
            return t.reshape(shape)

        keys = neighbourhood(keys, self.relative_embedding().reshape(-1))
        logits = (q.reshape(-1, self.heads, self.head_dim, 1, hw) * keys).sum(2)
        attn = torch.softmax(logits, dim=2)  # (N, heads, kk, hw)
        return (attn.unsqueeze(2) * neighbourhood(values, None)).sum(3)
