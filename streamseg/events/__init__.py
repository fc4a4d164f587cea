"""Events: rules on class area ratios with hysteresis, delivered to MQTT, a webhook and a JSONL file.

``rules`` holds the rule model and the pure state machine (``RuleState``: (time, ratio) in,
``Event`` out), ``delivery`` the three channels (each a bounded queue and a worker thread, so a
slow broker or receiver never blocks a stream), ``sink`` the output that joins them to the
pipeline. This package imports none of them eagerly: ``streamseg.config`` imports the models.
"""
