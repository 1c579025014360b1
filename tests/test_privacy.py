"""Identity never survives decoding: pseudonyms and masking."""
from envleads.privacy import (ID_MASK, NAME_MASK, PHONE_MASK, MissingPseudonymKey, load_pseudonym_key,
                              mask_identity, reporter_key)

import pytest


def test_mobile_numbers_with_separators_are_masked():
    text = "请回电138 1234 5678或者139-8765-4321，谢谢"
    assert mask_identity(text) == f"请回电{PHONE_MASK}或者{PHONE_MASK}，谢谢"


def test_landline_and_id_number_are_masked():
    text = "座机0571-87654321，身份证号33010619850312001X"
    assert mask_identity(text) == f"座机{PHONE_MASK}，身份证号{ID_MASK}"


def test_self_introduced_name_and_reporter_name_are_masked():
    text = "我叫刘建国，住在厂子旁边。刘建国再次反映"
    masked = mask_identity(text, {"name": "刘建国"})
    assert "刘建国" not in masked
    assert masked.startswith(f"我叫{NAME_MASK}")


def test_permit_numbers_inside_codes_are_not_masked():
    text = "排污许可证编号91330106MA2XXXXX1234567890"
    assert mask_identity(text) == text


def test_reporter_key_is_stable_per_key_and_unlinkable_across_keys():
    reporter = {"name": "王芳", "phone": "138-0000-1111", "id_number": None}
    same_phone_other_format = {"phone": "13800001111"}
    assert reporter_key(reporter, b"k1") == reporter_key(same_phone_other_format, b"k1")
    assert reporter_key(reporter, b"k1") != reporter_key(reporter, b"k2")
    assert "13800001111" not in reporter_key(reporter, b"k1")
    assert reporter_key(None, b"k1") is None


def test_production_mode_requires_a_key_of_32_bytes():
    with pytest.raises(MissingPseudonymKey):
        load_pseudonym_key(production=True, environ={})
    with pytest.raises(MissingPseudonymKey, match="3 bytes"):  # issue 26: a 1-byte key was accepted
        load_pseudonym_key(production=True, environ={"ENVLEADS_PSEUDONYM_KEY": "abc"})
    strong = "k" * 32
    assert load_pseudonym_key(production=True, environ={"ENVLEADS_PSEUDONYM_KEY": strong}) == strong.encode()
    assert load_pseudonym_key(production=False, environ={"ENVLEADS_PSEUDONYM_KEY": "abc"}) == b"abc"
    assert len(load_pseudonym_key(production=False, environ={})) == 32


@pytest.mark.parametrize("production", [False, True])
def test_a_named_key_file_that_is_empty_or_missing_is_an_error_never_a_random_key(tmp_path, production):
    """Issue 26: an empty key file gave each worker its own random key (one reporter, two reporter
    keys); a missing one ended in a traceback from the worker pool. The message names the file,
    never a key."""
    empty = tmp_path / "empty.key"
    empty.write_bytes(b"  \n")
    for path, words in ((empty, "is empty"), (tmp_path / "absent.key", "cannot be read")):
        with pytest.raises(MissingPseudonymKey, match=words):
            load_pseudonym_key(production=production, environ={"ENVLEADS_PSEUDONYM_KEY_FILE": str(path)})


def test_the_batch_command_reports_an_unusable_key_in_one_line(tmp_path, capsys, monkeypatch):
    from envleads.cli import main

    source = tmp_path / "in.jsonl"
    source.write_text('{"complaint_id": "c1", "received_at": "2026-03-01T08:00:00+08:00", "text": "x"}\n',
                      encoding="utf-8")
    (tmp_path / "empty.key").write_bytes(b"")
    monkeypatch.delenv("ENVLEADS_PSEUDONYM_KEY", raising=False)
    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY_FILE", str(tmp_path / "empty.key"))
    assert main(["batch", "--input", str(source), "--output", str(tmp_path / "out.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "is empty" in err and "Traceback" not in err


@pytest.mark.parametrize("text, expected", [
    ("本人马建国，手机13800001111", "本人[姓名]，手机[电话]"),
    ("我叫司马文静，电话", "我叫[姓名]，电话"),
    ("周立新来电称，工地夜间施工", "[姓名]来电称，工地夜间施工"),
    ("舉報人：潘小洋\n電話：", "舉報人：[姓名]\n電話："),
    ("本人韩红（身份证号", "本人[姓名]（身份证号"),
])
def test_names_in_common_self_introductions_are_masked(text, expected):
    assert mask_identity(text) == expected


@pytest.mark.parametrize("text", ["市民来电反映：本人在黄陂区", "我是小区居民，电话打不通", "附近居民来电称噪音大"])
def test_role_words_are_not_taken_for_names(text):
    assert mask_identity(text) == text
