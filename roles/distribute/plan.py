"""Where the model lies in a Hugging Face cache (pure)."""

from __future__ import annotations


def model_cache_dir(hf_home: str, model: str) -> str:
    """Where the Hugging Face hub keeps `org/name` under HF_HOME."""
    return f"{hf_home}/hub/models--{model.replace('/', '--')}"
