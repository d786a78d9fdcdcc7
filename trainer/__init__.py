"""Training code for VITA-Audio-style speech LLMs: the Qwen2 + MCTP model and its stages.

May import only ``schemas`` and ``inference`` from voxlake (never ``pipelines`` or dagster).
"""
