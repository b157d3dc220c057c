"""MODEL_CARD.md: what the people responsible for a deployed model need to read.

Built only from facts in the manifest and the bundled JSON reports, so every number in
the card can be traced to a file in the bundle. Which report feeds which section is
deploy/card_reports.py (one entry per report kind).
"""

from __future__ import annotations

from qtool.deploy.card_reports import REPORT_KINDS, SECTIONS, kind_of


def render_model_card(manifest: dict, intended_use: str | None = None) -> str:
    """The card's Markdown: every number comes from the manifest or a bundled report."""
    reports = manifest.get("reports") or {}
    kinds = {name: kind_of(r) for name, r in reports.items()}
    lines = _about(manifest, intended_use, reports, kinds)
    for section, (title, command) in SECTIONS.items():
        found = []
        for name, kind in kinds.items():
            describe = REPORT_KINDS.get(kind).sections.get(section) if kind else None
            if describe is not None:
                found += describe(name, reports[name])
        if found or section in ALWAYS:
            lines += ["", f"## {title}", "", *(found or [_missing(section, command)])]
    unknown = [name for name, kind in kinds.items() if kind is None]
    if unknown:
        lines += ["", "## Other reports", ""]
        lines += [f"- `reports/{n}`: not a report kind qtool summarises" for n in unknown]
    lines += ["", *_integrity(manifest.get("ecc")), ""]
    return "\n".join(lines)


ALWAYS = ("accuracy", "latency", "bitflips")  # sections shown (saying what is missing) always
MISSING = {"accuracy": "evaluation", "latency": "benchmark", "bitflips": "bit-flip"}


def _missing(section: str, command: str) -> str:
    kind = MISSING.get(section, section)
    return f"- No {kind} report bundled (package with the JSON report of `qtool {command}`)."


def _about(manifest: dict, intended_use: str | None, reports: dict, kinds: dict) -> list[str]:
    name = manifest.get("model_name") or manifest["model"]["file"]
    quant = manifest.get("quantization")
    classes = ", ".join(manifest.get("class_names") or []) or "not recorded"
    if manifest.get("positive_class"):
        classes += f" (positive: {manifest['positive_class']})"
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
        f"- Data set: {_dataset(manifest, reports, kinds)}",
        f"- Classes: {classes}",
        f"- Input: {_inputs(manifest['inputs'])}",
        f"- Preprocessing: {_preprocessing(manifest.get('preprocessing') or {})}",
        f"- Quantisation: {_quantisation(quant)}",
        f"- Execution provider: {_runtime(manifest.get('runtime'))}",
    ]


def _quantisation(quant: object) -> str:
    """One line of the recorded settings (all of them are in manifest.json)."""
    if not quant:
        return "none (FP32)"
    if not isinstance(quant, dict):
        return str(quant)
    return (
        f"static {quant.get('weight_type', '?')} weights "
        f"({'per channel' if quant.get('per_channel') else 'per tensor'}), "
        f"{quant.get('activation_type', '?')} activations, {quant.get('format', '?')} format, "
        f"{quant.get('method', '?')} calibration on {quant.get('samples', '?')} samples of "
        f"{quant.get('calibration', '?')} (every setting: `quantization` in manifest.json)"
    )


def _dataset(manifest: dict, reports: dict, kinds: dict) -> str:
    """The model's own data set, else the data its bundled reports were measured on."""
    if manifest.get("dataset"):
        return str(manifest["dataset"])
    seen = []
    for name, kind in kinds.items():
        r = reports[name]
        data = r.get("data") or (r.get("settings") or {}).get("calibration")
        if kind and data and data not in seen:
            seen.append(str(data))
    if seen:
        return f"not recorded in the model; the reports measure on {', '.join(seen)}"
    return "not recorded"


def _preprocessing(pre: dict) -> str:
    norm = pre.get("normalization")
    text = f"mean {norm.get('mean')}, std {norm.get('std')}" if isinstance(norm, dict) else ""
    text = f"(x - mean) / std with {text}" if text else "no normalisation recorded"
    if pre.get("layout"):
        text = f"{pre['layout']}, then {text}"
    return text


def _runtime(runtime: dict | None) -> str:
    if not runtime:
        return "not recorded (qtool predict runs the CPU provider)"
    return (
        f"validated on {runtime['provider']} ({runtime['ort_name']}, precision "
        f"{runtime['precision']}: {runtime['precision_detail']}); qtool predict runs on it"
    )


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
