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


def test_production_mode_requires_a_key():
    with pytest.raises(MissingPseudonymKey):
        load_pseudonym_key(production=True, environ={})
    assert load_pseudonym_key(production=True, environ={"ENVLEADS_PSEUDONYM_KEY": "abc"}) == b"abc"
    assert len(load_pseudonym_key(production=False, environ={})) == 32


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
