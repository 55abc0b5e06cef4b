"""Training: losses, the training loop, resumable runs, DDP, background jobs.

``python -m cxrcore.train --config RUN.json [--job ID] [--resume]`` runs one training job; under
``torchrun --nproc-per-node N`` the same command trains with DDP.
"""
