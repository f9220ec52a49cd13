"""Per-connection analyzers over the core: TCP analysis, RTT, the packet log, anomaly detection."""
