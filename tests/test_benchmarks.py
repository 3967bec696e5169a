"""The benchmark plumbing: machine description, result names, and one tiny end-to-end run writing its JSON."""
import json

import pytest

from benchmarks import bench_tasks
from benchmarks.common import machine, result_name, vector_isa


def test_vector_isa_from_cpu_flags():
    assert vector_isa({"sse2", "avx2", "fma", "avx512f", "avx512bw"}) == "avx512"
    assert vector_isa({"sse2", "avx2", "fma"}) == "avx2"
    assert vector_isa({"sse2", "avx2"}) == "sse2"  # AVX2 without FMA is not the AVX2 build target
    assert vector_isa({"neon", "asimd"}) == "other"


def test_result_name_tags_and_rejects_paths():
    assert result_name("op_cpu", None) == "op_cpu"
    assert result_name("op_cpu", "avx512") == "op_cpu_avx512"
    assert result_name("tasks", "2cpu_avx-512") == "tasks_2cpu_avx-512"
    for bad in ("a b", "../x", "a/b", "."):
        with pytest.raises(SystemExit, match="--tag"):
            result_name("op_cpu", bad)


def test_machine_names_the_vector_isa():
    info = machine()
    assert info["vector_isa"] in ("avx512", "avx2", "sse2", "other")
    assert info["cores"] >= 1 and info["torch"]


def test_tasks_benchmark_writes_its_result(tmp_path):
    result = bench_tasks.main(["--ruleset", "mante", "--repeats", "1", "--calls", "1", "--tag", "t",
                               "--out", str(tmp_path)])
    written = json.loads((tmp_path / "tasks_t.json").read_text())
    assert sorted(written["per_rule_ms"]) == ["contextdm1", "contextdm2"]
    assert written["average_noise_on_ms"] == pytest.approx(result["average_noise_on_ms"])
    assert written["machine"]["vector_isa"] == machine()["vector_isa"]
    assert [p.name for p in tmp_path.iterdir()] == ["tasks_t.json"]  # no temporary file left behind
