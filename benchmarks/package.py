"""Bundle integrity figures, measured in one run.

- ECC encode throughput: qtool's vectorised Reed-Solomon encoder vs reedsolo's pure-Python
  encoder on the same bytes (the parity is checked equal), and the size overhead.
- verify time on an intact and on a corrupted bundle of a ~N MB model.
- detection: random single-bit flips in the stored weights, each verified and attributed.

Run: python benchmarks/package.py [--mb 20] [--flips 200]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import reedsolo
from onnx import TensorProto, helper, numpy_helper

from qtool.deploy.bundle import package
from qtool.deploy.ecc import EccParams, encode_parity
from qtool.deploy.verify import verify


def big_model(path: Path, mb: int) -> Path:
    rng = np.random.default_rng(0)
    n = int(np.sqrt(mb * 2**20 / 4 / 2))
    w1 = rng.normal(0, 0.02, (n, n)).astype(np.float32)
    w2 = rng.normal(0, 0.02, (n, n)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("MatMul", ["h", "w2"], ["y"]),
        ],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def bench_encode(params: EccParams) -> None:
    """qtool's vectorised encoder vs reedsolo's on the same bytes; the parity must agree."""
    data = np.random.default_rng(1).integers(0, 256, 239 * 2000, dtype=np.uint8).tobytes()
    t0 = time.perf_counter()
    ours = encode_parity(data, params)
    t_ours = time.perf_counter() - t0
    codec = reedsolo.RSCodec(16)
    t0 = time.perf_counter()
    ref = b"".join(bytes(codec.encode(data[i : i + 239]))[239:] for i in range(0, len(data), 239))
    t_ref = time.perf_counter() - t0
    assert ours == ref
    mb = len(data) / 1e6
    print(
        f"ECC encode: qtool {mb / t_ours:.1f} MB/s, reedsolo {mb / t_ref:.2f} MB/s "
        f"-> {t_ref / t_ours:.0f}x; overhead {len(ours) / len(data):.2%} (nsym 16, 8 bytes/chunk)"
    )


def bench_package(tmp: Path, mb: int) -> Path:
    """Package and verify a model of about `mb` MB; return the bundle."""
    src = big_model(tmp / "big.onnx", mb)
    t0 = time.perf_counter()
    package(src, tmp / "bundle", ecc=True)
    t_pack = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert verify(tmp / "bundle").intact
    t_verify = time.perf_counter() - t0
    size = src.stat().st_size / 1e6
    print(
        f"package --ecc of a {size:.0f} MB model: {t_pack:.2f} s; verify intact: {t_verify:.2f} s"
    )
    return tmp / "bundle"


def bench_detection(bundle: Path, flips: int) -> None:
    """Random single-bit flips in the stored weights, each verified and attributed."""
    model_file = bundle / "big.onnx"
    records = json.loads((bundle / "manifest.json").read_text())["initializers"]
    original = model_file.read_bytes()
    rng = np.random.default_rng(2)
    detected = attributed = 0
    t_flip = 0.0
    for _ in range(flips):
        rec = records[int(rng.integers(len(records)))]
        element = int(rng.integers(rec["length"] // 4))
        bit = int(rng.integers(32))
        offset = rec["offset"] + element * 4 + bit // 8
        data = bytearray(original)
        data[offset] ^= 1 << (bit % 8)
        model_file.write_bytes(bytes(data))
        t0 = time.perf_counter()
        result = verify(bundle)
        t_flip += time.perf_counter() - t0
        detected += not result.intact
        bits = [(t.name, b.element, b.bit) for t in result.tensors for b in t.bits]
        attributed += bits == [(rec["name"], element, bit)]
    model_file.write_bytes(original)
    print(
        f"{flips} random single-bit flips: detected {detected}, attributed to tensor/"
        f"element/bit {attributed}; verify of a corrupted bundle {t_flip / flips:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=20)
    parser.add_argument("--flips", type=int, default=200)
    args = parser.parse_args()
    bench_encode(EccParams(16))
    with tempfile.TemporaryDirectory() as tmp:
        bundle = bench_package(Path(tmp), args.mb)
        bench_detection(bundle, args.flips)


if __name__ == "__main__":
    main()
