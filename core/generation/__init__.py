"""Generation: drawing from a model one position at a time, for every model family.

    stepper.py    the protocol every stepper follows, its sampling loop, and the stepper registry
    sampling.py   logits -> samples (temperature, greedy, top-k, Gumbel-max)
    naive.py      WaveNet, full forward per step (the reference)
    cached.py     WaveNet, ring buffers (Paine et al. 2016); `prime_rings` for every WaveNet stepper
    c_kernels.py  compiling the C kernels on first use (cached on disk), and packing weights for them
    fused_pack.py the WaveNet kernel's reduced-precision weight panels (bfloat16, int8)
    fused.py      WaveNet, the cached step and the sampling in one C kernel (fused_kernel.c), at 3 precisions
    cuda_graph.py WaveNet, the cached step replayed from a CUDA graph
    recurrent.py  the multi-scale recurrent nets (wayback): the state carried one sample at a time
    pixelcnn_rows.py    Gated PixelCNN, row by row through the model's own row passes (the reference)
    pixelcnn_cached.py  Gated PixelCNN, per-layer caches of both stacks (Ramachandran et al. 2017)
    pixelcnn_fused.py   Gated PixelCNN, both cached stacks and the sampling in one C kernel (pixelcnn_kernel.c)
    factory.py    the top: `make_stepper` by family and method, `generate` in chunks

Imports point down this list only; callers use the names re-exported here.
"""

from core.generation.factory import METHODS, default_method, generate, generate_all, make_stepper

__all__ = ["METHODS", "default_method", "generate", "generate_all", "make_stepper"]
