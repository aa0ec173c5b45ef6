"""Answering queries: parameters checked, the gate that caps queries in flight and stops
SQL past its deadline, traces, logs and metrics read from the store, and the metric
aggregation (percentiles, exponential histograms across scales, metric names).
"""
