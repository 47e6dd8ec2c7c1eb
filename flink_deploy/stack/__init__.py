"""The local stack: Kafka, Flink, the Beam job server, the expansion service and the worker pool.

Every service is a plain process that this package starts, health-checks and stops by its own
PID. ``up`` writes one run folder (``.run/`` by default, ``ALERTFLOW_RUN_DIR`` to move it) with
each service's log, its configuration and ``state.json``: the PID, the process creation time (so
a recycled PID is never signalled), the port and the log of every service started. ``down``
stops exactly those processes, each with its whole process group (the worker pool's forked SDK
workers go with it), and checks that none is left.

Each thing lives in one module, and callers import it from there (this file re-exports nothing):

- :mod:`~flink_deploy.stack.config`: :class:`StackConfig` (ports, run folder, mode, versions,
  Java; :class:`StackPorts`, its addresses alone), ``StackMode``, ``default_run_dir``,
  ``shared_data``, ``StackError`` and what ``stack.json`` says (``describe``).
- :mod:`~flink_deploy.stack.health`: the health check of each kind of service.
- :mod:`~flink_deploy.stack.services`: what each service is (command line, configuration
  files, port, log, health check, node) and the local admin token.
- :mod:`~flink_deploy.stack.kafka`: Kafka's service and the broker's topics.
- :mod:`~flink_deploy.stack.placement`: where each service runs (the loopback, or nodes).
- :mod:`~flink_deploy.stack.appjar`: the broker's application jar for application mode.
- :mod:`~flink_deploy.stack.supervisor`: processes (spawn, stop, ``state.json``), and ``up``,
  ``start_service``, ``stop_service``, ``status``, ``down``.
- :mod:`~flink_deploy.stack.runlock`: the run-folder lock (``hold``).

Services, in start order:

- ``kafka``: a single-node KRaft broker (broker and controller in one JVM) from the jars that
  ``flink_deploy/pom.xml`` fetched. Topics (transforms/topics.py) are created once it answers.
- ``flink-jobmanager``: a Flink session cluster from the PyPI ``apache-flink-libraries`` jars,
  with the web UI and REST API on ``flink_rest_port``.
- ``flink-taskmanager-N``: N TaskManagers, each registered under the resource id of its name.
- ``beam-workerpool``: the Python SDK worker pool (EXTERNAL environment) the TaskManagers call
  to run the Python steps. The pipeline's environment names one address, so on one host all
  TaskManagers share one pool; on Kubernetes each TaskManager pod has its own pool as a sidecar
  at the same localhost address (see flink_deploy/README.md).
- ``beam-expansion-service``: expands the cross-language KafkaIO transforms with the EMBEDDED
  environment (KafkaIO runs inside the TaskManager JVMs) and ``use_deprecated_read``.
- ``beam-job-server``: the Beam Flink job server that pipelines are submitted to.
- ``alertflow-control``: the control service (``alertflow serve``, ``supervisor.start_control``),
  joined by ``alertflow run``, with a local admin token kept in the run folder
  (``services.local_admin_token``).

One ``up`` or ``alertflow run`` at a time holds a run folder (``supervisor.hold``); a second one
is refused with the holder's command and PID.

Application mode (``mode="application"``, ``alertflow stack up --mode application``): the
worker pool and the expansion service start first, the broker is built into an application jar
(``appjar.build_application_jar``), and the JobManager runs it as a reactive-mode application
cluster under a fixed job id; there is no job server. ``alertflow-autoscaler``
(``supervisor.start_autoscaler``) may join the stack later, as may TaskManagers of other profiles
(``supervisor.start_taskmanager``, ``supervisor.stop_taskmanager``).
"""
