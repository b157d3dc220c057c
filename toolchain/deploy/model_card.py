"""MODEL_CARD.md: what the people responsible for a deployed model need to read.

Built only from facts in the manifest and the bundled JSON reports, so every number in
the card can be traced to a file in the bundle.
"""

from __future__ import annotations


def _pct(x) -> str:
    return f"{100 * float(x):.2f} %" if isinstance(x, (int, float)) else "n/a"


def _find(reports: dict, predicate) -> list[tuple[str, dict]]:
    return [(name, r) for name, r in reports.items() if predicate(r)]


def render_model_card(manifest: dict, intended_use: str | None = None) -> str:
    """The card's Markdown: every number comes from the manifest or a bundled report."""
    reports = manifest.get("reports") or {}
    lines = _about(manifest, intended_use)
    lines += ["", "## Accuracy", "", *_accuracy(reports)]
    lines += ["", "## Latency and energy", ""]
    lines += _report_lines(reports, _is_bench, _bench_line, "benchmark", "bench")
    lines += ["", "## Robustness to bit flips in stored weights", ""]
    lines += _report_lines(reports, _is_flip, _flip_line, "bit-flip", "flip")
    lines += ["", *_integrity(manifest.get("ecc")), ""]
    return "\n".join(lines)


def _about(manifest: dict, intended_use: str | None) -> list[str]:
    name = manifest.get("model_name") or manifest["model"]["file"]
    quant = manifest.get("quantization")
    return [
        f"# Model card: {name}",
        "",
        f"File `{manifest['model']['file']}`, bundled {manifest['created']} by qtool "
        f"{manifest['versions']['qtool']} (onnx {manifest['versions']['onnx']}, onnxruntime "
        f"{manifest['versions']['onnxruntime']}).",
        "",
        "## Intended use",
        "",
        intended_use
        or "Classification of inputs like those of the data set below, on CPU servers with "
        "ONNX Runtime. Decision support under clinical oversight only; not validated as a "
        "medical device. Do not use on data unlike the evaluation data.",
        "",
        "## Data and input",
        "",
        f"- Data set: {manifest.get('dataset') or 'not recorded'}",
        f"- Classes: {', '.join(manifest.get('class_names') or []) or 'not recorded'}",
        f"- Input: {_inputs(manifest['inputs'])}",
        f"- Preprocessing: {manifest['preprocessing'].get('normalization') or 'none recorded'}",
        f"- Quantisation: {quant if quant else 'none (FP32)'}",
        f"- Execution provider: {_runtime(manifest.get('runtime'))}",
    ]


def _runtime(runtime: dict | None) -> str:
    if not runtime:
        return "not recorded (qtool predict runs the CPU provider)"
    return (
        f"validated on {runtime['provider']} ({runtime['ort_name']}, precision "
        f"{runtime['precision']}: {runtime['precision_detail']}); qtool predict runs on it"
    )


def _is_eval(r: dict) -> bool:
    return "accuracy" in r and "confusion" in r


def _is_bench(r: dict) -> bool:
    return "energy" in r or "latency" in str(list(r))[:400]


def _is_flip(r: dict) -> bool:
    return "budgets" in r or "flips" in r or "campaign" in r


def _missing(kind: str, command: str) -> str:
    return f"- No {kind} report bundled (package with the JSON report of `qtool {command}`)."


def _accuracy(reports: dict) -> list[str]:
    lines = []
    for report_name, r in _find(reports, _is_eval):
        line = f"- {_pct(r['accuracy'])} on {r.get('samples')} samples of {r.get('data')} "
        line += f"({r.get('split')}), from `reports/{report_name}`"
        if r.get("sensitivity") is not None:
            line += f"; sensitivity {_pct(r['sensitivity'])}, specificity "
            line += f"{_pct(r['specificity'])} (positive: {r.get('positive_class')})"
        lines.append(line)
    return lines or [_missing("evaluation", "eval")]


def _report_lines(reports: dict, predicate, describe, kind: str, command: str) -> list[str]:
    found = _find(reports, predicate)
    lines = [f"- See `reports/{name}`. {describe(r)}" for name, r in found]
    return lines or [_missing(kind, command)]


def _integrity(ecc: dict | None) -> list[str]:
    """How to check the bundle; the commands are for the operator reading the card."""
    lines = [
        "## Integrity",
        "",
        "Run `qtool verify <bundle>` before loading; `qtool predict` does so itself and refuses",
        "a bundle whose bytes differ from `manifest.json` (sha256 per file, per tensor, CRC32",
        "per 4 KiB block of every tensor).",
    ]
    if ecc:
        lines.append(
            f"Reed-Solomon parity (`{ecc['file']}`, {ecc['nsym']} parity bytes per "
            f"{ecc['chunk_bytes']}-byte chunk, {100 * ecc['overhead']:.1f} % overhead) repairs "
            f"up to {ecc['correctable_bytes_per_chunk']} corrupted bytes per chunk: "
            "`qtool verify --repair <bundle>`."
        )
    return lines


def _inputs(inputs: list[dict]) -> str:
    return ", ".join("{} {} {}".format(i["name"], i["dtype"], i["shape"]) for i in inputs)


def _bench_line(r: dict) -> str:
    """Latency and energy per model and batch, with the energy method stated on every row."""
    rows = [
        "",
        "| model | provider | batch | threads | p50 latency | items/s | energy per item |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in r.get("groups") or []:
        for c in group.get("configs") or []:
            lat, energy = c.get("latency") or {}, c.get("energy") or {}
            joules = (
                f"{energy['mj_per_item']:.4g} mJ ({energy.get('method', '?')})"
                if energy.get("mj_per_item") is not None
                else "not measured"
            )
            rows.append(
                f"| {c.get('name')} | {c.get('provider', 'cpu')} | {group.get('batch')} | "
                f"{group.get('threads')} | "
                f"{lat.get('p50_ms', float('nan')):.4g} ms | "
                f"{lat.get('throughput_items_per_s', float('nan')):,.0f} | {joules} |"
            )
    methods = {
        (c.get("energy") or {}).get("method")
        for g in r.get("groups") or []
        for c in g.get("configs") or []
    }
    if "estimated" in methods:
        rows.append(
            "\nEnergy is ESTIMATED from process CPU time x watts per core, not measured; "
            "the energy ratio between models equals their CPU-time ratio."
        )
    return "\n".join(rows) if len(rows) > 3 else ""


def _flip_line(r: dict) -> str:
    """Mean accuracy per number of random flipped weight bits, one row per model."""
    stats = r.get("stats") or []
    budgets = sorted({s["bits"] for s in stats})
    if not budgets:
        return ""
    clean = {m["path"]: m.get("clean_accuracy") for m in r.get("models") or []}
    rows = [
        "",
        f"Mean test accuracy over {r.get('trials')} trials per budget ({r.get('data')}, "
        f"targets={r.get('targets')}):",
        "",
        "| model | clean | " + " | ".join(f"{b} bits" for b in budgets) + " |",
        "|---" * (len(budgets) + 2) + "|",
    ]
    for model in dict.fromkeys(s["model"] for s in stats):
        by_bits = {s["bits"]: s["mean"] for s in stats if s["model"] == model}
        cells = [_pct(by_bits.get(b)) for b in budgets]
        name = model.rsplit("/", 1)[-1]
        rows.append(f"| {name} | {_pct(clean.get(model))} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
