"""The README's figures come from the bench result files (bench/figures.py), never typed by hand."""
import copy
import importlib.util
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _figures():
    spec = importlib.util.spec_from_file_location("bench_figures", os.path.join(ROOT, "bench", "figures.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_readme_table_is_the_one_the_result_files_give():
    figures = _figures()
    with open(figures.README, encoding="utf-8") as handle:
        readme = handle.read()
    assert figures.readme_with_table(readme) == readme, "the table is stale: run python bench/figures.py --write"


def test_every_row_links_its_result_file_and_a_target_follows_the_numbers():
    figures = _figures()
    for row in figures.ROWS:
        assert os.path.exists(os.path.join(ROOT, "bench", "results", row.result)), row.result
        assert f"(bench/results/{row.result})" in figures.table()
    row = next(row for row in figures.ROWS if row.result == "pollution_locked.json")
    with open(os.path.join(ROOT, "bench", "results", row.result), encoding="utf-8") as handle:
        data = json.load(handle)
    better = copy.deepcopy(data)
    better["results"]["locked"].update(micro_f1=0.9, macro_f1_all=0.85, env_accuracy=0.96)
    assert row.status(better).endswith(": met")
    better["results"]["locked"]["env_accuracy"] = 0.949
    assert row.status(better).endswith("not met")
    assert "micro F1 0.900" in row.figure(better) and "env/not 0.949" in row.figure(better)
