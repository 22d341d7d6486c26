"""Chapter 11 in code: what attention costs, and how to pay less.

Each module measures one cost and removes it, saying what stays exact and what does not:

- `tiled`: the online softmax (NumPy) and `tiled_attention`, attention one tile at a time,
  never holding the (T, S) matrix (FlashAttention's forward pass), exact;
- `cost`: FLOPs and bytes of one attention call on paper, and log-log slopes;
- `memory`: the peak memory of one call, measured in a fresh process (`peak_memory`);
- `kv_cache`: the KV cache's bytes per token and per sequence, from model shapes, and measured
  in a GPT with grouped-query attention (`MultiHeadAttention(num_kv_heads=...)`);
- `quantize`: symmetric per-channel int8 for every `nn.Linear` (`quantize_int8`);
- `pruning`: head importance from gates (Michel et al., 2019), `prune_heads` that really
  slices the weights, and magnitude pruning that only writes zeros.

`python -m tfm_edu.bench scaling | int8 | prune` measures the speed.
"""

from tfm_edu.efficiency.cost import attention_flops, attention_memory, loglog_slope
from tfm_edu.efficiency.kv_cache import kv_cache_bytes, kv_cache_table, measured_cache_bytes
from tfm_edu.efficiency.memory import attention_inputs, peak_memory
from tfm_edu.efficiency.pruning import (
    head_gates,
    head_importance,
    magnitude_prune,
    prune_heads,
    pruning_curve,
)
from tfm_edu.efficiency.quantize import (
    Int8Linear,
    dequantize,
    int8_fidelity,
    linear_bytes,
    quantize_int8,
    quantize_per_channel,
    quantize_per_tensor,
)
from tfm_edu.efficiency.tiled import online_softmax_update, streaming_softmax, tiled_attention

__all__ = [
    "online_softmax_update",
    "streaming_softmax",
    "tiled_attention",
    "attention_flops",
    "attention_memory",
    "loglog_slope",
    "attention_inputs",
    "peak_memory",
    "kv_cache_bytes",
    "kv_cache_table",
    "measured_cache_bytes",
    "quantize_per_channel",
    "quantize_per_tensor",
    "dequantize",
    "Int8Linear",
    "quantize_int8",
    "linear_bytes",
    "int8_fidelity",
    "head_gates",
    "head_importance",
    "prune_heads",
    "pruning_curve",
    "magnitude_prune",
]
