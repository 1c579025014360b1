"""The stateless stages of a round (:class:`Enricher`): the DoFns of ``transforms.py`` called
directly, in the stream process or in the enrichment workers (``pools.py``)."""
from __future__ import annotations

from typing import Any, Iterable, List, Optional, Sequence, Tuple

from apache_beam.pvalue import TaggedOutput

from envleads.failures import internal_error
from envleads.leads import complaint_features
from envleads.pipelines.options import StageSettings
from envleads.pipelines.rounds.outputs import enriched_wire_parts, with_originals
from envleads.pipelines.transforms import DEDUPLICATE_STAGE, ENCODE_ENRICHED_STAGE
from envleads.records import DeadLetter, EnrichedComplaint, RawEvent


class Enricher:
    """The stateless stages: the DoFns of ``transforms.py``, set up once, called per round.

    It also computes each complaint's repeat-detection features (a pure function of the enriched
    complaint), so that in worker processes they are off the keyed stage's critical path;
    ``keep_tokens=False`` then leaves the words out of the results (nothing after reads them), and
    ``wire_parts=True`` encodes the enriched record but for the repeat stage's fields.
    """

    def __init__(self, settings: StageSettings, classify_batch_size: int = 512, keep_tokens: bool = True,
                 wire_parts: bool = False):
        from envleads.pipelines.transforms import _ClassifyFn, _DecodeFn, _ResolveRegionFn, _SegmentFn
        from envleads.repeats import load_repeat_config

        self._repeat_config = load_repeat_config()

        self._decode = _DecodeFn(settings)
        self._segment = _SegmentFn()
        self._classify = _ClassifyFn(settings)
        self._resolve = _ResolveRegionFn()
        for fn in (self._decode, self._segment, self._classify, self._resolve):
            fn.setup()
        self._batch = max(1, classify_batch_size)
        self._keep_tokens = keep_tokens
        self._wire_parts = wire_parts

    def enrich(self, events: Sequence[RawEvent]) -> Tuple[List[EnrichedComplaint], List[DeadLetter]]:
        """Decode, segment, classify (batched), resolve region and route; invalid events, and
        records that make a stage raise, to dead letters (those after decode with their bytes)."""
        dead: List[DeadLetter] = []
        complaints = _main_outputs((out for event in events for out in self._decode.process(event)), dead)
        segmented = _main_outputs((out for complaint in complaints for out in self._segment.process(complaint)), dead)
        enriched: List[EnrichedComplaint] = []
        for start in range(0, len(segmented), self._batch):
            classified = _main_outputs(self._classify.process(segmented[start:start + self._batch]), dead)
            enriched.extend(_main_outputs((out for item in classified for out in self._resolve.process(item)), dead))
        enriched = [done for done in (self._with_features(item, dead) for item in enriched) if done is not None]
        return enriched, with_originals(dead, events)

    def _with_features(self, item: EnrichedComplaint, dead: List[DeadLetter]) -> Optional[EnrichedComplaint]:
        """The complaint with its repeat features (and encoded parts), or None and its dead letter."""
        stage = DEDUPLICATE_STAGE
        try:
            features = complaint_features(item, self._repeat_config)
            stage = ENCODE_ENRICHED_STAGE
            parts = enriched_wire_parts(item) if self._wire_parts else None
        except Exception as error:  # noqa: BLE001 - one record must not stop the stream
            dead.append(internal_error(stage, error, item.complaint))
            return None
        return item._replace(matter_features=features, tokens=item.tokens if self._keep_tokens else [],
                             wire_parts=parts)


def _main_outputs(outputs: Iterable[Any], dead: List[DeadLetter]) -> List[Any]:
    """A DoFn's main outputs; its ``dead_letter`` outputs appended to ``dead``."""
    main = []
    for out in outputs:
        if isinstance(out, TaggedOutput):
            dead.append(out.value)
        else:
            main.append(out)
    return main
