# The JobManager and TaskManager image: Flink 1.19.3 on Java 17 (flink_deploy/versions.env)
# with the broker's application jar in usrlib, where StandaloneApplicationClusterEntryPoint
# (and the operator's local:// jarURI) find it. NOT built yet (README.md).
#
#   docker build -f flink_deploy/kubernetes/images/flink.Dockerfile \
#       -t registry.example.com/alertflow/flink:0.1.0 .build/kubernetes
#
# The build context is the folder holding alertflow-broker.jar (README.md: "The job jar").
FROM flink:1.19.3-scala_2.12-java17
COPY --chown=flink:flink alertflow-broker.jar /opt/flink/usrlib/alertflow-broker.jar
