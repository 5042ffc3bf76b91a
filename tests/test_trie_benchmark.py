"""The trie benchmark at toy sizes: the JSON shape, statuses, and the reference limits."""
import json

import pytest

from tigerlib.decoding import run_trie_benchmark

ROW_KEYS = {"n", "impl", "status", "build_seconds", "bytes_per_node", "step_ms", "beams"}
TINY = dict(sizes=(200, 1000), seq_len=6, vocab=64, beams=16, repeats=2, reference_repeats=1)


def test_shape_and_both_impls_ok():
    out = run_trie_benchmark(**TINY)
    json.dumps(out)  # JSON-ready
    rows = out["results"]
    assert [(r["n"], r["impl"]) for r in rows] == [(200, "tensor"), (200, "reference"), (1000, "tensor"), (1000, "reference")]
    for r in rows:
        assert set(r) == ROW_KEYS and r["status"] == "ok" and r["beams"] == 16
        assert all(isinstance(r[k], float) and r[k] > 0 for k in ("build_seconds", "bytes_per_node", "step_ms"))
    tensor = {r["n"]: r for r in rows if r["impl"] == "tensor"}
    reference = {r["n"]: r for r in rows if r["impl"] == "reference"}
    for n in (200, 1000):
        assert tensor[n]["bytes_per_node"] < reference[n]["bytes_per_node"]
        assert out["masks_match"][str(n)] is True  # both produce the same [beams, vocab] masks
        assert out["speedup_step"][str(n)] == pytest.approx(reference[n]["step_ms"] / tensor[n]["step_ms"])
        assert len(out["step_ms_by_depth"]["tensor"][str(n)]) == 6
    assert out["config"]["depths"] == list(range(6))


def test_reference_skipped_with_reason_when_over_limits():
    out = run_trie_benchmark(**TINY, reference_limit_bytes=1)
    ref = [r for r in out["results"] if r["impl"] == "reference"]
    assert len(ref) == 2  # reported, not silently dropped
    for r in ref:
        assert r["status"].startswith("not run: estimated") and "B/node" in r["status"] and "measured at n=" in r["status"]
        assert r["build_seconds"] is None and r["bytes_per_node"] is None and r["step_ms"] is None
    assert all(r["status"] == "ok" for r in out["results"] if r["impl"] == "tensor")
    assert out["reference_estimates"]["1000"]["nodes"] == out["num_nodes"]["1000"]

    out = run_trie_benchmark(**TINY, reference_limit_seconds=0.0)
    assert all("reference_limit_seconds" in r["status"] for r in out["results"] if r["impl"] == "reference")


def test_text_table_prints_not_run_rows(monkeypatch, home, capsys):
    """`tiger bench trie` without --json: a "not run" row shows its reason instead of crashing on None."""
    from tigerlib import cli
    from tigerlib.decoding import trie_benchmark

    out = run_trie_benchmark(**{**TINY, "sizes": (200,)}, reference_limit_bytes=1)
    monkeypatch.setattr(trie_benchmark, "run_trie_benchmark", lambda **kwargs: out)
    assert cli.main(["bench", "trie", "--sizes", "200"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "tensor" in lines[0] and " ok " in lines[0] and "B/node" in lines[0]
    assert "reference" in lines[1] and "not run: estimated" in lines[1] and "build" not in lines[1].split("not run")[0]
