"""Backfill: the broker's transforms over alert files, in batch, before a filter goes live.

    alertflow backfill --filters DIR --alerts FILE... --out DIR

Reads the alert files (ZTF packets, LSST containers or wire-format messages), runs
DecodeAlerts, AnnotateAlerts and ApplyFilters with the filter set of DIR's YAML files as a
static side input, and writes one JSON-lines file per filter to DIR (``<filter>.jsonl``, the
``lite`` format), plus ``deadletters.jsonl`` for files that did not decode. Runs on Beam's
local runner (``--runner`` and other Beam options can be passed through).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from transforms.annotate.transform import AnnotateAlerts
from transforms.apply_filters import MATCHES, ApplyFilters
from transforms.decode import KafkaRecord
from transforms.decode_alerts import DecodeAlerts
from transforms.filters.document import load_filter_file
from transforms.filters.matches import FilterMatch
from transforms.filters.model import FilterSet
from transforms.publish import dead_letter_message, lite_message


def file_record(path: str) -> KafkaRecord:
    """An alert file as the decoder's input; the path stands where a topic would."""
    return KafkaRecord(topic=path, partition=0, offset=0, key=None, value=Path(path).read_bytes())


def write_lines(item: tuple[str, Iterable[bytes]], out_dir: str) -> str:
    name, lines = item
    path = Path(out_dir) / f"{name}.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in sorted(lines)))
    return str(path)


def lite_line(match: FilterMatch) -> tuple[str, bytes]:
    return match.filter_name, lite_message(match, processed_at_ms=0)[1]


def build(
    p: beam.Pipeline, filter_set: FilterSet, alert_files: Sequence[str], out_dir: str
) -> None:
    snapshots = p | "FilterSet" >> beam.Create([filter_set])
    decoded = (
        p
        | "AlertFiles" >> beam.Create(list(alert_files))
        | "ReadFiles" >> beam.Map(file_record)
        | "DecodeAlerts" >> DecodeAlerts()
    )
    annotated = decoded[DecodeAlerts.ALERTS] | "AnnotateAlerts" >> AnnotateAlerts(
        snapshots=snapshots
    )
    filtered = annotated[AnnotateAlerts.ANNOTATED] | "ApplyFilters" >> ApplyFilters(snapshots)
    (
        filtered[MATCHES]
        | "ToLite" >> beam.Map(lite_line)
        | "ByFilter" >> beam.GroupByKey()
        | "WriteMatches" >> beam.Map(write_lines, out_dir)
    )
    (
        (decoded[DecodeAlerts.DEAD_LETTERS], annotated[AnnotateAlerts.DEAD_LETTERS])
        | "AllDeadLetters" >> beam.Flatten()
        | "ToDeadLetterLine" >> beam.Map(lambda d: ("deadletters", dead_letter_message(d)[1]))
        | "AllLines" >> beam.GroupByKey()
        | "WriteDeadLetters" >> beam.Map(write_lines, out_dir)
    )


def run(
    filters_dir: Path, alert_files: Sequence[str], out_dir: Path, beam_args: Sequence[str] = ()
) -> FilterSet:
    """Run the backfill; returns the filter set it used."""
    filters = tuple(
        f for path in sorted(filters_dir.glob("*.yaml")) for f in load_filter_file(str(path))
    )
    filter_set = FilterSet(0, filters)
    out_dir.mkdir(parents=True, exist_ok=True)
    with beam.Pipeline(options=PipelineOptions(list(beam_args))) as p:
        build(p, filter_set, alert_files, str(out_dir))
    return filter_set
