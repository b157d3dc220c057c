"""Reed-Solomon parity over a bundle's model bytes, so a few corrupted bytes can be repaired.

The bytes are cut into chunks of `255 - nsym` bytes; each chunk gets `nsym` parity bytes
(GF(2^8), reedsolo's default field and generator). Up to `nsym // 2` wrong bytes per chunk
(in data or parity) are corrected; more are detected as uncorrectable.

Encoding runs vectorised over all chunks at once with numpy (the pure-Python encoder manages
under 1 MB/s); it uses reedsolo's own field tables and generator polynomial, and a test
checks the parity equals `reedsolo.RSCodec.encode`. Decoding, needed only for damaged chunks,
is reedsolo's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qtool.errors import MissingExtra, QtoolError

DEFAULT_NSYM = 16
SCHEME = "reed-solomon GF(2^8), prim 0x11d, generator 2 (reedsolo)"


def _reedsolo():
    try:
        import reedsolo
    except ImportError as exc:
        raise MissingExtra("reedsolo", "ecc", "Reed-Solomon parity") from exc
    return reedsolo


@dataclass(frozen=True)
class EccParams:
    nsym: int = DEFAULT_NSYM

    @property
    def chunk(self) -> int:
        """Data bytes per Reed-Solomon codeword."""
        return 255 - self.nsym

    @property
    def correctable(self) -> int:
        """Wrong bytes per chunk that can be repaired."""
        return self.nsym // 2

    def parity_size(self, data_len: int) -> int:
        return -(-data_len // self.chunk) * self.nsym


def _tables(nsym: int) -> tuple[np.ndarray, np.ndarray]:
    """GF(256) multiplication table and generator polynomial, both from reedsolo."""
    rs = _reedsolo()
    rs.init_tables(0x11D)
    gen = np.array(rs.rs_generator_poly(nsym), dtype=np.uint8)
    exp = np.array(rs.gf_exp[:512], dtype=np.int32)
    log = np.array(rs.gf_log[:256], dtype=np.int32)
    a = np.arange(256)
    mul = exp[(log[a][:, None] + log[a][None, :]) % 255].astype(np.uint8)
    mul[0, :] = 0
    mul[:, 0] = 0
    return mul, gen


def encode_parity(data: bytes | bytearray | memoryview, params: EccParams) -> bytes:
    """Parity bytes for every chunk of `data`, concatenated chunk by chunk."""
    k, nsym = params.chunk, params.nsym
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    count = -(-len(buf) // k)
    if count == 0:
        return b""
    padded = np.zeros(count * k, dtype=np.uint8)
    padded[: len(buf)] = buf
    # A short last chunk is a shortened code: leading zeros change nothing, so pad in front.
    msgs = padded.reshape(count, k)
    tail = len(buf) - (count - 1) * k
    if tail != k:
        last = np.zeros(k, dtype=np.uint8)
        last[k - tail :] = buf[(count - 1) * k :]
        msgs[-1] = last
    mul, gen = _tables(nsym)
    by_generator = mul[:, gen[1:]]  # (256, nsym): feedback byte times each coefficient
    rem = np.zeros((count, nsym), dtype=np.uint8)
    columns = np.ascontiguousarray(msgs.T)
    for i in range(k):
        feedback = columns[i] ^ rem[:, 0]
        rem[:, :-1] = rem[:, 1:]
        rem[:, -1] = 0
        rem ^= by_generator[feedback]
    return rem.tobytes()


def encode_covers(files: list[tuple[str, bytes]], params: EccParams) -> tuple[bytes, list[dict]]:
    """Parity of several files, concatenated, and where each file's part lies in it."""
    parts, covers, offset = [], [], 0
    for name, data in files:
        parity = encode_parity(data, params)
        covers.append(
            {"file": name, "bytes": len(data), "parity_offset": offset, "parity_bytes": len(parity)}
        )
        parts.append(parity)
        offset += len(parity)
    return b"".join(parts), covers


def damaged_chunks(data: bytes, parity: bytes, params: EccParams) -> list[int]:
    """Chunks whose recomputed parity differs from the stored one: the only ones worth
    decoding (recomputing is vectorised; decoding is not)."""
    current, nsym = encode_parity(data, params), params.nsym
    return [
        c
        for c in range(len(parity) // nsym)
        if current[c * nsym : (c + 1) * nsym] != parity[c * nsym : (c + 1) * nsym]
    ]


@dataclass
class RepairResult:
    data: bytes
    corrected_offsets: list[int]
    uncorrectable_chunks: list[int]


def repair(
    data: bytes | bytearray,
    parity: bytes,
    params: EccParams,
    chunks: list[int] | None = None,
) -> RepairResult:
    """Correct `data` chunk by chunk (only `chunks` when given: the ones known damaged)."""
    rs = _reedsolo()
    k, nsym = params.chunk, params.nsym
    count = -(-len(data) // k)
    if len(parity) != count * nsym:
        raise QtoolError(
            f"the ECC file holds {len(parity)} parity bytes but the data needs {count * nsym}; "
            "it belongs to another model"
        )
    codec = rs.RSCodec(nsym, nsize=255)
    fixed = bytearray(data)
    offsets: list[int] = []
    failed: list[int] = []
    for c in range(count) if chunks is None else sorted(set(chunks)):
        start = c * k
        piece = bytes(fixed[start : start + k])
        pad = k - len(piece)
        codeword = bytearray(b"\0" * pad + piece + parity[c * nsym : (c + 1) * nsym])
        try:
            decoded, _, _ = codec.decode(codeword)
        except rs.ReedSolomonError:
            failed.append(c)
            continue
        decoded = bytes(decoded)[pad:]
        for j, (old, new) in enumerate(zip(piece, decoded, strict=True)):
            if old != new:
                offsets.append(start + j)
        fixed[start : start + len(piece)] = decoded
    return RepairResult(bytes(fixed), offsets, failed)
