"""Anomaly detection: findings with evidence, read from the core's and the TCP analysis' facts."""
