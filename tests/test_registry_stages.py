"""The registry's stages: the production alias, promote/rollback, compare, list, and the rule that
no retrain ever silently replaces a promoted model (issue 22, item 6).

Sentences here are written for these tests. The two small models are trained once per module on
them (no threshold tuning: a second each) into a registry that each test copies.
"""
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from envleads import cli
from envleads.models import pollution, protocol, registry, registry_stages
from envleads.records import TypePrediction

ROWS = [
    ("t-01", "化工厂烟囱天天冒黑烟，整个小区都是刺鼻的气味。", ["air"]),
    ("t-02", "烧烤摊油烟直排，窗户都不敢开。", ["air"]),
    ("t-03", "工地扬尘太大，车上落满了灰。", ["air"]),
    ("t-04", "造纸厂把污水直接排进河里，河水发黑发臭。", ["water"]),
    ("t-05", "养殖场的粪水流进水塘，鱼都死了。", ["water"]),
    ("t-06", "小区旁的河沟漂满了油污，水是绿色的。", ["water"]),
    ("t-07", "工地晚上打桩到凌晨，吵得睡不着。", ["noise"]),
    ("t-08", "楼下酒吧音响声音太大，半夜还在响。", ["noise"]),
    ("t-09", "广场舞音箱开得很响，每天晚上都扰民。", ["noise"]),
    ("t-10", "有人把建筑垃圾倒在村口的空地上。", ["solid_waste"]),
    ("t-11", "垃圾站的垃圾好几天没人清运，堆成了山。", ["solid_waste"]),
    ("t-12", "电镀厂的废渣堆在农田边上，庄稼都枯了。", ["soil", "solid_waste"]),
    ("t-13", "冶炼厂旁边的土地被重金属污染，种的菜不能吃。", ["soil"]),
    ("t-14", "楼顶装了好几个基站天线，担心辐射。", ["radiation"]),
    ("t-15", "医院的放射科门口没有任何防护标志。", ["radiation"]),
    ("t-16", "有人在山上成片砍树，山坡都光秃秃了。", ["ecological"]),
    ("t-17", "湖边的湿地被填平盖了房子。", ["ecological"]),
    ("t-18", "路灯彻夜照进卧室，强光刺眼。", ["other"]),
    ("t-19", "请问社保卡丢了怎么补办？", []),
    ("t-20", "小区停车位怎么申请，物业说要排队。", []),
    ("t-21", "孩子入学的户口问题想咨询一下。", []),
    ("t-22", "公交车改线以后上班很不方便。", []),
]
MORE = [
    ("t-23", "饭店的排烟管对着住户，油烟味很重。", ["air"]),
    ("t-24", "车间机器的轰鸣声日夜不停。", ["noise"]),
    ("t-25", "村里的河被倒满了生活垃圾。", ["solid_waste", "water"]),
]
UNSEEN = [
    ("u-01", "热电厂的烟囱冒出黄色的烟，闻着呛人。", ["air"]),
    ("u-02", "洗车店的污水流到马路上又流进雨水管。", ["water"]),
    ("u-03", "夜里装修电钻声不断，老人孩子都睡不好。", ["noise"]),
    ("u-04", "想问一下公积金怎么提取。", []),
]


def _rows(rows):
    return [{"id": i, "title": "", "text": t, "labels": list(l), "synthetic": True}
            for i, t, l in rows]


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _rows(rows)),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A registry with two versions (A on ROWS, B on ROWS + MORE) and no alias yet."""
    root = tmp_path_factory.mktemp("stages")
    data_a, data_b = _write(root / "a.jsonl", ROWS), _write(root / "b.jsonl", ROWS + MORE)
    versions = [registry.train_and_register(_rows(rows), registry_dir=str(root / "registry"),
                                            command="test", data_files=[str(data)],
                                            locked_part=False, threshold_folds=0)
                for rows, data in ((ROWS, data_a), (ROWS + MORE, data_b))]
    return root, versions


@pytest.fixture
def reg(trained, tmp_path):
    """A fresh copy of the trained registry: (folder, version A, version B)."""
    root, (a, b) = trained
    shutil.copytree(root / "registry", tmp_path / "registry")
    return str(tmp_path / "registry"), a, b


@pytest.fixture
def no_shared(monkeypatch, tmp_path):
    monkeypatch.setenv("ENVLEADS_SHARED_DATA", str(tmp_path / "absent"))


def _production_run(monkeypatch, registry_dir: str) -> str:
    from envleads.pipelines.options import prepare_worker_environment
    from envleads.pipelines.options import StageSettings

    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "test-registry-key")
    return prepare_worker_environment(StageSettings(model_registry=registry_dir))


def _break(registry_dir: str, version: str, sklearn_version: str = "0.0.1") -> None:
    path = Path(registry_dir) / "pollution_type" / version / "metadata.json"
    metadata = json.loads(path.read_text(encoding="utf-8"))
    metadata["sklearn_version"] = sklearn_version
    path.write_text(json.dumps(metadata), encoding="utf-8")


def _no_training(*args, **kwargs):
    raise AssertionError("a promoted model must never be replaced by a silent retrain")


# ------------------------------------------------------------------ promote, rollback, pipeline
def test_the_pipeline_runs_what_production_names_and_rollback_is_one_command(
        reg, monkeypatch, capsys):
    registry_dir, a, b = reg
    registry.promote(a, registry_dir, command="test promote a")
    assert _production_run(monkeypatch, registry_dir) == a
    assert cli.main(["models", "promote", b, "--registry", registry_dir]) == 0
    assert f"production: {a} -> {b}" in capsys.readouterr().out
    assert _production_run(monkeypatch, registry_dir) == b
    assert registry.load_model("production", registry_dir).version == b

    assert cli.main(["models", "rollback", "--registry", registry_dir]) == 0
    assert f"rolled back: {b} -> {a}" in capsys.readouterr().out
    assert _production_run(monkeypatch, registry_dir) == a
    history = registry.read_aliases(registry_dir)["history"]
    assert [(e["action"], e["version"], e["previous"]) for e in history] == [
        ("promote", a, None), ("promote", b, a), ("rollback", a, b)]
    assert history[0]["command"] == "test promote a"
    assert history[1]["command"].startswith("envleads ")  # the command line, as run
    assert all(e["at"] and "@" in e["by"] for e in history)


def test_latest_still_means_the_newest_folder(reg, monkeypatch):
    registry_dir, a, b = reg
    registry.promote(a, registry_dir)
    newest = registry.list_versions(registry_dir)[-1]
    from envleads.pipelines.options import prepare_worker_environment
    from envleads.pipelines.options import StageSettings

    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "test-registry-key")
    assert prepare_worker_environment(StageSettings(model_version="latest",
                                                    model_registry=registry_dir)) == newest


def test_rollback_goes_back_one_promotion_at_a_time_and_stops_at_the_first(reg):
    registry_dir, a, b = reg
    registry.promote(a, registry_dir)
    registry.promote(b, registry_dir)
    assert registry.promote(b, registry_dir) is None  # already production: no history entry
    assert registry.rollback(registry_dir)["version"] == a
    with pytest.raises(registry.UnusableModelError, match="no earlier promoted"):
        registry.rollback(registry_dir)
    assert registry.production_version(registry_dir) == a
    assert len(registry.read_aliases(registry_dir)["history"]) == 3


def test_promote_refuses_a_model_this_installation_cannot_load(reg, capsys):
    registry_dir, a, b = reg
    registry.promote(a, registry_dir)
    _break(registry_dir, b)
    assert cli.main(["models", "promote", b, "--registry", registry_dir]) == 2
    assert "scikit-learn==0.0.1" in capsys.readouterr().err
    assert registry.production_version(registry_dir) == a
    assert cli.main(["models", "promote", "pt-nothing", "--registry", registry_dir]) == 2


def test_the_enriched_output_carries_the_promoted_version(reg, monkeypatch, tmp_path):
    from envleads.pipelines.batch import run_batch

    registry_dir, a, b = reg
    registry.promote(b, registry_dir)
    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "test-registry-key")
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"complaint_id": f"c{n}", "text": text,
                                          "received_at": "2026-04-02T10:00:00+08:00"},
                                         ensure_ascii=False) + "\n"
                              for n, (_, text, _) in enumerate(UNSEEN)), encoding="utf-8")
    output = tmp_path / "out.jsonl"
    run_batch(str(source), str(output), str(tmp_path / "leads.jsonl"),
              beam_args=["--runner=FnApiRunner", f"--model_registry={registry_dir}"])
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(UNSEEN)
    assert {row["model_version"] for row in rows} == {b}


# ------------------------------------------------------------------ no silent retrain
def test_an_unloadable_production_model_fails_loudly_with_the_fix(reg, monkeypatch):
    registry_dir, a, b = reg
    registry.promote(a, registry_dir)
    _break(registry_dir, a, "0.0.1")
    monkeypatch.setattr(registry, "train_and_register", _no_training)
    with pytest.raises(registry.UnusableModelError) as error:
        registry.ensure_default_model(registry_dir)
    message = str(error.value)
    assert "envleads train" in message and "envleads models promote" in message
    assert "scikit-learn==0.0.1" in message
    with pytest.raises(registry.UnusableModelError):
        _production_run(monkeypatch, registry_dir)
    assert registry.production_version(registry_dir) == a
    assert registry.list_versions(registry_dir) == sorted([a, b])


def test_a_missing_production_folder_fails_loudly_with_the_fix(reg, monkeypatch):
    registry_dir, a, b = reg
    registry.promote(a, registry_dir)
    shutil.rmtree(Path(registry_dir) / "pollution_type" / a)
    monkeypatch.setattr(registry, "train_and_register", _no_training)
    with pytest.raises(registry.UnusableModelError, match="envleads models promote"):
        registry.ensure_default_model(registry_dir)
    with pytest.raises(registry.ModelNotFoundError, match="envleads models promote"):
        registry.load_model("production", registry_dir)


def test_a_registry_from_before_aliases_adopts_its_newest_loadable_version(reg, monkeypatch):
    registry_dir, a, b = reg
    monkeypatch.setattr(registry, "train_and_register", _no_training)
    newest = registry.list_versions(registry_dir)[-1]
    assert registry.ensure_default_model(registry_dir) == newest
    [entry] = registry.read_aliases(registry_dir)["history"]
    assert entry["version"] == newest and "adopted" in entry["note"]


def test_a_fresh_registry_trains_the_default_model_and_promotes_it(tmp_path, monkeypatch,
                                                                   no_shared):
    registry_dir = str(tmp_path / "registry")
    monkeypatch.setattr(registry, "default_training_records", lambda: _rows(ROWS))
    version = registry.ensure_default_model(registry_dir)
    assert registry.list_versions(registry_dir) == [version]
    assert registry.production_version(registry_dir) == version
    [entry] = registry.read_aliases(registry_dir)["history"]
    assert entry["action"] == "promote" and "empty registry" in entry["note"]
    metadata = registry.read_metadata(version, registry_dir)
    assert "ensure_default_model" in metadata["command"]
    assert [f["path"] for f in metadata["data_files"]] == pollution.training_files()
    assert registry.ensure_default_model(registry_dir) == version  # no second training


def test_train_promotes_only_into_a_registry_without_production(reg):
    registry_dir, a, b = reg
    message = registry_stages.after_train(a, registry_dir, command="envleads train")
    assert "promoted" in message and registry.production_version(registry_dir) == a
    message = registry_stages.after_train(b, registry_dir, command="envleads train")
    assert message.startswith("not promoted")
    assert f"envleads models compare {a} {b}" in message
    assert registry.production_version(registry_dir) == a


# ------------------------------------------------------------------ metadata and training rows
def test_metadata_names_every_data_file_with_its_sha256_and_the_training_rows(trained):
    root, (a, b) = trained
    metadata = registry.read_metadata(b, str(root / "registry"))
    [data_file] = metadata["data_files"]
    expected = hashlib.sha256((root / "b.jsonl").read_bytes()).hexdigest()
    assert data_file["path"] == str(root / "b.jsonl") and data_file["sha256"] == expected
    index = json.loads((root / "registry" / "pollution_type" / b / "training_rows.json")
                       .read_text(encoding="utf-8"))
    assert index["ids"] == sorted(i for i, _, _ in ROWS + MORE)
    assert len(index["text_keys"]) == len(ROWS + MORE)


def test_evaluate_on_training_rows_warns_that_the_figure_is_not_a_result(reg, tmp_path,
                                                                          capsys):
    registry_dir, a, b = reg
    # Two training rows as exported elsewhere (other ids, other line breaks) and one unseen row.
    rows = [dict(r, id=f"x{n}", text=r["text"][:6] + "\n" + r["text"][6:])
            for n, r in enumerate(_rows(ROWS[:2]))] + _rows(UNSEEN[:1])
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    assert cli.main(["evaluate", "--model", a, "--registry", registry_dir,
                     "--gold", str(gold)]) == 0
    err = capsys.readouterr().err
    assert "NOT A RESULT" in err and "2 of 3 rows" in err and "TRAINING ROWS of " + a in err

    _write(gold, UNSEEN)
    assert cli.main(["evaluate", "--model", a, "--registry", registry_dir,
                     "--gold", str(gold)]) == 0
    assert "NOT A RESULT" not in capsys.readouterr().err


def test_training_overlap_counts_ids_and_texts(reg):
    registry_dir, a, b = reg
    rows = _rows(ROWS[:1]) + [dict(_rows(MORE[:1])[0], id="t-01")] + _rows(UNSEEN[:1])
    assert registry.training_overlap(a, rows, registry_dir) == {
        "rows": 3, "overlap": 2, "by_id": 2, "by_text": 1}


@pytest.mark.skipif(not protocol.real_parts(pollution.shared_data_dir())[1],
                    reason="needs the shared labelled data (../shared/data)")
def test_training_scores_the_new_model_on_the_locked_part(tmp_path):
    version = registry.train_and_register(_rows(ROWS), registry_dir=str(tmp_path),
                                          command="test", threshold_folds=0)
    stored = registry.read_metadata(version, str(tmp_path))["locked_metrics"]
    locked = protocol.real_parts(pollution.shared_data_dir())[1]
    assert stored["n"] == len(locked) and stored["training_overlap"] == 0
    assert set(stored["per_label"]) == set(pollution.LABELS)
    assert 0.0 <= stored["micro_f1"] <= 1.0
    assert stored["split"]["locked_percent"] == protocol.LOCKED_PERCENT


# ------------------------------------------------------------------ compare and list
def _prediction(labels):
    return TypePrediction(labels=list(labels), primary=labels[0] if labels else None,
                          confidence=0.9, needs_review=False, model_version="v")


def test_paired_bootstrap_separates_a_real_difference_from_noise():
    gold = [{"id": str(n), "text": "x", "labels": ["air"] if n % 2 else ["water"]}
            for n in range(100)]
    right = [_prediction(r["labels"]) for r in gold]
    empty = [_prediction([]) for _ in gold]
    worse = registry_stages.paired_bootstrap(gold, right, empty, resamples=200, seed=1)
    assert worse["micro F1"]["old"] == 1.0 and worse["micro F1"]["new"] == 0.0
    assert (worse["micro F1"]["low"], worse["micro F1"]["high"]) == (-1.0, -1.0)
    assert worse["micro F1"]["beyond_noise"] and worse["env/not accuracy"]["diff"] == -1.0
    one_off = right[:-1] + [_prediction(["water"])]  # one row of 100 wrong: noise
    close = registry_stages.paired_bootstrap(gold, right, one_off, resamples=200, seed=1)
    assert close["micro F1"]["diff"] == pytest.approx(-0.01)
    assert close["micro F1"]["low"] < 0 <= close["micro F1"]["high"]
    assert not close["micro F1"]["beyond_noise"]
    assert close["noise F1"]["support"] == 0


def test_compare_prints_a_per_label_table_with_intervals(reg, tmp_path, capsys, no_shared):
    registry_dir, a, b = reg
    gold = _write(tmp_path / "gold.jsonl", UNSEEN + ROWS[:8])
    out = tmp_path / "compare.json"
    assert cli.main(["models", "compare", a, b, "--registry", registry_dir, "--gold", str(gold),
                     "--resamples", "50", "--json-out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "locked part skipped" in printed
    assert "95% interval" in printed
    for label in pollution.LABELS:
        assert f"  {label} F1 " in printed
    assert "micro F1" in printed and "env/not accuracy" in printed
    assert "NOT A RESULT" in printed  # ROWS[:8] are training rows of both
    [result] = json.loads(out.read_text(encoding="utf-8"))["datasets"]
    assert result["n"] == len(UNSEEN) + 8 and result["resamples"] == 50
    assert result["overlap"]["old"]["overlap"] == 8
    assert all(m["low"] <= m["high"] for m in result["metrics"].values())


def test_compare_a_model_with_itself_finds_no_difference(reg, tmp_path, capsys, no_shared):
    registry_dir, a, b = reg
    gold = _write(tmp_path / "gold.jsonl", UNSEEN)
    out = tmp_path / "same.json"
    assert cli.main(["models", "compare", a, a, "--registry", registry_dir, "--gold", str(gold),
                     "--resamples", "20", "--json-out", str(out)]) == 0
    [result] = json.loads(out.read_text(encoding="utf-8"))["datasets"]
    assert result["disagreement"] == 0.0
    assert {(m["diff"], m["low"], m["high"]) for m in result["metrics"].values()} == {(0, 0, 0)}
    assert "NEW better" not in capsys.readouterr().out


def test_compare_with_nothing_to_compare_on_fails_in_one_line(reg, capsys, no_shared):
    registry_dir, a, b = reg
    assert cli.main(["models", "compare", a, b, "--registry", registry_dir]) == 2
    assert "nothing to compare on" in capsys.readouterr().err


def test_list_marks_production_and_unloadable_versions(reg, capsys, tmp_path):
    registry_dir, a, b = reg
    registry.promote(b, registry_dir)
    _break(registry_dir, a, "0.0.1")
    out = tmp_path / "list.json"
    assert cli.main(["models", "list", "--registry", registry_dir, "--json-out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    [line_a] = [line for line in lines if line[2:].startswith(a)]
    [line_b] = [line for line in lines if line[2:].startswith(b)]
    assert line_b.startswith("* ") and line_a.startswith("  ")
    assert "no: was trained with scikit-learn 0.0.1" in line_a and line_b.rstrip().endswith("yes")
    assert f"production: {b}" in lines
    listed = json.loads(out.read_text(encoding="utf-8"))
    assert [v["training_rows"] for v in listed["versions"] if v["version"] == b] == [
        len(ROWS + MORE)]
    assert listed["aliases"] == {"production": b}
