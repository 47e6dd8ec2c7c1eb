"""The options every pipeline reaches Flink with (pipelines/flink.py)."""

from __future__ import annotations

import logging

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.flink import RUNNER_FLAGS_FILTER, ClusterEndpoints, flink_args

ENDPOINTS = ClusterEndpoints(
    "127.0.0.1:9092", "127.0.0.1:8099", "127.0.0.1:8097", "localhost:50000", "http://127.0.0.1:8081"
)
LOGGER = "apache_beam.options.pipeline_options"


def unknown_option_warnings(args: list[str], caplog: pytest.LogCaptureFixture) -> list[str]:
    logger = logging.getLogger(LOGGER)
    logger.addFilter(RUNNER_FLAGS_FILTER)
    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            PipelineOptions(args).get_all_options(retain_unknown_options=True)
    finally:
        logger.removeFilter(RUNNER_FLAGS_FILTER)
    return [r.getMessage() for r in caplog.records if "Unknown pipeline options" in r.getMessage()]


def test_our_runner_flags_do_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    args = flink_args(ENDPOINTS, "job", 2)
    assert "--faster_copy" in args and "--checkpointing_interval=5000" in args
    assert unknown_option_warnings(args, caplog) == []


def test_a_flag_of_someone_elses_still_warns(caplog: pytest.LogCaptureFixture) -> None:
    warned = unknown_option_warnings([*flink_args(ENDPOINTS, "job", 2), "--fastr_copy"], caplog)
    assert len(warned) == 1 and "--fastr_copy" in warned[0]
