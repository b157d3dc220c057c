"""serving.metrics: Prometheus text exposition with cumulative histogram buckets and bounded,
escaped labels."""

from __future__ import annotations

from qtool.serving.metrics import BUCKETS, Metrics


def test_counts_and_cumulative_buckets():
    metrics = Metrics()
    for seconds in (0.0003, 0.004, 0.004, 20.0):
        metrics.observe("infer", 200, seconds)
    metrics.observe("infer", 400, 0.001)
    text = metrics.render([("qtool_up", "gauge", "Up.", 1.0, {"model": 'a"b'})])
    assert 'qtool_requests_total{endpoint="infer",code="200"} 4' in text
    assert 'qtool_requests_total{endpoint="infer",code="400"} 1' in text
    bucket = 'qtool_request_duration_seconds_bucket{endpoint="infer",le="%s"} %d'
    assert bucket % ("0.0005", 1) in text
    assert bucket % ("0.001", 2) in text
    assert bucket % ("0.005", 4) in text
    assert bucket % (repr(BUCKETS[-1]), 4) in text and bucket % ("+Inf", 5) in text
    assert 'qtool_request_duration_seconds_count{endpoint="infer"} 5' in text
    assert 'qtool_up{model="a\\"b"} 1' in text and "# TYPE qtool_up gauge" in text
