"""The stack's Kafka: the KRaft broker as a :class:`~flink_deploy.stack.services.Service` (its
server.properties, log configuration and storage format), and the broker's topics, made by
:func:`create_topics` once it answers."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from confluent_kafka import KafkaException

from flink_deploy.stack.config import StackConfig, StackError, tail
from flink_deploy.stack.health import kafka_healthy
from flink_deploy.stack.placement import Place
from flink_deploy.stack.services import Service
from transforms.kafka_clients import COMPACTED, Topic, ensure_topics
from transforms.topics import ALERT_TOPICS, CONFIG_TOPIC, DEADLETTER_TOPIC, FILTER_ERRORS_TOPIC

KAFKA_LOG4J = """\
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = File
appender.file.name = File
appender.file.type = File
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def kafka_properties(cfg: StackConfig, data: Path) -> str:
    """The KRaft broker's server.properties: one node, broker and controller, at its place's
    address, keeping its logs in ``data``."""
    host = cfg.host(Place.KAFKA)
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers={host}:{cfg.kafka_controller_port}",
            f"listeners=PLAINTEXT://{host}:{cfg.kafka_port},"
            f"CONTROLLER://{host}:{cfg.kafka_controller_port}",
            f"advertised.listeners=PLAINTEXT://{host}:{cfg.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={data}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            # Alerts are ~110 KB; a full visit burst must fit the broker's defaults.
            "message.max.bytes=10485760",
            "",
        ]
    )


def kafka_service(cfg: StackConfig) -> Service:
    """The KRaft broker; formats its storage on first start."""
    home = cfg.run_dir / "kafka"
    data = home / "data"
    props = home / "server.properties"
    home.mkdir(parents=True, exist_ok=True)
    props.write_text(kafka_properties(cfg, data))
    (home / "log4j2.properties").write_text(KAFKA_LOG4J)
    classpath = f"{cfg.kafka_jars}/*"
    if not cfg.kafka_jars.is_dir():
        raise StackError(f"kafka: jars missing in {cfg.kafka_jars}; run `make install`")
    if not (data / "meta.properties").exists():
        fmt_log = home / "format.log"
        with open(fmt_log, "wb") as out:
            result = subprocess.run(
                [
                    cfg.java,
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    "-t",
                    str(uuid.uuid4()),
                    "-c",
                    str(props),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=120,
                check=False,
            )
        if result.returncode != 0:
            raise StackError(f"kafka: storage format failed; see {fmt_log}:\n{tail(fmt_log)}")
    argv = [
        cfg.java,
        "-Xms512m",
        "-Xmx1g",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile=file:{home / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={home / 'logs'}",
        "-cp",
        classpath,
        "kafka.Kafka",
        str(props),
    ]
    healthy = kafka_healthy(cfg.bootstrap_servers)
    host, node = cfg.host(Place.KAFKA), cfg.node_plan(Place.KAFKA)
    return Service("kafka", argv, cfg.kafka_port, home / "kafka.out", healthy, {}, "", host, node)


def create_topics(cfg: StackConfig) -> None:
    """The broker's topics; existing ones are left as they are."""
    partitions = cfg.alert_partitions
    wanted = [
        *(Topic(t, partitions) for t in ALERT_TOPICS),
        Topic(CONFIG_TOPIC, 1, COMPACTED),
        Topic(DEADLETTER_TOPIC, partitions),
        Topic(FILTER_ERRORS_TOPIC),
    ]
    try:
        ensure_topics(cfg.bootstrap_servers, wanted)
    except KafkaException as err:
        raise StackError(f"kafka: cannot create the broker's topics: {err}") from err
