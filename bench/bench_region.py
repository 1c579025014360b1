"""Region resolution speed (resolutions per second on one core), build time and memory of the
township table, and, with the shared data present, accuracy of envleads.region (with and without
township names) next to the cpca-new parser on regions_dev.jsonl.

    taskset -c 0 .venv/bin/python bench/bench_region.py [--seconds 5]

Writes bench/results/region.json. Texts for the speed run are generated here from templates and
division names (no shared texts), so the run works without the shared data. Memory is measured with
tracemalloc after the timed runs (Python allocations only, not the process's resident size).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import time
import tracemalloc
from pathlib import Path

from envleads.divisions import COUNTY, TownshipTable, load_divisions, load_townships
from envleads.region import RegionResolver
from envleads.region_evaluation import evaluate_regions, read_gold

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ENVLEADS_SHARED_DATA", ROOT.parent / "shared" / "data"))

TEMPLATES = [
    "{city}{county}一家化工厂夜间偷排废水,河水发黑发臭,附近居民多次反映无人处理。",
    "我是{county}某小区的住户,楼下烧烤店油烟直排,晚上吵到凌晨两点,请有关部门尽快处理。",
    "{province}{city}某工地夜间施工噪声扰民,已经持续一个多月,投诉后没有回复。",
    "鼓楼区有家洗车店污水直接排进雨水井,路面结冰。",
    "A市A5区某村有人露天焚烧垃圾,浓烟呛人。",
    "群众反映北京东路附近一家餐馆油烟扰民,排烟管道正对居民窗户,夏天无法开窗。",
]


def generated_texts(count: int, seed: int = 7):
    table = load_divisions()
    counties = [d for d in table if d.level == COUNTY and d.city_code and d.province_code not in ("710000", "810000", "820000", "990000")]
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        county = rng.choice(counties)
        province, city, _ = table.chain(county.adcode)
        template = rng.choice(TEMPLATES)
        texts.append(template.format(province=province.name, city=city.name if city else "", county=county.name))
    return texts


def speed(resolver: RegionResolver, seconds: float) -> dict:
    texts = generated_texts(2000)
    done, chars = 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for text in texts:
            resolver.resolve(text)
            chars += len(text)
        done += len(texts)
    elapsed = time.perf_counter() - start
    return {"resolutions": done, "seconds": round(elapsed, 2), "per_second": round(done / elapsed, 1),
            "mean_chars": round(chars / done, 1)}


class _CpcaAdapter:
    """Presents cpca_new.transform as a resolver, so evaluate_regions scores it the same way."""

    def __init__(self):
        import cpca_new

        self._cpca = cpca_new
        self._table = load_divisions()
        self.version = "cpca-new"

    def resolve(self, text: str, title: str = ""):
        from envleads.records import RegionResolution

        frame = self._cpca.transform([f"{title}\n{text}" if title else text])
        raw = frame.iloc[0].get("adcode")
        code = str(raw)[:6] if raw is not None and str(raw) not in ("None", "nan", "") else None
        if code and code not in self._table.by_code and code.endswith("0000") is False:
            code = code[:4] + "00" if code[:4] + "00" in self._table.by_code else None
        if code is None or code not in self._table.by_code:
            return RegionResolution(None, None, None, None, None, 0.0, None, self.version)
        if code[:2] + "0000" in ("110000", "120000", "310000", "500000") and code.endswith("0100"):
            code = code[:2] + "0000"
        record = self._table.region_record(code)
        return RegionResolution(record["province"], record["city"], record["county"], code, record["level"],
                                1.0, None, self.version)


def _allocated(build) -> tuple:
    """(result, bytes still allocated by ``build()``); the result is kept alive while measuring."""
    gc.collect()
    tracemalloc.start()
    result = build()
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, current


def memory() -> dict:
    load_townships.cache_clear()
    table, table_bytes = _allocated(load_townships)
    load_divisions()  # shared by both resolvers; not counted
    _, with_bytes = _allocated(RegionResolver)
    _, without_bytes = _allocated(lambda: RegionResolver(townships=TownshipTable([], "none")))
    return {"township_names": len(table), "township_table_mb": round(table_bytes / 2**20, 2),
            "resolver_mb": round(with_bytes / 2**20, 2),
            "resolver_without_townships_mb": round(without_bytes / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the speed run")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "region.json"))
    args = parser.parse_args()

    load_divisions()
    load_townships()  # file reads are timed apart from building the indexes
    start = time.perf_counter()
    resolver = RegionResolver()
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    plain = RegionResolver(townships=TownshipTable([], "none"))
    plain_build_s = time.perf_counter() - start
    load_townships.cache_clear()
    start = time.perf_counter()
    load_townships()
    load_s = time.perf_counter() - start
    result = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
              "note": "measured on a shared 2-core machine (other jobs running); compare runs made together",
              "table_version": resolver.version, "build_s": round(build_s, 3),
              "build_without_townships_s": round(plain_build_s, 3), "township_load_s": round(load_s, 3),
              "speed": speed(resolver, args.seconds), "speed_without_townships": speed(plain, args.seconds)}
    result["memory"] = memory()

    gold_path = SHARED / "regions_dev.jsonl"
    metrics = ("county_accuracy", "province_accuracy", "city_accuracy", "null_accuracy", "wrong_county_rate",
               "exact_accuracy")
    if gold_path.exists():
        gold = read_gold(str(gold_path))
        result["regions_dev"] = {"envleads": {k: v for k, v in evaluate_regions(resolver, gold).items() if k != "errors"}}
        result["regions_dev"]["no_townships"] = {k: v for k, v in evaluate_regions(plain, gold).items()
                                                 if k != "errors"}
        try:
            cpca = evaluate_regions(_CpcaAdapter(), gold)
            result["regions_dev"]["cpca_new"] = {k: v for k, v in cpca.items() if k != "errors"}
        except ImportError as error:
            result["regions_dev"]["cpca_new"] = {"skipped": str(error)}
    print(f"build {result['build_s']:.2f} s ({result['build_without_townships_s']:.2f} s without townships, "
          f"township file {result['township_load_s']:.2f} s); {result['speed']['per_second']:.0f} resolutions/s "
          f"on one core ({result['speed_without_townships']['per_second']:.0f} without townships; "
          f"mean {result['speed']['mean_chars']} chars)")
    print("memory (MB): " + ", ".join(f"{k} {v}" for k, v in result["memory"].items()))
    if "regions_dev" in result:
        print(f"{'metric':<20}" + "".join(f"{name:>12}" for name in result["regions_dev"]))
        for metric in metrics:
            row = "".join(f"{str(result['regions_dev'][name].get(metric, '-')):>12}" for name in result["regions_dev"])
            print(f"{metric:<20}{row}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, ensure_ascii=False, indent=2)


if __name__ == "__main__":
    main()
