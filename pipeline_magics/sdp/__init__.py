"""Spark Declarative Pipelines (Spark >= 4.1): export a spec as an SDP project, run an SDP project."""
