"""The same MiniLM, made cheaper without retraining: `python -m tfm_edu.bench int8 | prune`.

Chapter 11's two compressions of all-MiniLM-L6-v2, each timed with `sentence_speed` on the same
held-out sentences as the whole float32 model, and each compared with it by the cosine of their
sentence vectors:
- `bench_int8`: our int8 linear layers (`tfm_edu.efficiency.quantize`), weights only or the
  matrix product too: bytes, speed, cosine;
- `bench_prune`: half of every layer's heads really removed (`prune_heads`), against half of
  every Linear's weights zeroed (`magnitude_prune`): parameters, zeros, bytes, time, cosine.

`_int8_verdict` and `_prune_verdict` read each table from its own numbers.
"""

from __future__ import annotations

import torch

from tfm_edu.bench.method import clock_text, format_table, paired_ratio, where_text
from tfm_edu.bench.student import sentence_bench_args, sentence_speed

__all__ = ["bench_int8", "bench_prune"]


def bench_int8(argv: list[str] | None = None) -> list[dict[str, str]]:
    """Chapter 11: all-MiniLM-L6-v2 in float32 and with our int8 linear layers
    (`tfm_edu.efficiency.quantize`) embedding the same held-out sentences: sentences per second,
    the linear layers' bytes, and the cosine between float32 and int8 embeddings."""
    from tfm_edu.efficiency.quantize import int8_fidelity, quantize_int8
    from tfm_edu.pretrained import load_minilm

    _, sentences, repeats, threads = sentence_bench_args("int8", argv, quick=16)
    model, tokenizer = load_minilm()
    models = {
        "float32": model,
        "int8 weights": quantize_int8(model),
        "int8 matmul": quantize_int8(model, int8_matmul=True),
    }
    t = sentence_speed(models, tokenizer, sentences, repeats=repeats, threads=threads)
    speeds = {name: paired_ratio(t["float32"], t[name])[0] for name in models}  # float / it
    fidelity = {
        name: int8_fidelity(model, tokenizer, sentences, quantised=models[name])
        for name in ("int8 weights", "int8 matmul")
    }
    float_bytes = fidelity["int8 weights"]["bytes_float"]
    rows = [
        {
            "model": name,
            "linear MB": f"{(result['bytes_int8'] if result else float_bytes) / 1e6:.1f}",
            "of float32": f"{result['fraction'] if result else 1:.0%}",
            "sentences / s": f"{len(sentences) / t[name].median:.1f}",
            "speed vs float32": f"{speeds[name]:.2f}x",
            "cosine mean": f"{result['mean_cosine']:.4f}" if result else "1",
            "cosine min": f"{result['min_cosine']:.4f}" if result else "1",
        }
        for name, result in (("float32", None), *fidelity.items())
    ]
    cpu = torch.device("cpu")
    print(
        f"{len(sentences)} held-out sentences of the help texts, embedded by all-MiniLM-L6-v2 in "
        f"batches of 64 sorted by length, {where_text(cpu, threads)}, "
        f"{torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}"
    )
    print(
        f"{repeats} interleaved rounds after one warm-up, {clock_text(cpu, threads)}; speeds "
        "from the median time, speed vs float32 the median of round-by-round ratios.\n"
        "int8 weights: dequantised on every call, then a float32 matmul; int8 matmul: the "
        "inputs quantised per token too, int8 x int8 -> int32 sums (torch._int_mm); "
        "cosine: int8 vs float32 sentence embeddings\n"
    )
    print(format_table(rows))
    print("\n" + _int8_verdict(speeds, fidelity))
    return rows


def _int8_verdict(speeds: dict[str, float], fidelity: dict[str, dict[str, float]]) -> str:
    """The lines that read bench_int8's table, from its numbers."""
    # Read as printed (two decimals), so that "0.95x" is never called "slower".
    weights, matmul = round(speeds["int8 weights"], 2), round(speeds["int8 matmul"], 2)
    lines = [
        f"the int8 linear layers hold {fidelity['int8 weights']['fraction']:.0%} of float32's "
        "bytes (1 byte per weight + one float32 step per output row + float32 biases)"
    ]
    if weights < 0.95:
        why = (
            "slower: dequantising every call costs more than the smaller weights save (the "
            "multiplication is still float32)"
        )
    elif weights <= 1.05:
        why = (
            "about the same: dequantising costs little, but the multiplication is still "
            "float32, so int8 weights save bytes held and moved, not arithmetic"
        )
    else:
        why = "faster: reading a quarter of the weight bytes saves more than dequantising costs"
    lines.append(f"int8 weights run at {weights:.2f}x the speed of float32, {why}")
    if matmul > 1.05:
        why = "faster: this CPU multiplies int8 faster than float32 (int8 arithmetic, int32 sums)"
    else:
        why = "no faster: quantising the inputs on every call eats what the int8 products save"
    lines.append(f"int8 matmul runs at {matmul:.2f}x the speed of float32, {why}")
    for name, result in fidelity.items():
        lines.append(
            f"{name}: cosine with float32 {result['mean_cosine']:.4f} on average, "
            f"{result['min_cosine']:.4f} at worst over {result['sentences']} sentences "
            f"({'at least' if result['min_cosine'] >= 0.99 else 'below'} 0.99)"
        )
    return "\n".join(lines)


def bench_prune(argv: list[str] | None = None) -> list[dict[str, str]]:
    """Chapter 11: all-MiniLM-L6-v2 whole, with half of every layer's heads really removed
    (`tfm_edu.efficiency.pruning.prune_heads`), and with half of every Linear's weights zeroed
    (`magnitude_prune`), embedding the same held-out sentences: parameters, nonzero parameters,
    bytes, time, and the cosine of each one's sentence vectors with the whole model's."""
    from tfm_edu.efficiency import pruning
    from tfm_edu.models.bert import sentence_embeddings
    from tfm_edu.pretrained import load_minilm

    _, sentences, repeats, threads = sentence_bench_args("prune", argv, quick=32)
    cpu = torch.device("cpu")
    full, tokenizer = load_minilm()
    L, H = full.config.num_layers, full.config.num_heads
    # Heads H/2 .. H-1 of every layer. Every head has the same shape, so whichever half goes the
    # pruned matrices have the same sizes and the time is the same; only the accuracy depends on
    # the choice (`python -m tfm_edu.train prune-heads` measures that where there is a score).
    models = {
        "full": full,
        "heads pruned": pruning.prune_heads(full, {layer: range(H // 2, H) for layer in range(L)}),
        "weights zeroed": pruning.magnitude_prune(full, 0.5),
    }
    t = sentence_speed(models, tokenizer, sentences, repeats=repeats, threads=threads)
    with torch.inference_mode():
        vectors = {name: sentence_embeddings(m, tokenizer, sentences) for name, m in models.items()}
    ratios = {name: paired_ratio(t[name], t["full"]) for name in models}  # time / full's
    counts = {
        name: (pruning.count_parameters(m), pruning.count_zeros(m), pruning.parameter_bytes(m))
        for name, m in models.items()
    }
    cosines = {n: torch.cosine_similarity(v, vectors["full"]).mean() for n, v in vectors.items()}
    rows = [
        {
            "model": name,
            "heads": str(sum(layer.self_attn.num_heads for layer in model.encoder.layers)),
            "parameters": f"{counts[name][0]:,}",
            "nonzero": f"{counts[name][0] - counts[name][1]:,}",
            "MB": f"{counts[name][2] / 1e6:.1f}",
            "sentences / s": f"{len(sentences) / t[name].median:.1f}",
            "time / full": f"{ratios[name][0]:.2f} ({ratios[name][1]:.2f}-{ratios[name][2]:.2f})",
            "cosine to full": f"{cosines[name]:.3f}",
        }
        for name, model in models.items()
    ]
    print(
        f"all-MiniLM-L6-v2 ({L} layers x {H} heads): whole; heads {H // 2}-{H - 1} of every layer "
        "removed (prune_heads); 50 % of every Linear's weights zeroed by magnitude "
        f"(magnitude_prune). {len(sentences)} held-out sentences of the help texts, batches of 64 "
        f"sorted by length, float32, {where_text(cpu, threads)}, torch {torch.__version__}"
    )
    print(
        f"{repeats} interleaved rounds after one warm-up, {clock_text(cpu, threads)}; time / "
        "full: the median of round-by-round ratios (quartiles); cosine to full: the mean cosine "
        "of each sentence's vector with the whole model's\n"
    )
    print(format_table(rows))
    layer_weights = {name: pruning.count_parameters(m.encoder) for name, m in models.items()}
    print("\n" + _prune_verdict(ratios, counts, layer_weights, cosines))
    return rows


def _prune_verdict(
    ratios: dict[str, tuple[float, float, float]],
    counts: dict[str, tuple[int, int, int]],
    layer_weights: dict[str, int],
    cosines: dict[str, float],
) -> str:
    """The lines that read bench_prune's table, from its numbers."""
    (heads, q1, q3), zeroed = ratios["heads pruned"], ratios["weights zeroed"]
    fewer = 1 - layer_weights["heads pruned"] / layer_weights["full"]
    zeros = counts["weights zeroed"][1] - counts["full"][1]
    same = counts["weights zeroed"][0::2] == counts["full"][0::2]
    return "\n".join(
        [
            f"heads pruned: {fewer:.1%} fewer weights in the layers (the attention projections "
            f"lose half their rows or columns; the feed-forward layers keep theirs) and "
            f"{heads:.2f}x the time (quartiles {q1:.2f}-{q3:.2f}): "
            + (
                "faster, because smaller matrices are less work."
                if q3 < 1
                else "not clearly faster this time: a loaded machine? Try more --repeats."
            ),
            f"weights zeroed: {zeros:,} more zeros ({zeros / counts['full'][0]:.1%} of all "
            f"parameters), {'the same' if same else 'a different'} parameter count and bytes, "
            f"and {zeroed[0]:.2f}x the time (quartiles {zeroed[1]:.2f}-{zeroed[2]:.2f}): "
            + (
                "no faster: a dense matrix product multiplies a zero like any other number."
                if zeroed[1] <= 1 <= zeroed[2] or zeroed[0] > 0.95
                else "faster, though a dense product does the same work: noise? Try more --repeats."
            ),
            f"cosine to full: {cosines['heads pruned']:.3f} and {cosines['weights zeroed']:.3f}: "
            "without retraining both change the sentence vectors; which heads to remove "
            "changes that, not the time.",
        ]
    )
