"""``DecodeAlerts``: Kafka records to alerts in a pipeline, every failure a dead letter.

The decoding is ``transforms.decode.decode_record`` (pure, tested without Beam); the DoFn only
routes its result and counts.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection, TaggedOutput

from transforms.alert_model import Alert
from transforms.decode import DeadLetter, KafkaRecord, decode_record
from transforms.decode_errors import DecodeStage
from transforms.schemas import LsstSchemas

COUNTER_NAMESPACE = "DecodeAlerts"
MESSAGES_COUNTER = "messages"
DECODED_COUNTER = "alerts_decoded"


def dead_letters_counter(stage: DecodeStage) -> str:
    """The counter of the records that failed in ``stage``."""
    return f"dead_letters_{stage}"


class _DecodeFn(beam.DoFn):
    def __init__(self, schemas: LsstSchemas) -> None:
        self._schemas = schemas
        self._messages = Metrics.counter(COUNTER_NAMESPACE, MESSAGES_COUNTER)
        self._decoded = Metrics.counter(COUNTER_NAMESPACE, DECODED_COUNTER)
        self._failed = {
            stage: Metrics.counter(COUNTER_NAMESPACE, dead_letters_counter(stage))
            for stage in DecodeStage
        }

    def process(self, record: KafkaRecord) -> Iterator[Alert | TaggedOutput]:
        self._messages.inc()
        result = decode_record(record, self._schemas)
        if isinstance(result, DeadLetter):
            self._failed[DecodeStage(result.stage)].inc()
            yield TaggedOutput(DecodeAlerts.DEAD_LETTERS, result)
            return
        self._decoded.inc(len(result))
        yield from result


class DecodeAlerts(beam.PTransform[PCollection[KafkaRecord], beam.pvalue.DoOutputsTuple]):
    """KafkaRecord -> Alert, with failures on the ``dead_letters`` output.

    Input: ``PCollection[KafkaRecord]``, bounded or not, any windowing (element-wise; windows and
    timestamps pass through unchanged). Outputs (``DoOutputsTuple``):

    * ``alerts`` (main): ``PCollection[Alert]``; a container message yields all its alerts.
    * ``dead_letters``: ``PCollection[DeadLetter]``, exactly one per record that failed, with the
      original bytes, the stage, the reason and the source topic/partition/offset; the pipeline
      publishes it to ``alertflow.deadletter``.

    Every record ends up in exactly one of the two outputs (all or nothing per record). Counters
    in namespace ``DecodeAlerts``: ``messages`` (records in), ``alerts_decoded`` and
    ``dead_letters_<stage>`` for each :class:`DecodeStage`. No side inputs; delivery is that of
    the runner (at least once on Flink with checkpointing). LSST schema ids are resolved by
    ``schemas`` (default: the shipped ones).
    """

    DEAD_LETTERS = "dead_letters"
    ALERTS = "alerts"

    def __init__(self, schemas: LsstSchemas | None = None, label: str | None = None) -> None:
        super().__init__(label)
        self._schemas = schemas if schemas is not None else LsstSchemas()

    def expand(self, records: PCollection[KafkaRecord]) -> beam.pvalue.DoOutputsTuple:
        outputs: beam.pvalue.DoOutputsTuple = records | "Decode" >> beam.ParDo(
            _DecodeFn(self._schemas)
        ).with_outputs(self.DEAD_LETTERS, main=self.ALERTS)
        return outputs
