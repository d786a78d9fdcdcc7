"""Model code used without training: the GLM-4-Voice speech tokenizer (`inference.glm4voice`).

This package imports only `schemas` of voxlake's own packages (never
`pipelines`, never Dagster), plus torch, transformers and safetensors.
"""
