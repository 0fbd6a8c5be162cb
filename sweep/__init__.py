"""sweep: plan, launch and track VLM scaling-law sweeps (LLM size x visual tokens x compressor).

Run it as ``python -m sweep [plan|run|status|fit] [hydra overrides]``.
"""

__version__ = "0.1.0"
