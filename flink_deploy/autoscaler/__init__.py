"""The autoscaler: watch the load, decide the number and profile of TaskManagers, apply it.

- :mod:`.model`: the records (policy, observation, TaskManager, decision, scale-up check);
- :mod:`.policy`: the scaling policy, validated YAML (:func:`load_policy`);
- :mod:`.observe`: one :class:`Observation` of the load (Kafka lag, Flink busy/backpressure);
- :mod:`.decide`: the pure decision engine (:class:`Autoscaler`);
- :mod:`.drivers`: how a decision reaches the cluster (:class:`Driver`, Kubernetes);
- :mod:`.service`: the autoscaler as a service with the common control API, and its loop.
"""
