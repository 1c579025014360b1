"""Peak memory of one round of limit-size events: what a round costs per event at the field limits.

Builds ``--events`` valid complaints whose every field is at its :class:`DecodeLimits` limit (text,
title, address, channel, reporter fields, complaint id) and runs them as one round through the
rounds engine's :class:`LocalRoundEngine` in this process (the stateless stages, then the keyed
ones), after the stages were set up. Reports the peak RSS (``ru_maxrss``) before and after the
round and the increase per event. ``--trace`` instead runs the stages one by one under tracemalloc
and reports each one's peak (Python and numpy allocations; jieba's C parts are not counted), and
that of each feature transformer of the classifier over the round's documents.

    .venv/bin/python bench/bench_limits_memory.py --events 351   # one round at the default budget
    .venv/bin/python bench/bench_limits_memory.py --events 100 --trace
    .venv/bin/python bench/bench_limits_memory.py --events 351 --filler random   # no repeated words

Text fillers: ``generated`` (generated complaints concatenated: real words, many repeated) and
``random`` (random common CJK characters: every shingle distinct, jieba's worst case).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
from typing import List

from envleads.decode import DecodeLimits

GENERATED, RANDOM = "generated", "random"
# the CJK Unified Ideographs block's common part: 3 UTF-8 bytes each
_CJK_FIRST, _CJK_LAST = 0x4E00, 0x7FFF


def _fill(rng: random.Random, limit: int, filler: str, pool: List[str]) -> str:
    """A string of at most ``limit`` UTF-8 bytes, within 3 bytes of it."""
    if filler == RANDOM:
        text = "".join(chr(rng.randint(_CJK_FIRST, _CJK_LAST)) for _ in range(limit // 3))
    else:
        parts, size = [], 0
        while size < limit:
            part = rng.choice(pool)
            parts.append(part)
            size += len(part.encode("utf-8"))
        text = "".join(parts)
    encoded = text.encode("utf-8")[:limit]
    return encoded.decode("utf-8", "ignore")


def limit_size_events(count: int, seed: int = 1, filler: str = GENERATED,
                      limits: DecodeLimits = DecodeLimits()) -> List[bytes]:
    """``count`` JSON lines of valid complaints with every field at its limit (distinct texts)."""
    from envleads.generator import generate_events

    rng = random.Random(seed)
    pool = []
    for event in generate_events(400, seed):
        try:
            pool.append(json.loads(event.line)["text"])
        except (ValueError, KeyError, TypeError):
            continue  # the generator's malformed lines
    lines = []
    for number in range(count):
        digits = "".join(rng.choice("0123456789") for _ in range(limits.max_reporter_field_bytes))
        document = {
            "complaint_id": f"limit-{number:06d}-".ljust(limits.max_id_chars, "x"),
            "received_at": f"2026-03-{1 + number % 28:02d}T{number % 24:02d}:00:00+08:00",
            "title": _fill(rng, limits.max_title_bytes, filler, pool),
            "text": _fill(rng, limits.max_text_bytes, filler, pool),
            "address": _fill(rng, limits.max_address_bytes, filler, pool),
            "channel": "c" * limits.max_channel_bytes,
            "jurisdiction_adcode": "1" * limits.max_adcode_bytes,
            "reporter": {"name": _fill(rng, limits.max_reporter_field_bytes, RANDOM, pool),
                         "phone": digits, "id_number": digits},
        }
        lines.append(json.dumps(document, ensure_ascii=False).encode("utf-8"))
    return lines


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(count: int, filler: str) -> dict:
    """Runs one round of ``count`` limit-size events; returns sizes, peaks and outcome counts."""
    from envleads.pipelines.rounds.engine import LocalRoundEngine
    from envleads.pipelines.rounds.store import LeadStore

    settings, events, lines = _setup(count, filler)
    store = LeadStore()
    engine = LocalRoundEngine(settings, store)
    engine.run(events[:5])  # every stage set up and used once
    before = _rss_mb()
    started = time.monotonic()
    enriched, dead = engine.enrich(events)
    enriched_peak = _rss_mb()
    outputs = engine.finish(enriched, dead)
    elapsed = time.monotonic() - started
    store.close()
    return {
        "events": count, "filler": filler, "event_bytes": sum(map(len, lines)),
        "mean_event_bytes": round(sum(map(len, lines)) / count),
        "enriched": len(outputs.enriched), "dead_letters": len(outputs.dead_letters),
        "peak_rss_before_mb": round(before, 1), "peak_rss_after_enrich_mb": round(enriched_peak, 1),
        "peak_rss_mb": round(_rss_mb(), 1),
        "per_event_mb": round((_rss_mb() - before) / count, 3), "seconds": round(elapsed, 1),
    }


def _setup(count: int, filler: str):
    from envleads.pipelines.options import prepared_run
    from envleads.records import RawEvent

    os.environ.setdefault("ENVLEADS_PSEUDONYM_KEY", "bench-limits-key")
    lines = limit_size_events(count, filler=filler)
    _, settings = prepared_run([])
    return settings, [RawEvent(line, "json") for line in lines], lines


def trace_stages(count: int, filler: str) -> dict:
    """Each stateless stage's traced peak over one round above what was held before it (per
    event), and each feature transformer's over the round's documents in one classifier call."""
    import tracemalloc

    from apache_beam.pvalue import TaggedOutput

    from envleads.leads import complaint_features
    from envleads.models.pollution import segment_docs
    from envleads.pipelines.rounds.enrich import Enricher

    settings, events, _ = _setup(count, filler)
    enricher = Enricher(settings, classify_batch_size=count)
    enricher.enrich(events[:3])
    peaks = {}
    tracemalloc.start()

    def stage(name: str, run):
        tracemalloc.reset_peak()
        held = tracemalloc.get_traced_memory()[0]
        out = run()
        peaks[name] = round((tracemalloc.get_traced_memory()[1] - held) / count / 1024)
        return out

    complaints = stage("decode", lambda: [out for event in events for out in enricher._decode.process(event)
                                          if not isinstance(out, TaggedOutput)])
    segmented = stage("segment (held: tokens)",
                      lambda: [item for c in complaints for item in enricher._segment.process(c)])
    classified = stage("classify", lambda: list(enricher._classify.process(segmented)))
    enriched = stage("resolve region", lambda: [e for item in classified for e in enricher._resolve.process(item)])
    stage("repeat features", lambda: [complaint_features(item, enricher._repeat_config) for item in enriched])
    features = enricher._classify._model.estimator.features_
    docs = segment_docs([item.doc for item in segmented])
    for name, transformer in features.transformer_list:
        stage(f"classify: {name}", lambda: transformer.transform(docs))
    tracemalloc.stop()
    return {"events": count, "filler": filler, "traced_peak_kb_per_event": peaks}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--filler", choices=(GENERATED, RANDOM), default=GENERATED)
    parser.add_argument("--trace", action="store_true", help="tracemalloc: each stage's peak instead")
    parser.add_argument("--out", default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    result = (trace_stages if args.trace else measure)(args.events, args.filler)
    text = json.dumps(result, ensure_ascii=False, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
