"""The rounds engine of ``envleads stream``: continuous operation over Kafka as bounded rounds.

Beam's local Python runners cannot emit from a grouping or stateful stage behind an unbounded
source, so on one machine the pipeline runs as short bounded rounds in one long-lived process
(:class:`~envleads.pipelines.rounds.engine.LocalRoundEngine`): each round reads the raw events that
arrived since the committed offsets, runs the stages of :class:`ComplaintsToLeads` over them (the
stateless stages' DoFns set up once, optionally in ``enrich_workers`` processes that enrich round
k+1 while this process runs the keyed stages of round k; the matter indexes kept between rounds as
the streaming form keeps them in keyed state, the ``"unknown"`` key's and a share of the city keys'
optionally in a process of their own: :class:`~envleads.pipelines.rounds.pools.KeyedAssigner`),
writes enriched complaints, leads, dead letters and the keyed state's changes to their topics,
waits for the broker's acknowledgements, and only then commits the offsets (at-least-once; lead
keys are stable, so a re-processed event updates its lead instead of adding one). At start, the
lead topic and the state changelog are read into a
:class:`~envleads.pipelines.rounds.store.LeadStore` on local disk, from which each key's index is
rebuilt exactly. A round closes after ``max_round_events`` or ``round_wait_s`` after its first
event, so latency stays bounded. The same transforms run as one streaming job on runners that
support it.

Broker loss: any Kafka error in a round (or a broker that lost the group's committed offsets, as
the in-memory embedded broker does on restart) closes the clients, drops in-memory matter state
and reconnects with exponential backoff (one WARNING per attempt); nothing is committed for a
round whose outputs were not acknowledged, so its events are read again.

Modules, in the order they depend on one another:

- ``store``: the :class:`LeadStore` (SQLite cache of the lead topic and of the keyed state's
  changelog), :class:`StateChanges` and its changelog records (rebuilt at start by
  :mod:`envleads.pipelines.kafka_edge.lead_topic`);
- ``outputs``: the :class:`Topics` of a deployment, the Avro encoding of a round's outputs
  (the enriched record spliced from the parts the workers encoded) and their producer side;
- ``enrich``: the stateless stages (:class:`Enricher`);
- ``engine``: the keyed stages over one round (:class:`LocalRoundEngine`,
  :func:`assign_key_rounds`, :class:`RoundOutputs`);
- ``pools``: the worker processes (:class:`EnrichmentPool`, :class:`KeyedAssigner`) and their
  initialisers;
- ``session``: the raw topic's consumer and the output producer (:class:`KafkaSession`,
  :func:`open_session`) and the errors a round retries on;
- ``loop``: :func:`run_stream`, the rounds until interrupted, with :class:`Backoff`.

The command line (``envleads stream``) is in :mod:`envleads.cli.pipelines`; its Kafka session is
:mod:`envleads.pipelines.kafka_edge.session`.
"""
