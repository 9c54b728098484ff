"""Inference for sequential latent-variable models: resampling, the SMC engine, and the ELBO / IWAE / FIVO bounds.

Layers, bottom up: resampling.py (pure functions over log-weights), fused_filter.py (the VRNN's and
SRNN's whole filter as one C call, filter_kernel.c), smc.py (the one engine over any
core.models.sequential.LatentStepModel, handing those two to the fused filter on the CPU), bounds.py
(the three bounds as settings of the engine, and the training loss).
"""
