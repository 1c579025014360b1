"""Speed of identity masking (``envleads.privacy.mask_identity``) per field, and, with
``--compare-with``, equality of its outputs with another implementation of the same function.

    .venv/bin/python bench/bench_masking.py [--count 5000] [--seed 3] [--repeat 3] [--hostile-repeat 5]
    .venv/bin/python bench/bench_masking.py --compare-with /tmp/privacy_before.py [--derived 20000] [--fuzz 20000]

Every field the enrichment stage masks is one call: a complaint's title, text and address, each
with the complaint's reporter block. Three sets of fields are timed:

  * ``generated``: the non-empty fields of ``generate_events(count, seed)`` (malformed lines skipped);
  * ``corpus``: the rows of ``tests/data/identity/corpus.jsonl`` (adversarial identity variants);
  * ``hostile``: texts of 20,000 UTF-8 bytes (the decode stage's limit), each built against one
    rule: long digit runs with separators, many @ signs and spelled e-mails, repeated home phrases
    with and without units, long Chinese numeral runs, introductions, contact words, plates, many
    different characters NFKC changes; periodic ones and random (non-periodic) ones.

Each field is masked ``--repeat`` times (hostile texts ``--hostile-repeat`` times) and its fastest
call is its figure (the machine is shared; the fastest call is the least disturbed). Times are CPU
time of this thread (``time.thread_time_ns``), in µs per field: median, p99 and max per set, with
the mean and the sum; for the hostile texts, each text's ms, the worst and the median. (Nothing
is cached across fields but the last few reporter blocks, so repeated passes are not cheaper.)

``--compare-with FILE`` loads FILE as a module (a copy of ``privacy.py``, e.g. the version before
an optimisation) and times its ``mask_identity`` the same way, the two taking turns pass by pass
(paired figures at the same load). It then requires both to give the same output on every field
above, on the texts and titles of ``../shared/data/unlabelled_real.jsonl`` when present, on
variants of the corpus rows (glued together, cut at random places, given other rows' reporters,
with full-width and multi-character NFKC forms put in: ``--derived``) and on random soups of the
rules' words, numbers and separators (``--fuzz``). Mismatches are listed in the results and make
the exit status 1.

Writes bench/results/masking.json (``--output`` to write elsewhere).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.util
import json
import os
import platform
import random
import shlex
import statistics
import sys
import time
import unicodedata
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

RESULTS = ROOT / "bench" / "results" / "masking.json"
CORPUS = ROOT / "tests" / "data" / "identity" / "corpus.jsonl"
SHARED = Path(os.environ.get("ENVLEADS_SHARED_DATA", ROOT.parent / "shared" / "data"))
MAX_TEXT_BYTES = 20_000

Field = Tuple[str, Optional[dict]]  # text, reporter block
Mask = Callable[[str, Optional[dict]], str]


# ---- the fields ----------------------------------------------------------------------------------

def _reporter_block(value) -> Optional[dict]:
    if not isinstance(value, dict):
        return None
    return {key: value.get(key) if isinstance(value.get(key), str) else None for key in ("name", "phone", "id_number")}


def generated_fields(count: int, seed: int) -> List[Field]:
    from envleads.generator import generate_events

    fields: List[Field] = []
    for event in generate_events(count, seed=seed):
        try:
            document = json.loads(event.line)
        except (ValueError, UnicodeDecodeError):
            continue
        if not isinstance(document, dict):
            continue
        reporter = _reporter_block(document.get("reporter"))
        for name in ("title", "text", "address"):
            value = document.get(name)
            if isinstance(value, str) and value:
                fields.append((value, reporter))
    return fields


def corpus_rows() -> List[dict]:
    return [json.loads(line) for line in CORPUS.read_text("utf-8").splitlines() if line.strip()]


def corpus_fields() -> List[Field]:
    return [(row["text"], row.get("reporter")) for row in corpus_rows()]


def _fill(unit: str, budget: int = MAX_TEXT_BYTES) -> str:
    """``unit`` repeated up to ``budget`` UTF-8 bytes."""
    size = len(unit.encode("utf-8"))
    text = unit * (budget // size)
    rest = budget - len(text.encode("utf-8"))
    for char in unit:
        if len(char.encode("utf-8")) > rest:
            break
        text += char
        rest -= len(char.encode("utf-8"))
    return text


def _id_number(rng: random.Random) -> str:
    body = rng.choice(["110105", "320102", "440106", "510104"]) + f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}" \
        f"{rng.randint(1, 28):02d}" + "".join(rng.choice("0123456789") for _ in range(3))
    return body + rng.choice("0123456789X")


def _mobile(rng: random.Random) -> str:
    return "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))


def _spread(number: str, rng: random.Random, separators: List[str]) -> str:
    return "".join(digit + (rng.choice(separators) if rng.random() < 0.5 else "") for digit in number[:-1]) + number[-1]


def hostile_fields() -> List[Tuple[str, Field]]:
    """Texts of 20,000 UTF-8 bytes, each built against one rule; the ``random`` ones are not
    periodic (no two stretches alike), so that no cache of repeated work makes them cheap."""
    rng = random.Random(20)
    separators = [" ", "  ", ".", "-", "—", "——", "·", "－", "・", " - "]
    digits_random = "".join(rng.choice("0123456789") + rng.choice(separators) for _ in range(6000))
    numerals = "〇○零幺一二三四五六七八九壹贰叁肆伍陆柒捌玖"
    numeral_run = "".join(rng.choice(numerals) for _ in range(7000))
    reporter = {"name": "张三丰", "phone": "13912345678", "id_number": "11010519491231002X"}
    digit = lambda: rng.choice("0123456789")  # noqa: E731
    home_random = "".join(rng.choice([f"我家住{digit()}-{digit()}-{digit()}-{digit()} ", f"我住{digit()}-{digit()} ",
                                      f"住址{digit()}栋", f"我家住在{digit()}-{digit()}，{digit()}-{digit()}，"])
                          for _ in range(3000))
    ids_random = "".join(_spread(_id_number(rng), rng, separators[:4]) + rng.choice([" ", "，"]) for _ in range(1000))
    phones_random = "".join(_spread(_mobile(rng), rng, separators[:4]) + rng.choice([" ", "，", "电话"])
                            for _ in range(1500))
    numeral_phones = "".join(_mobile(rng).translate(str.maketrans("0123456789", "零一二三四五六七八九")) + "，"
                             for _ in range(700))
    # characters that NFKC changes, many different ones (one for one: ＡＢ, 豈; longer: ㎡, ½, ①)
    folds = [chr(code) for code in range(0x80, 0x10000) if not 0xD800 <= code < 0xE000
             and unicodedata.normalize("NFKC", chr(code)) != chr(code)]
    folds_single = [char for char in folds if len(unicodedata.normalize("NFKC", char)) == 1]
    folds_longer = [char for char in folds if len(unicodedata.normalize("NFKC", char)) > 1]
    rng.shuffle(folds_single)
    rng.shuffle(folds_longer)
    emails_random = "".join(f"{rng.choice('abcxyz')}{digit()}{rng.choice(['@', ' at ', '艾特'])}{digit()}"
                            f"{rng.choice(['.', '点', ' dot '])}{rng.choice(['cn', 'com'])} " for _ in range(2000))
    texts = [
        ("digits_spaced", _fill("1 "), reporter),
        ("digits_random_separators", _fill(digits_random), reporter),
        ("digits_dotted_groups", _fill("139.1234.5678."), reporter),
        ("digits_dashes", _fill("1—3—9—"), reporter),
        ("digits_plain_run", _fill("13912345678"), reporter),
        ("digits_x_run", _fill("1101051949123100X"), reporter),
        ("at_signs", _fill("@"), reporter),
        ("at_addresses", _fill("a.a@b.b@"), reporter),
        ("at_spelled", _fill("a at b dot c "), reporter),
        ("at_chinese", _fill("abc艾特qq点"), reporter),
        ("home_phrases", _fill("我家住"), reporter),
        ("home_units", _fill("我家住在3栋2单元501，"), reporter),
        ("home_dashed", _fill("我家住1-2-3-4 "), reporter),
        ("numerals_run", _fill(numeral_run), reporter),
        ("numerals_spaced", _fill("一 三 九 "), reporter),
        ("contact_words", _fill("电话微信QQ"), reporter),
        ("contact_numbers", _fill("电话1 2 3 4 5 "), reporter),
        ("plates", _fill("京A京A1"), reporter),
        ("name_intros", _fill("我叫我叫 张 "), reporter),
        ("reporter_name", _fill("张三丰 张 三 丰"), reporter),
        ("fullwidth_nfkc", _fill("１３９㎡½①－"), reporter),
        ("letters_digits", _fill("a1b2c3"), reporter),
        ("home_short_units", _fill("我住1-1 "), reporter),
        ("home_dense_units", _fill("住址3栋"), reporter),
        ("home_numerals", _fill("我家住一一"), reporter),
        ("home_commas", _fill("我家住在1-1-1，1-1，"), reporter),
        ("home_random", _fill(home_random), reporter),
        ("digits_dotted_single", _fill("1."), reporter),
        ("digits_tabbed", _fill("\t1"), reporter),
        ("country_codes", _fill("86 "), reporter),
        ("ids_random", _fill(ids_random), reporter),
        ("phones_random", _fill(phones_random), reporter),
        ("numeral_phones_random", _fill(numeral_phones), reporter),
        ("emails_short", _fill("1@1.cn "), reporter),
        ("emails_random", _fill(emails_random), reporter),
        ("name_intro_plain", _fill("姓名"), reporter),
        ("name_spaced", _fill("姓名：张 三 "), reporter),
        ("nfkc_distinct_single", _fill("".join(char + rng.choice("1 ，") for char in folds_single)), reporter),
        ("nfkc_distinct_longer", _fill("".join(char + rng.choice("1 ，") for char in folds_longer)), reporter),
    ]
    return [(name, (text, block)) for name, text, block in texts]


def real_fields() -> List[Field]:
    path = SHARED / "unlabelled_real.jsonl"
    if not path.is_file():
        return []
    fields: List[Field] = []
    for line in path.read_text("utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        for name in ("text", "title"):
            if isinstance(row.get(name), str) and row[name]:
                fields.append((row[name], _reporter_block(row.get("reporter"))))
    return fields


def derived_fields(count: int, seed: int = 5) -> List[Field]:
    """Variants of the corpus rows for the comparison: glued, cut, given other rows' reporters,
    with full-width and multi-character NFKC forms."""
    rows = corpus_rows()
    rng = random.Random(seed)
    odd = ["㎡", "½", "①", "ﬁ", "㈱", "Ⅻ", "０", "１", "３", "＠", "．", "－", "（", "）", "　", "\t", " ", "·", "—",
           "〇", "幺", "三", "九", "京", "Ａ", "栋", "我家住", "我叫", "电话", "微信", "qq", "艾特", "点", "com"]
    reporters = [row.get("reporter") for row in rows if row.get("reporter")]
    fields: List[Field] = []
    for _ in range(count):
        first, second = rng.choice(rows), rng.choice(rows)
        kind = rng.randrange(5)
        if kind == 0:
            text = first["text"] + rng.choice(["", "，", " ", "\n"]) + second["text"]
        elif kind == 1:
            start = rng.randrange(len(first["text"]))
            text = first["text"][start:start + rng.randrange(1, 60)]
        elif kind == 2:
            text = first["text"]
            for _ in range(rng.randrange(1, 6)):
                at = rng.randrange(len(text) + 1)
                text = text[:at] + rng.choice(odd) + text[at:]
        elif kind == 3:
            text = first["text"].translate({code: code + 0xFEE0 for code in range(0x21, 0x7F) if rng.random() < 0.5})
        else:
            text = first["text"]
        reporter = rng.choice([first.get("reporter"), second.get("reporter"), rng.choice(reporters), None])
        fields.append((text, reporter))
    return fields


FUZZ_TOKENS = [
    "我家住", "我家住在", "我住", "家住", "本人住", "住址", "家庭地址", "我的地址", "：", ":", "，", ",", "。", "；", " ", "  ", "\t",
    "\n", "　", "3栋", "2单元", "501室", "12号楼", "5层", "1号", "号线", "A座", "三栋", "十二层", "1-2-301", "3—2", "1 - 2",
    "旁边", "附近", "的", "楼下", "一带", "天天", "每天", "0", "1", "2", "3", "5", "8", "9", "13", "139", "1234", "5678",
    "1391234", "13912345678", "139 1234 5678", "139-1234-5678", "(010)", "010-", "62345678", "+86", "0086", "86",
    "(+86)", "(86)", "(0371)", "0371", "(", ")", "+", "---", "   ", "—— ", "6234 5678", "X1", "0", "00",
    "11010519491231002X", "110105194912310", "x", "X", "-", "—", "·", ".", "．", "１", "３", "９", "＠", "@", "at", " at ",
    "(at)", "艾特", "点", "dot", "com", "cn", ".com", "abc", "a.b", "mail", "qq", "QQ", "扣扣", "企鹅", "微信", "wx", "vx",
    "v信", "weixin", "wechat_id", "号", "号码", "是", "为", "电话", "手机", "联系方式", "tel", "Phone", "座机", "京A", "粤B",
    "沪C", "12345", "D12345", "挂", "我叫", "姓名", "本人", "我是", "联系人", "举报人：", "来电人：", "来电称", "来电反映",
    "张三", "张 三", "李四", "劉", "刘", "欧阳", "娜娜", "王", "居民", "市民", "一", "二", "三", "幺", "〇", "零", "九", "壹",
    "编号", "单号", "许可证号", "代码", "MA1X", "91320100", "㎡", "½", "①", "ﬁ", "㈱", "Ⅻ", "ｶﾞ", "é", "e\u0301", "\u0308",
    "化工厂", "偷排", "废水", "小区", "路", "街道"]


def fuzz_fields(count: int, seed: int = 9) -> List[Field]:
    """Random soups of the rules' words, numbers and separators, for the comparison only."""
    rng = random.Random(seed)
    reporters = [row.get("reporter") for row in corpus_rows() if row.get("reporter")] + [
        {"name": "张三", "phone": "13912345678", "id_number": "11010519491231002X"},
        {"name": "劉娜娜", "phone": "+86 139-1234-5678", "id_number": None},
        {"name": "Zhang San", "phone": "010-62345678", "id_number": "110105194912310"},
        {"name": "欧阳 娜娜", "phone": "一三九一二三四五六七八", "id_number": "xxxxxxxx1"}, {"name": None, "phone": None}]
    fields: List[Field] = []
    for _ in range(count):
        size = rng.choice([3, 10, 30, 100, 400])
        text = "".join(rng.choice(FUZZ_TOKENS) for _ in range(rng.randint(1, size)))
        fields.append((text, rng.choice(reporters + [None])))
    return fields


# ---- timing --------------------------------------------------------------------------------------

def load_mask(path: Optional[str]) -> Mask:
    if path is None:
        from envleads.privacy import mask_identity

        return mask_identity
    spec = importlib.util.spec_from_file_location(f"masking_reference_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.mask_identity


def time_fields(implementations: Dict[str, Mask], fields: List[Field], repeat: int) -> Dict[str, List[float]]:
    """The fastest of ``repeat`` calls per field and implementation, in µs of this thread's CPU
    time; the implementations take turns pass by pass, so that they see the same load."""
    best = {name: [float("inf")] * len(fields) for name in implementations}
    clock = time.thread_time_ns
    for _ in range(repeat):
        for name, mask in implementations.items():
            times = best[name]
            for index, (text, reporter) in enumerate(fields):
                start = clock()
                mask(text, reporter)
                elapsed = clock() - start
                if elapsed < times[index]:
                    times[index] = elapsed
    return {name: [value / 1000 for value in times] for name, times in best.items()}


def summary(times_us: List[float]) -> Dict[str, float]:
    ordered = sorted(times_us)
    return {"fields": len(ordered), "median_us": round(statistics.median(ordered), 1),
            "p99_us": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
            "max_us": round(ordered[-1], 1), "mean_us": round(statistics.fmean(ordered), 1),
            "sum_ms": round(sum(ordered) / 1000, 1)}


def compare(current: Mask, reference: Mask, sets: Dict[str, List[Field]]) -> Dict[str, object]:
    result: Dict[str, object] = {}
    for name, fields in sets.items():
        mismatches = []
        for text, reporter in fields:
            ours, theirs = current(text, reporter), reference(text, reporter)
            if ours != theirs:
                mismatches.append({"text": text[:300], "reporter": reporter, "current": ours[:300],
                                   "reference": theirs[:300]})
        result[name] = {"fields": len(fields), "mismatches": len(mismatches), "examples": mismatches[:5]}
    return result


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=5000, help="generated complaints (default 5000)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="calls per field; the fastest counts (default 3)")
    parser.add_argument("--hostile-repeat", type=int, default=5, help="calls per hostile text (default 5)")
    parser.add_argument("--impl", help="time mask_identity of this file instead of envleads.privacy")
    parser.add_argument("--compare-with", metavar="FILE",
                        help="another privacy.py: timed alongside, and its outputs must equal the current ones")
    parser.add_argument("--derived", type=int, default=20000, help="corpus variants for the comparison")
    parser.add_argument("--fuzz", type=int, default=20000, help="random soups of the rules' words for the comparison")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)

    started = datetime.datetime.now().astimezone()
    machine = {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
               "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    current = load_mask(args.impl)
    implementations = {"current": current}
    if args.compare_with:
        implementations["reference"] = load_mask(args.compare_with)

    generated = generated_fields(args.count, args.seed)
    corpus = corpus_fields()
    hostile = hostile_fields()
    for mask in implementations.values():  # warm-up: lazy tables (the script table), regex caches
        for text, reporter in corpus[:20] + generated[:50]:
            mask(text, reporter)

    timings: Dict[str, Dict[str, object]] = {name: {} for name in implementations}
    for set_name, fields in (("generated", generated), ("corpus", corpus)):
        for impl_name, times in time_fields(implementations, fields, args.repeat).items():
            timings[impl_name][set_name] = summary(times)
    per_text: Dict[str, Dict[str, float]] = {name: {} for name in implementations}
    for name, field in hostile:
        for impl_name, times in time_fields(implementations, [field], args.hostile_repeat).items():
            per_text[impl_name][name] = round(times[0] / 1000, 2)
    for impl_name, ms in per_text.items():
        worst = max(ms, key=ms.get)
        timings[impl_name]["hostile"] = {"texts": len(ms), "bytes_each": MAX_TEXT_BYTES, "worst_ms": ms[worst],
                                         "worst_text": worst, "median_ms": round(statistics.median(ms.values()), 2),
                                         "ms": ms}

    comparison = None
    if args.compare_with:
        sets = {"generated": generated, "corpus": corpus, "hostile": [field for _, field in hostile],
                "real": real_fields(), "derived": derived_fields(args.derived), "fuzz": fuzz_fields(args.fuzz)}
        comparison = compare(current, implementations["reference"], sets)

    result = {
        "command": "python " + " ".join(shlex.quote(arg) for arg in [os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
        "date": started.isoformat(timespec="seconds"),
        "machine": {**machine, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "unit": "µs of thread CPU per field (fastest of --repeat calls); hostile: ms per 20,000-byte text",
        "generated": {"count": args.count, "seed": args.seed},
        "timings": timings,
    }
    if comparison is not None:
        result["compare_with"] = {"path": args.compare_with,
                                  "sha256": hashlib.sha256(Path(args.compare_with).read_bytes()).hexdigest()}
        result["comparison"] = comparison

    for impl_name, sets in timings.items():
        print(f"== {impl_name}" + (f" ({args.impl})" if impl_name == "current" and args.impl else
                                   f" ({args.compare_with})" if impl_name == "reference" else ""))
        print(f"{'set':<10} {'fields':>7} {'median µs':>10} {'p99 µs':>9} {'max µs':>10} {'mean µs':>9}")
        for set_name in ("generated", "corpus"):
            row = sets[set_name]
            print(f"{set_name:<10} {row['fields']:>7} {row['median_us']:>10} {row['p99_us']:>9} {row['max_us']:>10} "
                  f"{row['mean_us']:>9}")
        hostile_row = sets["hostile"]
        print(f"hostile: worst {hostile_row['worst_ms']} ms ({hostile_row['worst_text']}), median "
              f"{hostile_row['median_ms']} ms; " + ", ".join(f"{name} {ms}" for name, ms in hostile_row["ms"].items()))
    failed = False
    if comparison is not None:
        print("== comparison with", args.compare_with)
        for set_name, row in comparison.items():
            print(f"{set_name:<10} {row['fields']:>7} fields, {row['mismatches']} mismatches")
            failed |= row["mismatches"] > 0
            for example in row["examples"][:2]:
                print("   ", json.dumps(example, ensure_ascii=False)[:600])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", "utf-8")
    print("wrote", args.output)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
