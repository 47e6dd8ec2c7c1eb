"""The broker as a Flink application jar, for the stack's application mode: built once per
pipeline code, versions and endpoints, and rebuilt only when one of them changes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from flink_deploy.settings import REPO_ROOT
from flink_deploy.stack.config import APPLICATION_JOB_NAME, StackConfig, StackError, describe, tail


def build_application_jar(cfg: StackConfig, log: Callable[[str], None] = print) -> Path:
    """Write the broker as a Flink application jar (``cfg.application_jar``), unless the one
    there was built from the same pipeline code, versions and stack endpoints.

    The build runs ``alertflow submit broker --output-executable`` in a child process (Beam's
    FlinkRunner starts a job server of its own for it) and takes about two minutes. KafkaIO
    splits into ``alert_partitions`` readers, the most any rescale can use.
    """
    home = cfg.application_home
    (home / "usrlib").mkdir(parents=True, exist_ok=True)
    lib = home / "lib"
    if not lib.is_symlink():
        lib.symlink_to(cfg.flink_home / "lib")
    args = ["--parallelism", str(cfg.alert_partitions), "--job-name", APPLICATION_JOB_NAME]
    key = _application_key(cfg, args)
    stamp = cfg.application_jar.with_suffix(".key")
    if cfg.application_jar.exists() and stamp.exists() and stamp.read_text() == key:
        log(f"{'application jar':<24} up to date: {cfg.application_jar}")
        return cfg.application_jar
    t0 = time.monotonic()
    build_log = cfg.run_dir / "flink" / "log" / "application-jar.log"
    build_log.parent.mkdir(parents=True, exist_ok=True)
    with open(build_log, "wb") as out:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "control_service.cli",
                "submit",
                "broker",
                *args,
                "--output-executable",
                str(cfg.application_jar),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=600,
            env={**os.environ, **cfg.environment()},
            check=False,
        )
    if result.returncode != 0 or not cfg.application_jar.exists():
        raise StackError(f"application jar: build failed; see {build_log}:\n{tail(build_log)}")
    stamp.write_text(key)
    log(f"{'application jar':<24} built in {time.monotonic() - t0:5.1f} s: {cfg.application_jar}")
    return cfg.application_jar


def _application_key(cfg: StackConfig, args: Sequence[str]) -> str:
    """What the application jar depends on: pipeline code and sizing, versions, endpoints and
    arguments."""
    described = {k: v for k, v in describe(cfg).items() if k != "taskmanagers"}
    digest = hashlib.sha256(json.dumps([described, list(args)], sort_keys=True).encode())
    sources = [
        path
        for folder in ("pipelines", "transforms")
        for path in (REPO_ROOT / folder).rglob("*.py")
    ]
    # The pipeline options come from the sizing too.
    for path in sorted([*sources, REPO_ROOT / "flink_deploy" / "sizing.py"]):
        digest.update(path.relative_to(REPO_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
