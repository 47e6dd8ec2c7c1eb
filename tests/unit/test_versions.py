"""The pinned versions agree: versions.env, pyproject.toml and the installed apache-beam."""

from __future__ import annotations

import re
import tomllib

import apache_beam

from flink_deploy.settings import REPO_ROOT
from flink_deploy.stack.config import read_versions


def test_beam_python_matches_the_java_jars() -> None:
    versions = read_versions()
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    pins = {
        re.split(r"[=<>\[]", dep)[0]: dep.split("==")[1]
        for dep in pyproject["project"]["dependencies"]
        if "==" in dep
    }
    assert pins["apache-beam"] == versions["BEAM_VERSION"] == apache_beam.__version__


def test_flink_minor_is_the_flink_version_minor() -> None:
    versions = read_versions()
    assert versions["FLINK_VERSION"].rsplit(".", 1)[0] == versions["FLINK_MINOR"]
