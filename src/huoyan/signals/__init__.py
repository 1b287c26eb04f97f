"""Sensor channels: time series read from files or live sources, cut into windows,
described by condition-monitoring features, and judged by the ``vibration`` detector
kind (learned from healthy running only, with a bearing-fault diagnosis)."""
