"""Inference for sequential latent-variable models: resampling, the SMC engine, and the ELBO / IWAE / FIVO bounds.

Layers, bottom up: resampling.py (pure functions over log-weights), smc.py (the one engine over any
core.models.sequential.LatentStepModel), bounds.py (the three bounds as settings of the engine, and
the training loss).
"""
