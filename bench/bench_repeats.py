"""Speed and memory of repeat-petition detection on generated complaints.

Generates N matters spread over a year of event time (each reported 1-4 times within a few weeks),
each with its own random wording plus shared boilerplate and a named compound/company, then:
  * features per second (bottom-k shingle sketch + entity rules),
  * assignments per second (one index, expiry once per simulated day),
  * memory held by the index at the end (tracemalloc) and its to_state() JSON size,
Quality is not measured here (the product's path is ``bench_repeats_product.py``); the joins are
counted only to show the index does work.
Prints a table and writes bench/results/repeats.json.

    .venv/bin/python bench/bench_repeats.py [--matters 3000]
"""
import argparse
import gc
import json
import os
import random
import time
import tracemalloc

from envleads import repeats as R

DAY_MS = 86_400_000
T0 = 1_704_067_200_000  # 2024-01-01

_FILLER = ("每天晚上都有很大的噪音和刺鼻的气味，严重影响附近居民的正常生活和休息，多次反映没有解决，"
           "希望有关部门尽快到现场调查处理，还我们一个安静干净的环境。工厂排放废水废气，河水发黑发臭，"
           "施工车辆来回行驶，灰尘很大，垃圾堆放无人清理，油烟直接排放到楼上住户家里。")
_NAME_CHARS = "翠湖金星银河东方明珠华庭锦绣花城天润新世纪阳光丽景碧水云山龙腾福源瑞祥宏达恒通"
_KINDS = ("小区", "化工厂", "汽修厂", "烧烤店", "工地", "搅拌站")
# the type the classifier would give each kind: a matter is environmental or not, so types take part
_TYPES = {"小区": ["noise"], "化工厂": ["air"], "汽修厂": ["air"], "烧烤店": ["air"], "工地": ["noise"], "搅拌站": ["air"]}


def _types_of(title: str):
    return next(types for kind, types in _TYPES.items() if kind in title)


def _random_chars(rng: random.Random, n: int) -> str:
    return "".join(chr(rng.randrange(0x4E00, 0x6000)) for _ in range(n))


def _text(rng: random.Random, name: str, base: str) -> tuple:
    # a repeat keeps most of its matter's own wording, adds shared boilerplate and new words
    start = rng.randrange(0, len(_FILLER) - 40)
    cut = rng.randrange(0, len(base) // 3)
    body = base[cut:] + _FILLER[start:start + 30] + _random_chars(rng, 20)
    return f"{name}问题反映", f"{name}{body}[电话]"


def generate(n_matters: int, seed: int = 7):
    rng = random.Random(seed)
    events = []
    for m in range(n_matters):
        name = "".join(rng.choice(_NAME_CHARS) for _ in range(4)) + rng.choice(_KINDS)
        base = _random_chars(rng, 120)
        start = T0 + rng.randrange(0, 365 * DAY_MS)
        for r in range(rng.choice((1, 1, 2, 3, 4))):
            title, text = _text(rng, name, base)
            events.append((start + r * rng.randrange(0, 20 * DAY_MS), f"c{m}-{r}", title, text))
    events.sort()
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matters", type=int, default=3000)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "repeats.json"))
    args = parser.parse_args()
    config = R.load_repeat_config()
    events = generate(args.matters)

    t = time.perf_counter()
    features = [R.matter_features(text, title, [], None, _types_of(title), config) for _, _, title, text in events]
    feat_s = time.perf_counter() - t

    def run(index):
        peak_live = joined = 0
        day = None
        for (ms, cid, _, _), f in zip(events, features):
            if day != ms // DAY_MS:
                day = ms // DAY_MS
                index.expire(ms)
            assignment = index.assign(cid, ms, f, None)
            if assignment.duplicate_of is not None:
                joined += 1
            peak_live = max(peak_live, len(index))
        return peak_live, joined

    t = time.perf_counter()
    peak_live, joined = run(R.MatterIndex(config))
    assign_s = time.perf_counter() - t

    # a second pass under tracemalloc (which slows allocation, so it is not timed)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    index = R.MatterIndex(config)
    run(index)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    state_bytes = len(json.dumps(index.to_state()))

    result = {
        "config_version": config.version,
        "sketch_size": config.sketch_size,
        "window_days": config.window_days,
        "matters_generated": args.matters,
        "complaints": len(events),
        "features_per_s": round(len(events) / feat_s, 1),
        "assignments_per_s": round(len(events) / assign_s, 1),
        "joined_as_repeat": joined,
        "true_repeats": len(events) - args.matters,
        "peak_live_matters": peak_live,
        "live_matters_at_end": len(index),
        "index_memory_bytes_at_end": held,
        "index_memory_bytes_per_live_matter": round(held / max(1, len(index)), 1),
        "state_json_bytes_at_end": state_bytes,
        "machine_note": "SHARED machine (2 cores, other helpers' tests and benchmarks running): speeds are "
                        "indicative only; see loadavg",
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
