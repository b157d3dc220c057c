"""Static INT8 quantisation with ONNX Runtime's own quantiser, with its accuracy cost measured.

qtool does not re-implement quantisation: it prepares the model with
`onnxruntime.quantization.shape_inference.quant_pre_process`, calibrates and quantises with
`quantize_static`, and measures per-tensor error with `onnxruntime.quantization.qdq_loss_debug`.
What qtool adds is the plumbing around it: calibration samples prepared exactly as `qtool eval`
prepares them (same ModelIO), a `reduce_range` chosen from the CPU's instruction set, an
accuracy check against a budget, and an accuracy-aware loop that keeps the most damaged nodes
in FP32 until the budget is met.

Calibration runs once per call, in batches sized to a memory bound: its ranges are cached
(`calibration_cache_path`) and every re-quantisation (placement rounds, the accuracy-aware
loop) reuses them, so a step costs quantise + eval + a streamed 32-sample debug run, not a
new calibration. The budget is judged on the validation split; the test split is reported.

Modules, one job each:
  settings.py       QuantizeOptions (what the caller asks), QuantSettings (what shaped the
                    model, stored in its metadata), reduce_range from the CPU flags
  calibration.py    calibration batches and reader, labelled splits, debug subset
  quantizer.py      the calls into ORT: pre-processing, node naming, quantize_static
  placement.py      Q/DQ only around nodes ORT runs in INT8, read from its optimised graph
  tensor_errors.py  per-tensor SQNR and the noise each node adds (qdq_loss_debug's, streamed)
  fallback.py       the accuracy-aware loop
  attempts.py       the quantise-and-measure runs of one call, accuracy per split
  report.py         QuantizeReport, SplitAccuracy and BudgetNotMet
  quantize.py       quantize_model: the steps above in order
The tables `qtool quantize` prints are in `qtool.commands.quantize_views`.
"""
