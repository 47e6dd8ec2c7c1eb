"""``alertflow autoscale``: run the autoscaler service (127.0.0.1:5001 by default).

Every ``interval_s`` of the policy it observes the broker's load (consumer lag of
``--group-id`` on ``--topics``, records in/out, busy time and backpressure from Flink), decides
with the policy (``--policy FILE``, YAML; see flink_deploy/autoscaler/policy.py) and applies the
decision through the driver: ``local`` (TaskManager processes on this machine, the stack of
`alertflow stack up`) or ``kubernetes`` (the TaskManager Deployments or the FlinkDeployment,
from inside the cluster). Decisions are served at ``GET /api/v1/scaling``; ``PUT`` changes the
policy. The service's settings: the options, over ``ALERTFLOW_AUTOSCALER_<FIELD>`` variables
(flink_deploy/autoscaler/service.py); API keys from ``ALERTFLOW_AUTOSCALER_API_KEYS`` (else
``ALERTFLOW_CONTROL_API_KEYS``), as ``token:user:role`` items separated by commas. Ctrl-C or
SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from control_service.commands import Subparsers, add_command, add_listen_options
from control_service.common import serve_until_stopped, start_logging
from flink_deploy.stack.config import HOST
from transforms.topics import ALERT_TOPICS


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "autoscale", "run the autoscaler service", __doc__, run)
    parser.add_argument("--policy", type=Path, required=True, help="scaling policy (YAML)")
    parser.add_argument("--driver", choices=("local", "kubernetes"), default="local")
    add_listen_options(parser, HOST, 5001)
    parser.add_argument(
        "--group-id",
        default="alertflow-broker",
        help="the broker's consumer group (default %(default)s)",
    )
    parser.add_argument("--topics", default=",".join(ALERT_TOPICS), help="comma-separated")
    parser.add_argument("--job-name", help="the Flink job to watch (default: the running one)")
    parser.add_argument("--bootstrap", help="Kafka (default: the local stack's)")
    parser.add_argument("--flink-rest-url", help="Flink REST API (default: the local stack's)")
    k8s = parser.add_argument_group("kubernetes driver")
    k8s.add_argument(
        "--k8s-mode", choices=("deployments", "flinkdeployment"), default="deployments"
    )
    k8s.add_argument("--k8s-name", default="alertflow", help="the FlinkDeployment's name")
    k8s.add_argument("--namespace", help="default: the pod's own")
    parser.add_argument("--audit-log", type=Path, help="JSON lines of policy changes")
    return parser


def run(args: argparse.Namespace) -> int:
    from flink_deploy.autoscaler.drivers import DriverError, KubernetesDriver
    from flink_deploy.autoscaler.observe import Observer
    from flink_deploy.autoscaler.policy import PolicyError, load_policy_file
    from flink_deploy.autoscaler.service import AutoscalerConfig, create_app
    from flink_deploy.settings import ConfigError
    from flink_deploy.stack.config import StackConfig, StackError

    try:
        policy = load_policy_file(args.policy)
    except (PolicyError, OSError) as error:
        print(f"alertflow autoscale: bad policy:\n{error}", file=sys.stderr)
        return 2
    try:
        config = AutoscalerConfig.from_options(args, bootstrap_servers="bootstrap")
    except ConfigError as error:
        print(f"alertflow autoscale: bad configuration: {error}", file=sys.stderr)
        return 2
    start_logging()  # what logs is from here on: the driver, the observer's Kafka clients
    try:
        if args.driver == "local":
            from flink_deploy.autoscaler.local import LocalDriver

            driver: Any = LocalDriver(StackConfig.from_env())
        else:
            driver = KubernetesDriver(
                policy.profiles, mode=args.k8s_mode, name=args.k8s_name, namespace=args.namespace
            )
    except (DriverError, StackError, ValueError, OSError) as error:
        print(
            f"alertflow autoscale: cannot start the {args.driver} driver: {error}", file=sys.stderr
        )
        return 1
    observer = Observer(
        config.bootstrap_servers,
        config.group_id,
        config.topics,
        config.flink_rest_url,
        job_name=config.job_name,
    )
    app = create_app(policy, observer, driver, config, start_loop=True)
    loop = app.extensions["alertflow.scaling"]
    server = make_server(config.host, config.port, app, threaded=True)
    print(
        f"alertflow autoscaler on http://{config.host}:{server.server_port} "
        f"({args.driver} driver, every {policy.interval_s:g} s)",
        flush=True,
    )
    try:
        serve_until_stopped(server)
    finally:
        loop.stop()
    return 0
