"""The plugin module that the ``mind4`` entry point names.

Mind 4 imports it to discover what the plugin provides, so it stays light:
no torch here. The record's factory is a ``"module:attribute"`` string that
Mind 4 imports only when someone actually uses the sampler.
"""

from mind4_core import hookimpl
from mind4_core.records import SamplerRecord

MIND4_PLUGIN_API = 1  # the plugin API version this plugin was written for


@hookimpl
def mind4_samplers():
    return [
        SamplerRecord(
            name="min_p",
            factory="mind4_example_minp.sampler:MinPSampler",
            array_type="torch",  # it works on the torch backend's logits
            devices={"cpu", "cuda", "mps"},
            dtypes={"float32", "bfloat16", "float16"},
            features={"temperature", "top_k", "top_p", "probabilities", "min_p"},
            description="temperature / top-k / top-p, then min-p (MinPParams.min_p)",
        )
    ]
