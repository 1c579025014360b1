"""Labelled files as first-class data (issue 22, item 7): ``envleads labels import|queue`` and the
join of ``id`` + ``labels`` rows with the shared texts for ``--extra``.

Every text here is made up for these tests; the exports are written by hand in the shapes Label
Studio's JSON and JSON-MIN exports have. The queue test trains one tiny model (no threshold
tuning: about a second) into a temporary registry.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from envleads import cli
from envleads.config import ConfigError
from envleads.models import labelling, pollution, protocol, registry
from envleads.records import TypePrediction

SECRET = "张三家楼下的烧烤店每天晚上油烟熏人"  # a made-up complainant text that must never be copied
NONE_SECRET = "请问社保卡丢了在哪里补办手续"


def _choices(*names, from_name="pollution"):
    return {"type": "choices", "from_name": from_name, "to_name": "text",
            "value": {"choices": list(names)}}


def _task(message_id, annotations, text=SECRET):
    return {"id": 7, "data": {"id": message_id, "text": text}, "annotations": annotations,
            "predictions": []}


def _annotation(*results, at="2026-12-01T10:00:00Z", cancelled=False):
    return {"id": 1, "result": list(results), "was_cancelled": cancelled, "created_at": at,
            "updated_at": at}


def _write_json(path: Path, document) -> str:
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return str(path)


def _read_jsonl(path) -> list:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------------ import
def test_label_studio_json_export_takes_the_latest_non_cancelled_annotation(tmp_path):
    tasks = [
        _task("m1", [_annotation(_choices("噪声"), at="2026-12-01T10:00:00Z"),
                     _annotation(_choices("大气", "噪声"), at="2026-12-02T10:00:00Z"),
                     _annotation(_choices("水"), at="2026-12-03T10:00:00Z", cancelled=True)]),
        _task("m2", [_annotation(_choices("非环境"))], text=NONE_SECRET),
        _task("m3", [_annotation(_choices("air", "不是环境问题"))]),
        _task("m4", [_annotation(_choices("Solid Waste", "soil"))]),
        _task("m5", []),
        _task("m6", [_annotation(_choices("噪声"), cancelled=True)]),
        _task("m7", [_annotation(_choices("光污染"))]),
        _task("m8", [_annotation({"type": "textarea", "from_name": "note",
                                  "value": {"text": ["x"]}})]),
        {"id": 9, "data": {"text": SECRET}, "annotations": [_annotation(_choices("水"))]},
    ]
    result = labelling.import_labels(_write_json(tmp_path / "export.json", tasks))
    assert result.format == "label-studio"
    assert result.rows == [{"id": "m1", "labels": ["air", "noise"]}, {"id": "m2", "labels": []},
                           {"id": "m3", "labels": []},
                           {"id": "m4", "labels": ["solid_waste", "soil"]}]
    assert [(s.where, s.id, s.reason) for s in result.skipped] == [
        ("task 5", "m5", "no_annotation"), ("task 6", "m6", "cancelled"),
        ("task 7", "m7", "unknown_label"), ("task 8", "m8", "no_choices"),
        ("task 9", None, "no_id")]
    assert result.skipped[2].detail == "'光污染'"


def test_label_studio_id_key_and_from_name(tmp_path):
    tasks = [{"data": {"message_id": "m1", "id": 99, "text": SECRET},
              "annotations": [_annotation(_choices("water"),
                                          _choices("noise", from_name="other"))]}]
    path = _write_json(tmp_path / "export.json", tasks)
    result = labelling.import_labels(path, id_key="message_id", from_name="pollution")
    assert result.rows == [{"id": "m1", "labels": ["water"]}]
    assert labelling.import_labels(path, id_key="message_id").rows == [
        {"id": "m1", "labels": ["water", "noise"]}]


def test_json_min_export(tmp_path):
    records = [
        # JSON-MIN writes the task number over data.id; the queue's tasks repeat it as message_id
        {"id": 1, "message_id": "m1", "text": SECRET, "pollution": "噪音", "annotator": 1,
         "annotation_id": 1, "created_at": "2026-12-01T10:00:00Z",
         "updated_at": "2026-12-01T10:00:00Z", "lead_time": 3.2},
        {"id": 2, "message_id": "m2", "text": SECRET, "pollution": {"choices": ["大气", "水"]},
         "annotator": 1, "annotation_id": 2, "updated_at": "2026-12-01T10:00:00Z"},
        # a second annotator's later annotation of m1 replaces the first
        {"id": 1, "message_id": "m1", "text": SECRET, "pollution": {"choices": ["air", "noise"]},
         "annotator": 2, "annotation_id": 3, "updated_at": "2026-12-05T10:00:00Z"},
        {"id": 4, "message_id": "m4", "text": SECRET, "annotator": 1, "annotation_id": 4},
    ]
    path = _write_json(tmp_path / "min.json", records)
    result = labelling.import_labels(path, id_key="message_id")
    assert result.format == "json-min"
    assert result.rows == [{"id": "m1", "labels": ["air", "noise"]},
                           {"id": "m2", "labels": ["air", "water"]}]
    assert [(s.where, s.id, s.reason) for s in result.skipped] == [
        ("row 1", "m1", "superseded"), ("row 4", "m4", "no_choices")]
    by_default = labelling.import_labels(path)  # id is the task number: refused, not imported
    assert by_default.rows == [] and by_default.reasons() == {"id_is_task_id": 4}


def test_csv_export_with_both_separators(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("\ufeffid,labels,text\n"
                    f"c1,大气;噪声,{SECRET}\n"
                    "c2,water|soil,\n"
                    "c3,none,\n"
                    "c4,,\n"
                    "c5,air;dust,\n"
                    ",air,\n"
                    'c7,"[""ecological""]",\n', encoding="utf-8")
    result = labelling.import_labels(str(path))
    assert result.format == "csv"
    assert result.rows == [{"id": "c1", "labels": ["air", "noise"]},
                           {"id": "c2", "labels": ["water", "soil"]},
                           {"id": "c3", "labels": []}, {"id": "c7", "labels": ["ecological"]}]
    assert [(s.where, s.id, s.reason, s.detail) for s in result.skipped] == [
        ("line 5", "c4", "no_choices", ""), ("line 6", "c5", "unknown_label", "'dust'"),
        ("line 7", None, "no_id", "empty id")]


def test_the_project_format_reads_back(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"id": "u1", "labels": ["noise", "air"]}\n{"id": "u2", "labels": []}\n',
                    encoding="utf-8")
    result = labelling.import_labels(str(path))
    assert result.format == "jsonl"
    assert result.rows == [{"id": "u1", "labels": ["noise", "air"]}, {"id": "u2", "labels": []}]


def test_aliases_map_chinese_names_and_the_file_is_validated(tmp_path):
    aliases = labelling.load_aliases()
    assert [aliases[labelling.normalise_name(n)] for n in
            ("大气", "水", "噪声", "固体废物", "土壤", "辐射", "生态", "其他", "solid-waste",
             " Not Environmental ")] == ["air", "water", "noise", "solid_waste", "soil",
                                         "radiation", "ecological", "other", "solid_waste", None]
    assert labelling.map_choices(["噪声", "noise", "大气"], aliases) == (["noise", "air"], "", "")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": "t", "none": [], "labels": {"smell": ["臭"]}}),
                   encoding="utf-8")
    with pytest.raises(ConfigError, match="labels.smell"):
        labelling.load_aliases(str(bad))
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps({"version": "t", "none": ["无"], "labels": {"air": ["无"]}}),
                     encoding="utf-8")
    with pytest.raises(ConfigError, match="both"):
        labelling.load_aliases(str(twice))


def test_import_command_writes_ids_and_labels_only_and_never_prints_texts(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ENVLEADS_SHARED_DATA", str(tmp_path / "absent"))
    tasks = [_task("m1", [_annotation(_choices("大气"))]),
             _task("m2", [_annotation(_choices(SECRET))]),  # a text pasted into a choice
             _task("m3", [_annotation(_choices("radiation"))], text=NONE_SECRET)]
    export = _write_json(tmp_path / "export.json", tasks)
    out = tmp_path / "imported.jsonl"
    assert cli.main(["labels", "import", export, "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert _read_jsonl(out) == [{"id": "m1", "labels": ["air"]},
                                {"id": "m3", "labels": ["radiation"]}]
    assert SECRET not in out.read_text(encoding="utf-8") + printed.out + printed.err
    assert NONE_SECRET not in out.read_text(encoding="utf-8")
    assert "skipped 1 rows: unknown_label 1" in printed.out
    assert "task 2: id m2: unknown_label (<a value of 17 characters>)" in printed.out


def test_import_command_refuses_an_export_with_nothing_usable(tmp_path, capsys):
    export = _write_json(tmp_path / "export.json", [_task("m1", [])])
    assert cli.main(["labels", "import", export, "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "no row could be imported" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


# ------------------------------------------------------------------------------ queue
class _FakeModel:
    """Fixed probabilities per message text, thresholds 0.5: the queue's arithmetic by hand."""

    version = "pt-fake"
    thresholds = np.full(8, 0.5)

    def __init__(self, table):
        self.table = table

    def predict_proba(self, docs):
        return np.array([self.table[doc.text if hasattr(doc, "text") else doc[1]]
                         for doc in docs])

    def predict(self, docs):
        return [TypePrediction(labels=[], primary=None, confidence=round(float(p.max()), 4),
                               needs_review=False, model_version=self.version)
                for p in self.predict_proba(docs)]


def test_queue_margin_is_the_probability_closest_to_a_threshold():
    table = {"甲": [0.9, 0.05] + [0.0] * 6, "乙": [0.58, 0.45] + [0.0] * 6}
    messages = [{"id": "a", "text": "甲"}, {"id": "b", "text": "乙"}]
    scored = labelling.score_messages(_FakeModel(table), messages)
    assert [(row["id"], row["margin"], row["confidence"]) for row in scored] == [
        ("a", 0.4, 0.9), ("b", 0.05, 0.58)]


def test_queue_ranks_least_sure_first():
    scored = [{"id": "a", "confidence": 0.91, "margin": 0.30},
              {"id": "b", "confidence": 0.42, "margin": 0.20},
              {"id": "c", "confidence": 0.42, "margin": 0.02},
              {"id": "d", "confidence": 0.60, "margin": 0.01}]
    assert [r["id"] for r in labelling.rank_queue(scored, 3)] == ["c", "b", "d"]
    assert [r["id"] for r in labelling.rank_queue(scored, 2, by="margin")] == ["d", "c"]
    assert [r["rank"] for r in labelling.rank_queue(scored, 4)] == [1, 2, 3, 4]


TRAIN = [
    ("t-01", "化工厂烟囱天天冒黑烟，整个小区都是刺鼻的气味。", ["air"]),
    ("t-02", "烧烤摊油烟直排，窗户都不敢开。", ["air"]),
    ("t-03", "工地扬尘太大，车上落满了灰。", ["air"]),
    ("t-04", "造纸厂把污水直接排进河里，河水发黑发臭。", ["water"]),
    ("t-05", "养殖场的粪水流进水塘，鱼都死了。", ["water"]),
    ("t-06", "工地晚上打桩到凌晨，吵得睡不着。", ["noise"]),
    ("t-07", "楼下酒吧音响声音太大，半夜还在响。", ["noise"]),
    ("t-08", "有人把建筑垃圾倒在村口的空地上。", ["solid_waste"]),
    ("t-09", "垃圾站的垃圾好几天没人清运，堆成了山。", ["solid_waste"]),
    ("t-10", "请问社保卡丢了怎么补办？", []),
    ("t-11", "小区停车位怎么申请，物业说要排队。", []),
    ("t-12", "孩子入学的户口问题想咨询一下。", []),
]
MESSAGES = [
    ("q-1", "化工厂烟囱天天冒黑烟，整个小区都是刺鼻的气味。"),
    ("q-2", "公交车改线以后上班很不方便。"),
    ("q-3", "河边工地晚上打桩，污水也流进河里，垃圾堆在路边。"),
    ("q-4", "楼下酒吧音响声音太大，半夜还在响。"),
    ("q-5", "想问一下公积金怎么提取。"),
]


@pytest.fixture(scope="module")
def tiny_registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("labels_queue")
    rows = [{"id": i, "title": "", "text": t, "labels": l, "synthetic": True} for i, t, l in TRAIN]
    version = registry.train_and_register(rows, registry_dir=str(root / "registry"),
                                          command="test", locked_part=False, threshold_folds=0)
    registry.promote(version, str(root / "registry"), command="test")
    return str(root / "registry"), version


def test_queue_command_writes_the_least_confident_unlabelled_messages(
        tiny_registry, tmp_path, monkeypatch, capsys):
    registry_dir, version = tiny_registry
    monkeypatch.setenv("ENVLEADS_SHARED_DATA", str(tmp_path / "absent"))
    source = tmp_path / "messages.jsonl"
    source.write_text("".join(json.dumps({"id": i, "title": "", "text": t}, ensure_ascii=False)
                              + "\n" for i, t in MESSAGES), encoding="utf-8")
    done = tmp_path / "done.jsonl"
    done.write_text('{"id": "q-5", "labels": []}\n', encoding="utf-8")
    out, tasks = tmp_path / "queue.jsonl", tmp_path / "outside" / "tasks.json"
    tasks.parent.mkdir()
    assert cli.main(["labels", "queue", "--registry", registry_dir, "--source", str(source),
                     "--labelled", str(done), "--n", "3", "--out", str(out),
                     "--label-studio", str(tasks)]) == 0
    printed = capsys.readouterr()
    queue = _read_jsonl(out)
    model = registry.load_model("production", registry_dir)
    expected = sorted(((p.confidence, i) for (i, _), p in
                       zip(MESSAGES[:4], model.predict([("", t) for _, t in MESSAGES[:4]]))))
    assert [row["id"] for row in queue] == [i for _, i in expected[:3]]
    assert [row["confidence"] for row in queue] == sorted(row["confidence"] for row in queue)
    assert "q-5" not in {row["id"] for row in queue}  # labelled already
    assert set(queue[0]) == {"id", "guess", "confidence", "margin", "needs_review",
                             "model_version", "rank"}
    assert queue[0]["model_version"] == version
    assert "3 of 4 unlabelled messages" in printed.out and "never commit" in printed.err
    assert not any(text in out.read_text(encoding="utf-8") for _, text in MESSAGES)
    studio = json.loads(tasks.read_text(encoding="utf-8"))
    texts = dict(MESSAGES)
    assert [t["data"]["text"] for t in studio] == [texts[row["id"]] for row in queue]
    assert studio[0]["data"]["message_id"] == queue[0]["id"]


def test_queue_refuses_label_studio_tasks_inside_the_repository(tiny_registry, tmp_path, capsys):
    registry_dir, _ = tiny_registry
    inside = Path(labelling._REPO_DIR) / "tasks.json"
    assert cli.main(["labels", "queue", "--registry", registry_dir, "--label-studio",
                     str(inside), "--out", str(tmp_path / "q.jsonl")]) == 2
    assert "inside the repository" in capsys.readouterr().err
    assert not inside.exists()


# ------------------------------------------------------------------------------ --extra join
@pytest.fixture
def shared(tmp_path, monkeypatch):
    """A made-up shared folder: two unlabelled messages and one labelled development row."""
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "unlabelled_real.jsonl").write_text(
        json.dumps({"id": "s1", "title": "油烟", "text": SECRET}, ensure_ascii=False) + "\n"
        + json.dumps({"id": "s2", "title": "", "text": NONE_SECRET}, ensure_ascii=False) + "\n",
        encoding="utf-8")
    (folder / "pollution_dev.jsonl").write_text(
        json.dumps({"id": "d1", "title": "", "text": "河里有死鱼", "labels": ["water"]},
                   ensure_ascii=False) + "\n", encoding="utf-8")
    monkeypatch.setenv("ENVLEADS_SHARED_DATA", str(folder))
    return str(folder)


def test_id_and_labels_rows_are_joined_with_the_shared_texts(shared, tmp_path):
    path = tmp_path / "imported.jsonl"
    path.write_text('{"id": "s1", "labels": ["air"]}\n{"id": "d1", "labels": ["water", "air"]}\n'
                    '{"id": "x", "title": "", "text": "自带文本", "labels": []}\n', encoding="utf-8")
    rows = protocol.read_labelled(str(path), shared)
    assert [(r["id"], r["text"], r["labels"]) for r in rows] == [
        ("s1", SECRET, ["air"]), ("d1", "河里有死鱼", ["water", "air"]), ("x", "自带文本", [])]
    assert rows[0]["title"] == "油烟"


def test_rows_that_cannot_be_joined_are_an_error_with_a_count(shared, tmp_path):
    path = tmp_path / "imported.jsonl"
    path.write_text('{"id": "s1", "labels": ["air"]}\n{"id": "nope", "labels": []}\n'
                    '{"id": "gone", "labels": ["noise"]}\n', encoding="utf-8")
    with pytest.raises(protocol.LabelledDataError, match="2 of 3 rows"):
        protocol.read_labelled(str(path), shared)
    with pytest.raises(protocol.LabelledDataError, match="no shared data folder"):
        protocol.read_labelled(str(path), None)


def test_train_and_cross_validation_read_extra_files_through_the_join(shared, tmp_path,
                                                                     monkeypatch):
    path = tmp_path / "imported.jsonl"
    path.write_text('{"id": "s2", "labels": []}\n{"id": "s1", "labels": ["air", "noise"]}\n',
                    encoding="utf-8")
    seen = {}

    def fake_train(records, **kwargs):
        seen["train"] = records
        raise SystemExit(0)

    def fake_cv(records, extra_train=None, **kwargs):
        seen["cv"] = extra_train
        raise SystemExit(0)

    monkeypatch.setattr(registry, "train_and_register", fake_train)
    monkeypatch.setattr(pollution, "cross_validate", fake_cv)
    with pytest.raises(SystemExit):
        cli.main(["train", "--extra", str(path), "--no-include-shared",
                  "--out", str(tmp_path / "reg")])
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--gold", str(path), "--cv", "2", "--extra", str(path)])
    for rows in (seen["train"], seen["cv"]):
        joined = [(r["id"], r["text"], r["labels"]) for r in rows if r["id"] in ("s1", "s2")]
        assert joined == [("s2", NONE_SECRET, []), ("s1", SECRET, ["air", "noise"])]


def test_train_reports_unjoinable_rows_in_one_line(shared, tmp_path, capsys):
    path = tmp_path / "imported.jsonl"
    path.write_text('{"id": "nope", "labels": ["air"]}\n', encoding="utf-8")
    assert cli.main(["train", "--extra", str(path), "--out", str(tmp_path / "reg")]) == 2
    assert "1 of 1 rows have id + labels but no text" in capsys.readouterr().err


def test_the_protocol_loader_uses_the_same_join(shared, tmp_path, monkeypatch):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "real_labels.a.jsonl").write_text(
        '{"id": "s2", "labels": []}\n{"id": "s1", "labels": ["air"]}\n', encoding="utf-8")
    monkeypatch.setattr(protocol, "LABELS_DIR", str(labels))
    records = protocol.real_labelled_records(shared)
    assert [(r["id"], r["text"], r["labels"], r["origin"]) for r in records] == [
        ("d1", "河里有死鱼", ["water"], "pollution_dev"), ("s1", SECRET, ["air"], "real_labels"),
        ("s2", NONE_SECRET, [], "real_labels")]  # in the shared file's order
    (labels / "real_labels.b.jsonl").write_text('{"id": "lost", "labels": []}\n',
                                                encoding="utf-8")
    with pytest.raises(protocol.LabelledDataError, match="1 of 3 rows"):
        protocol.real_labelled_records(shared)


def test_project_labels_join_with_the_real_shared_texts(monkeypatch):
    monkeypatch.delenv("ENVLEADS_SHARED_DATA", raising=False)
    shared_dir = pollution.shared_data_dir()
    if not shared_dir or not Path(shared_dir, "unlabelled_real.jsonl").exists():
        pytest.skip("no shared data (../shared/data) beside this checkout")
    first = json.loads(Path(protocol.project_label_files()[0]).read_text(
        encoding="utf-8").splitlines()[0])
    joined = protocol.join_texts([first], shared_dir)[0]
    with open(Path(shared_dir, "unlabelled_real.jsonl"), encoding="utf-8") as handle:
        source = next(json.loads(line) for line in handle if f'"{first["id"]}"' in line)
    assert joined["text"] == source["text"] and joined["labels"] == first["labels"]
