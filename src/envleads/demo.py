"""``envleads demo``: the whole path on one machine, with a real (embedded) Kafka broker.

Starts the embedded Tansu broker, creates the topics, produces generated complaints as Avro
events, runs the streaming pipeline until the raw topic is drained, prints the top leads and
stops everything it started (also on Ctrl-C or an error).
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Dict, List

from envleads.records import Lead

LOG = logging.getLogger(__name__)


def format_lead_table(leads: List[Lead], top: int = 10) -> str:
    """The top leads as a terminal table (pandas aligns the double-width Chinese columns)."""
    import pandas as pd

    from envleads.feed import place_name, rank_leads

    ordered = rank_leads(leads, int(time.time() * 1000))[:top]  # the feed's order: tail, export, dashboard
    rows = []
    for rank, lead in enumerate(ordered, start=1):
        rows.append({
            "rank": rank, "tier": lead.tier, "score": lead.score,
            "types": ",".join(lead.pollution_types),
            "region": place_name(lead.region),
            "department": lead.department or "-",
            "reports": lead.report_count,
            "top reasons": ", ".join(f"{r.factor} +{r.points:g}" for r in lead.reasons[:3]),
        })
    if not rows:
        return "(no leads)"
    with pd.option_context("display.unicode.east_asian_width", True, "display.width", 200,
                           "display.max_colwidth", 60):
        return pd.DataFrame(rows).to_string(index=False)


def run_demo(count: int, seed: int, bootstrap_servers: str = None, beam_args: List[str] = None,
             security=None) -> Dict:
    from envleads.generator import generate_events
    from envleads.config import DEFAULT_TOPICS
    from envleads.ops.broker import EmbeddedBroker, create_topics
    from envleads.pipelines.kafka_edge.lead_topic import LeadView
    from envleads.pipelines.rounds.loop import run_stream
    from envleads.pipelines.rounds.outputs import Topics
    from envleads.pipelines.kafka_edge.write import produce_lines

    started = time.monotonic()
    topics = Topics()  # the default topics, which the embedded broker creates
    with contextlib.ExitStack() as stack:
        if bootstrap_servers is None:
            broker = stack.enter_context(EmbeddedBroker())
            bootstrap_servers = broker.bootstrap_servers
            print(f"embedded Kafka broker (Tansu) at {bootstrap_servers}")
        create_topics(bootstrap_servers, list(DEFAULT_TOPICS.values()), security=security)
        produced = produce_lines(bootstrap_servers, topics.raw, (event.line for event in generate_events(count, seed)),
                                 security=security)
        print(f"produced {produced} generated complaints to {topics.raw}")
        totals = run_stream(bootstrap_servers, topics, beam_args, stop_when_idle_s=3.0, security=security)
        view = LeadView(bootstrap_servers, topics.leads, security)
        view.refresh()
        view.close()
        print(f"processed {totals['events']} events in {totals['rounds']} rounds; "
              f"{len(view.leads)} leads in the compacted lead view")
        print(format_lead_table(list(view.leads.values())))
    totals.update(leads=len(view.leads), wall_s=round(time.monotonic() - started, 1))
    print(f"demo finished in {totals['wall_s']} s; broker stopped")
    return totals
