# The Python image: the Beam worker-pool sidecar of every TaskManager and the autoscaler. The
# venv's runtime packages (pyproject.toml: apache-beam 2.62.0, the same Beam as the jar's) and
# the repository's pipelines/, transforms/, control_service/ and flink_deploy/, installed
# editable as `make install` does, so data files beside the code (the LSST schemas, the default
# policy) are where the code looks for them. NOT built yet (README.md).
#
#   docker build -f flink_deploy/kubernetes/images/python.Dockerfile \
#       -t registry.example.com/alertflow/python:0.1.0 .
#
# The build context is the repository root; only the folders below are copied (not .venv,
# .build or .run).
FROM python:3.11-slim
WORKDIR /opt/alertflow
COPY pyproject.toml README.md ./
COPY transforms/ transforms/
COPY pipelines/ pipelines/
COPY control_service/ control_service/
COPY flink_deploy/ flink_deploy/
RUN pip install --no-cache-dir -e . \
    && useradd --uid 10001 --no-create-home alertflow
# The worker pool forks `python` from PATH for its SDK workers: this interpreter, which has the
# packages. The workers unpickle the broker's DoFns, so pipelines/ and transforms/ must import.
ENV PYTHONPATH=/opt/alertflow PYTHONUNBUFFERED=1
USER 10001
