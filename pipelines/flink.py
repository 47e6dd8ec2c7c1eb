"""How a pipeline reaches the Flink cluster: the stack's endpoints, the runner options, the
options every job's command line has (:func:`job_parser`), and KafkaIO on the stack's Kafka
(:func:`read_from_kafka`, :func:`write_to_kafka`).

Every pipeline is submitted through the Beam job server (PortableRunner) with the EXTERNAL
environment (the worker pool beside the TaskManagers), in streaming mode with checkpointing on
and a fixed max parallelism, so that a later rescale restores keyed state.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
from apache_beam.io.kafka import ReadFromKafka, WriteToKafka
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from flink_deploy import sizing
from flink_deploy.stack.config import StackConfig, default_run_dir

# Fixed once: a job's keyed state restores only under the same max parallelism.
MAX_PARALLELISM = 32
CHECKPOINT_INTERVAL_MS = 5000


@dataclass(frozen=True)
class ClusterEndpoints:
    """The addresses a pipeline needs, as `alertflow stack up` wrote them to stack.json."""

    bootstrap_servers: str
    job_endpoint: str
    expansion_service: str
    worker_pool: str
    flink_rest_url: str

    @classmethod
    def from_run_dir(cls, run_dir: Path | None = None) -> ClusterEndpoints:
        run_dir = run_dir or default_run_dir()
        path = run_dir / "stack.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: start the stack with `alertflow stack up`")
        described = json.loads(path.read_text())
        return cls(
            bootstrap_servers=described["bootstrap_servers"],
            job_endpoint=described["job_endpoint"],
            expansion_service=described["expansion_service"],
            worker_pool=described["worker_pool"],
            flink_rest_url=described["flink_rest_url"],
        )


# Measured in benchmarks/bench_capacity.py (docs/benchmarks.md, "Capacity"); sizes from
# flink_deploy/sizing.py.
TUNED_OPTIONS = (
    # Without these Flink copies every record between the chained operators by encoding and
    # decoding it (a sixth of the TaskManager's CPU in the JFR profile).
    "--faster_copy",
    "--object_reuse",
    # Otherwise the outputs of a bundle open at a checkpoint, whole alerts, are written into
    # the checkpoint.
    "--finish_bundle_before_checkpointing",
    f"--sdk_worker_parallelism={sizing.SDK_WORKERS}",
    f"--max_bundle_size={sizing.MAX_BUNDLE_SIZE}",
    f"--max_bundle_time_mills={sizing.MAX_BUNDLE_TIME_MS}",
    f"--experiments=data_buffer_size_limit={sizing.FN_DATA_BUFFER_BYTES}",
)


class _RunnerFlagsFilter(logging.Filter):
    """Drops Beam's "Unknown pipeline options received" warning when every flag it names is
    one of ours for the Flink runner (Python's SDK does not know them and warns at each
    cross-language expansion); a flag of anyone else's, a typo say, still warns."""

    PREFIX = "Unknown pipeline options received: "
    OURS = frozenset(flag.split("=")[0] for flag in (*TUNED_OPTIONS, "--checkpointing_interval"))

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(self.PREFIX):
            return True
        flags = message.removeprefix(self.PREFIX).split(". Ignore if flags")[0].split(",")
        return not all(flag.split("=")[0] in self.OURS for flag in flags)


RUNNER_FLAGS_FILTER = _RunnerFlagsFilter()


def flink_args(
    endpoints: ClusterEndpoints,
    job_name: str,
    parallelism: int,
    checkpoint_interval_ms: int = CHECKPOINT_INTERVAL_MS,
) -> list[str]:
    """Pipeline options for a streaming job on the stack's Flink cluster."""
    return [
        "--runner=PortableRunner",
        f"--job_endpoint={endpoints.job_endpoint}",
        "--environment_type=EXTERNAL",
        f"--environment_config={endpoints.worker_pool}",
        "--streaming",
        f"--job_name={job_name}",
        f"--parallelism={parallelism}",
        f"--max_parallelism={MAX_PARALLELISM}",
        f"--checkpointing_interval={checkpoint_interval_ms}",
        # KafkaIO as a runner-native unbounded source: the portable Flink runner does not
        # checkpoint or split Java SDF reads (apache/beam#20979).
        "--experiments=use_deprecated_read",
        *TUNED_OPTIONS,
    ]


def kafka_consumer_config(bootstrap_servers: str, group_id: str) -> dict[str, str]:
    """Consumer settings for KafkaIO reads whose offsets are committed on checkpoint.

    Recovery uses the offsets in Flink's checkpoints; the committed group offsets are what
    monitoring (consumer lag) and a fresh start without a checkpoint see.
    """
    return {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": "false",
        **sizing.KAFKA_CONSUMER,
    }


def read_from_kafka(
    endpoints: ClusterEndpoints, topics: Sequence[str], group_id: str, *, with_metadata: bool
) -> ReadFromKafka:
    """KafkaIO over ``topics`` of the stack's Kafka as consumer group ``group_id``, its offsets
    committed on checkpoint (:func:`kafka_consumer_config`); ``with_metadata``: each record
    with its topic, partition and offset."""
    return ReadFromKafka(
        consumer_config=kafka_consumer_config(endpoints.bootstrap_servers, group_id),
        topics=list(topics),
        with_metadata=with_metadata,
        commit_offset_in_finalize=True,
        expansion_service=endpoints.expansion_service,
    )


def write_to_kafka(endpoints: ClusterEndpoints, topic: str) -> WriteToKafka:
    """KafkaIO writing (key, value) byte pairs to ``topic`` of the stack's Kafka."""
    return WriteToKafka(
        producer_config={"bootstrap.servers": endpoints.bootstrap_servers},
        topic=topic,
        expansion_service=endpoints.expansion_service,
    )


def executable_args(
    endpoints: ClusterEndpoints,
    executable: Path,
    cfg: StackConfig,
    job_name: str,
    parallelism: int,
) -> list[str]:
    """Pipeline options that write the job as a Flink application jar instead of running it.

    FlinkRunner starts a job server of its own from ``cfg``'s job-server jar, which copies itself
    into ``executable`` with the pipeline added; ``[auto]`` makes the jar run in whatever
    cluster starts it (a real address would make it submit remotely from the JobManager).
    ``parallelism`` only sets how many readers KafkaIO splits into; in reactive mode Flink
    runs every operator at the number of slots it has.
    """
    session = flink_args(endpoints, job_name, parallelism)
    return [
        "--runner=FlinkRunner",
        "--flink_master=[auto]",
        f"--flink_version={cfg.versions['FLINK_MINOR']}",
        f"--flink_job_server_jar={cfg.job_server_jar}",
        f"--output_executable_path={executable}",
        *(a for a in session if not a.startswith(("--runner=", "--job_endpoint="))),
    ]


def job_parser(description: str | None, job_name: str, parallelism: int) -> argparse.ArgumentParser:
    """A pipeline's command line with the options every job has: ``--job-name`` and its
    consumer ``--group-id`` (both ``job_name`` by default), and ``--parallelism``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--group-id", default=job_name)
    parser.add_argument("--job-name", default=job_name)
    parser.add_argument("--parallelism", type=int, default=parallelism)
    return parser


def submit(
    wire: Callable[[beam.Pipeline, ClusterEndpoints], None],
    job_name: str,
    parallelism: int,
    beam_args: Sequence[str] = (),
    executable: Path | None = None,
) -> PipelineResult:
    """Build a pipeline with ``wire`` and submit it to the stack's Flink cluster.

    Returns once the job server has accepted the job; the streaming job runs on in Flink.
    With ``executable``, writes the job as an application jar there instead (see
    :func:`executable_args`) and returns when the jar is complete.
    """
    endpoints = ClusterEndpoints.from_run_dir()
    if executable is None:
        args = flink_args(endpoints, job_name, parallelism)
    else:
        cfg = StackConfig.from_env()
        args = executable_args(endpoints, executable, cfg, job_name, parallelism)
        # FlinkRunner runs `java -jar` from PATH: make that our Java 17.
        java_bin = str(Path(cfg.java).parent)
        os.environ["PATH"] = f"{java_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    logging.getLogger("apache_beam.options.pipeline_options").addFilter(RUNNER_FLAGS_FILTER)
    p = beam.Pipeline(options=PipelineOptions(args + list(beam_args)))
    wire(p, endpoints)
    result = p.run()
    if executable is not None:
        result.wait_until_finish()
    return result
