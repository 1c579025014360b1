"""Normalisation and segmentation with the domain dictionary (envleads.text)."""
import json
import logging
import os
import random
import re
import unicodedata
from pathlib import Path

import jieba
import pytest

from envleads import text
from envleads.config import data_path

SHARED = Path(os.environ.get("ENVLEADS_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="module")
def tokenizer():
    return text.build_tokenizer()


def test_normalise_folds_full_width_and_whitespace():
    assert text.normalise("ＰＭ２．５　超标\n\t１２３") == "PM2.5 超标 123"


def test_normalise_converts_traditional_to_simplified():
    assert text.normalise("工廠廢水汙染河道，噪聲擾民") == "工厂废水污染河道,噪声扰民"


def test_normalise_maps_radical_lookalikes():
    # U+2ECB (C-simplified cart radical) and U+2ED4 (gate radical) imitate 车 and 门.
    assert text.normalise("渣土\u2ecb堵住小区大\u2ed4") == "渣土车堵住小区大门"


def test_normalise_maps_kangxi_radicals():
    # U+2F54 KANGXI RADICAL WATER is folded by NFKC.
    assert text.normalise("\u2f54污染") == "水污染"


def test_normalise_empty():
    assert text.normalise("") == ""
    assert text.normalise("   ") == ""


def test_segment_keeps_illegal_discharge_terms_whole(tokenizer):
    assert text.segment(tokenizer, "工厂在夜间通过暗管偷排废水到渗坑里") == [
        "工厂", "夜间", "暗管", "偷排", "废水", "到", "渗坑", "里"]


def test_segment_dictionary_compounds(tokenizer):
    assert text.segment(tokenizer, "黑臭水体旁边渣土车乱倒建筑垃圾") == [
        "黑臭水体", "旁边", "渣土车", "乱倒", "建筑垃圾"]
    assert text.segment(tokenizer, "车间未批先建，篡改在线监测数据") == [
        "车间", "未批先建", "篡改", "在线监测", "数据"]


def test_segment_normalises_traditional_and_full_width_first(tokenizer):
    assert text.segment(tokenizer, "工廠夜間偷排廢水，ＶＯＣｓ超標") == [
        "工厂", "夜间", "偷排", "废水", "VOCs", "超标"]


def test_segment_drops_punctuation_masks_and_stopwords(tokenizer):
    assert text.segment(tokenizer, "我们的电话：*****，这个扬尘！！") == ["电话", "扬尘"]


def test_plain_jieba_splits_what_the_dictionary_keeps():
    # Guards the premise of the Beam test below: without our dictionary the term is split.
    plain = jieba.Tokenizer()
    plain.initialize()
    assert plain.lcut("黑臭水体") != ["黑臭水体"]


def test_dictionary_version_and_entries():
    assert text.DICTIONARY_VERSION
    entries = []
    with open(data_path(text.DOMAIN_DICT_FILE), encoding="utf-8") as handle:
        for line in handle:
            if line.strip() and not line.startswith("#"):
                word, freq, tag = line.split()
                assert int(freq) > 0 and tag
                entries.append(word)
    assert len(entries) >= 400
    assert len(entries) == len(set(entries))
    for term in ("偷排", "暗管", "渗坑", "直排", "篡改", "异味", "扬尘", "油烟", "危废", "基站",
                 "变电站", "高压线", "土壤污染"):
        assert term in entries


def test_stopwords_loaded():
    stopwords = text.load_stopwords()
    assert "的" in stopwords and "我们" in stopwords
    assert "污染" not in stopwords and "不" not in stopwords


def test_build_tokenizer_does_not_touch_global_jieba():
    handlers_before = list(logging.getLogger("jieba").handlers)
    root_handlers_before = list(logging.getLogger().handlers)
    text.build_tokenizer()
    assert jieba.dt.FREQ.get("黑臭水体") is None  # the global dictionary never got our words
    assert logging.getLogger("jieba").handlers == handlers_before
    assert logging.getLogger().handlers == root_handlers_before


def test_dictionary_loaded_inside_beam_worker():
    beam = pytest.importorskip("apache_beam")
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    class _CutFn(beam.DoFn):
        def setup(self):
            self._tokenizer = text.build_tokenizer()

        def process(self, element):
            yield text.segment(self._tokenizer, element)

    with TestPipeline() as pipeline:
        tokens = (pipeline
                  | beam.Create(["河边的黑臭水体没人管"])
                  | beam.ParDo(_CutFn()))
        assert_that(tokens, equal_to([["河边", "黑臭水体", "没人管"]]))


# ------------------------------------------------------------------ segmentation engines
ENGINE_SENTENCES = [
    ("工厂在夜间通过暗管偷排废水到渗坑里", ["工厂", "夜间", "暗管", "偷排", "废水", "到", "渗坑", "里"]),
    ("联系电话0000-00000000，PM2.5超标30%", ["联系电话", "0000", "00000000", "PM2.5", "超标", "30%"]),
    ("网址是baidu.com，河边的黑臭水体没人管", ["网址", "baidu", "com", "河边", "黑臭水体", "没人管"]),
]


@pytest.mark.parametrize("engine", ["jieba", "rjieba"])
@pytest.mark.parametrize("sentence, expected", ENGINE_SENTENCES)
def test_both_engines_give_jieba_tokens(engine, sentence, expected):
    if engine == "rjieba":
        pytest.importorskip("rjieba")
    tokenizer = text.build_tokenizer(engine=engine)
    assert tokenizer.engine == engine
    assert text.segment(tokenizer, sentence) == expected


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError):
        text.build_tokenizer(engine="thulac")


@pytest.mark.parametrize("engine", ["rjieba", "jieba"])
def test_segmenter_words_are_lcut_without_punctuation_and_stop_words(engine):
    # words() caches per engine token; the reference is lcut filtered token by token, on text
    # that the re-split changes (PM2.5, a masked phone number, a web address), twice (cache hits).
    if engine == "rjieba":
        pytest.importorskip("rjieba")
    tokenizer = text.build_tokenizer(engine=engine)
    sentence = text.normalise("化工厂的PM2.5超标了，电话0000-0000，网站baidu.com，我们的河水发黑发臭！！")
    expected = [token for token in tokenizer.lcut(sentence, HMM=True) if text._keep(token)]
    assert "的" not in expected and "PM2.5" in expected
    assert tokenizer.words(sentence) == expected
    assert tokenizer.words(sentence) == expected


def test_segment_accepts_a_plain_jieba_tokenizer():
    plain = jieba.Tokenizer()
    plain.initialize()
    assert text.segment(plain, "噪音扰民！") == ["噪音", "扰民"]


def test_segment_for_model_normalises_and_splits_title_and_text(tokenizer):
    doc = text.segment_for_model(tokenizer, "工廠噪聲", "夜間施工，ＫＴＶ擾民。")
    assert isinstance(doc, text.SegmentedDoc)
    assert doc.title == "工厂噪声"
    assert doc.text == "夜间施工,KTV扰民。"
    assert doc.title_tokens == ["工厂", "噪声"]
    assert doc.tokens == ["夜间施工", "KTV", "扰民"]


def test_segment_for_model_handles_missing_title(tokenizer):
    doc = text.segment_for_model(tokenizer, None, "油烟")
    assert doc.title == "" and doc.title_tokens == [] and doc.tokens == ["油烟"]


def test_normalise_leaves_simplified_text_alone():
    assert text.normalise("显著的著作，乾隆年间") == "显著的著作,乾隆年间"


def test_segmenter_engine_names_a_version():
    name, _, version = text.segmenter_engine().partition(" ")
    assert name in ("rjieba", "jieba") and version


def _normalise_every_step(value: str) -> str:
    """The plain composition :func:`text.normalise` must equal (it skips the steps a text does
    not need)."""
    if not value:
        return ""
    value = unicodedata.normalize("NFKC", value)
    value = value.translate(text._lookalike_table())
    if not text._traditional_only().isdisjoint(value):
        value = text._t2s()(value)
    return re.sub(r"\s+", " ", value).strip()


def _mixed_strings(count: int, seed: int):
    """Random strings over the code points the shortcuts could get wrong: full-width forms,
    combining marks, Hangul jamo, look-alikes, Kangxi radicals, traditional characters, spaces."""
    rng = random.Random(seed)
    pools = ["，：；！？（）　ＰＭ２５", "\u0301\u0308\u0327\u3099\u309a", "\u1100\u1161\u11a8가",
             "".join(chr(c) for c in text._lookalike_table()), "\u2f54\u2ee2\u2f00\u2fa7",
             "".join(sorted(text._traditional_only()))[:300], "水污染废气排放噪声河道", " \n\t\u00a0é",
             "①㎡℃ﬁ\U0002f800\U0002f801"]
    for _ in range(count):
        yield "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 30)))


def test_normalise_equals_every_step_applied():
    samples = list(_mixed_strings(3000, seed=5))
    samples += ["工廠，⻋", "\u2ed1期", "ＡＢ\u0301", "，\u0301", "가\u11a8，"]
    for sample in samples:
        assert text.normalise.__wrapped__(sample) == _normalise_every_step(sample), repr(sample)


@pytest.mark.skipif(not (SHARED / "pollution_dev.jsonl").exists(), reason="shared data absent")
def test_normalise_equals_every_step_applied_on_shared_texts():
    with open(SHARED / "pollution_dev.jsonl", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    for row in rows:
        for value in (row.get("title") or "", row.get("text") or ""):
            assert text.normalise.__wrapped__(value) == _normalise_every_step(value)
