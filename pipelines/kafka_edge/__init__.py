"""The Kafka edge: every read and write of a topic, one module per direction, each with its delivery
guarantee in its docstring.

| module | direction | used by | delivery |
|---|---|---|---|
| ``read.py`` | in (kafka-python) | the rounds engine's raw topic, whole-topic reads, group commits | at-least-once: offsets committed after outputs are acknowledged |
| ``write.py`` | out (kafka-python) | a round's outputs, ``replay``, complaint lines to the raw topic | acknowledged (``acks=all``); a failure raises, nothing is committed |
| ``lead_topic.py`` | in | the one reader of the lead topic: stream start, Beam job start, demo, ``tail``, ``export``, dashboard | every version at least once; the view keeps the last per key |
| ``beam_source.py`` | in (Beam) | ``ReadFromKafka``, the Beam streaming job | at-least-once from the offsets the job starts at |
| ``beam_sink.py`` | out (Beam) | ``WriteToKafka``, the Beam streaming job | a bundle completes only when every record was acknowledged |
| ``beam_commit.py`` | offsets (Beam) | ``CommitWrittenOffsets``, the Beam streaming job unbounded | a raw offset is committed once every output of it and of the records before it was acknowledged |
| ``session.py`` | both | the rounds engine: one consumer and one producer (:func:`open_session`) | as ``read.py`` + ``write.py`` |
| ``native.py`` | both (librdkafka) | the same session on confluent-kafka, the default when installed | the same as ``session.py`` |

Client settings (TLS, SASL, timeouts) come from one place, ``ops/kafka_config.py``; topic names from
``envleads.config.DEFAULT_TOPICS``.
"""
