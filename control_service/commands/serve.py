"""``alertflow serve``: run the control service (127.0.0.1:5000 by default).

Configuration: ``--config FILE`` (YAML) and ``ALERTFLOW_CONTROL_*`` variables (see
control_service/config.py). The filters are read from the config topics before it listens;
if Kafka does not answer it listens all the same, not ready (``/ready`` is 503 with the reason,
filter reads and changes are 503) until it has read them, which it keeps trying in the
background. librdkafka's own log goes through Python logging, rate-limited
(transforms/kafka_clients.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from werkzeug.serving import make_server

from control_service.commands import Subparsers, add_command
from control_service.common import serve_until_stopped, start_logging
from control_service.config import ConfigError, ControlConfig, load_config


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "serve", "run the control service (REST API)", __doc__, run)
    parser.add_argument("--config", type=Path, help="YAML configuration file")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 5000)")
    return parser


def run(args: argparse.Namespace) -> int:
    start_logging()
    try:
        config = load_config(args.config, **ControlConfig.options(args))
    except ConfigError as error:
        print(f"alertflow serve: bad configuration: {error}", file=sys.stderr)
        return 2
    from control_service.app import create_app

    try:
        app = create_app(config)
    except Exception as error:  # noqa: BLE001 - report why it cannot start, in one line
        print(f"alertflow serve: cannot start: {error}", file=sys.stderr)
        return 1
    server = make_server(config.host, config.port, app, threaded=True)
    print(f"alertflow control service on http://{config.host}:{server.server_port}", flush=True)
    serve_until_stopped(server)
    return 0
