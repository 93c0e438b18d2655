"""Federated learning: models, holder-side local training, aggregation, DP accounting, evaluation, model cards.

Pure core only: transport (the analysis-task channel) and secure aggregation are plugged in by the caller through
the callables of ``d4h.learning.rounds``.
"""
