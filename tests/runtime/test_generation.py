"""The engine end to end on a tiny converted checkpoint with GPT-2's real tokenizer files.

A seeded random Llama-style model with GPT-2's 50257-token vocabulary is written with
`write_checkpoint` (native names from `hf_to_native`, tokenizer files from `tests/assets.py`) and
loaded with `Engine.load` on CPU in float32. Checked: greedy tokens equal transformers', streamed
deltas add up to the final text, stop ids / stop strings / max tokens / cancellation end
generation with the right finish_reason, seeded sampling repeats, prefix reuse prefills only the
new tokens and changes no output, and prompts that do not fit raise `ContextLengthError`.
"""

from __future__ import annotations

import pytest
import torch

from runtime.checkpoint import write_checkpoint
from runtime.config import ModelConfig
from runtime.engine import ContextLengthError, Engine, GenerationConfig
from runtime.generate import TextStream, generate
from runtime.sampling import Sampler
from runtime.weight_map import hf_to_native
from tests.assets import gpt2_encoder_files

PROSE = (
    "The quick brown fox jumps over the lazy dog. A language server answers requests from an "
    "editor: completions, hovers and diagnostics, all over a single stream of JSON messages. "
)
CODE = "def quicksort(arr):\n    if len(arr) <= 1:\n        return arr\n    pivot = arr[len(arr) // 2]\n"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    import transformers

    files = gpt2_encoder_files()
    config = transformers.LlamaConfig(
        vocab_size=50257, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=50256, eos_token_id=50256,
    )
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(0)
    hf_model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in hf_model.named_parameters():
            if "norm" not in name:
                p.normal_(0.0, 0.5 if "embed" in name else 1.5 / p.shape[1] ** 0.5)
    cfg = config.to_dict()
    target = tmp_path_factory.mktemp("ckpt") / "tiny-gpt2-llama"
    write_checkpoint(
        target,
        hf_to_native(hf_model.state_dict(), ModelConfig.from_hf_config(cfg)),
        architecture="llama",
        config=cfg,
        tokenizer_files={"vocab.json": files / "encoder.json", "merges.txt": files / "vocab.bpe"},
        source={"kind": "test", "ref": "tiny", "revision": None},
    )
    return target, hf_model


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    return Engine.load(tiny_checkpoint[0], device="cpu", precision="float32")


def _fresh(tiny_checkpoint, **kwargs) -> Engine:
    return Engine.load(tiny_checkpoint[0], device="cpu", precision="float32", **kwargs)


def test_loaded_engine_describes_itself(engine):
    assert engine.device == "cpu" and engine.dtype == "float32"
    assert engine.config.family == "llama" and engine.manifest.architecture == "llama"
    assert engine.tokenizer.vocab_size == 50257
    assert engine.max_seq_length == 512  # min(max_position_embeddings, default cap)


def test_load_reports_progress_and_checks_the_manifest(tiny_checkpoint, tmp_path):
    from runtime.checkpoint import load_tensors, read_manifest
    from runtime.errors import CheckpointError

    calls = []
    _fresh(tiny_checkpoint, progress=lambda *a: calls.append(a))
    assert calls[0] == ("load", 0, 2) and calls[-1] == ("load", 2, 2)

    source = tiny_checkpoint[0]
    manifest = read_manifest(source)
    wrong = tmp_path / "wrong-arch"
    write_checkpoint(
        wrong, load_tensors(source, manifest), architecture="phi3", config=manifest.config,
        tokenizer_files={n: source / n for n in manifest.tokenizer_files}, source=manifest.source,
    )
    with pytest.raises(CheckpointError, match="phi3"):
        Engine.load(wrong, device="cpu")


def test_greedy_equals_transformers_and_streams_the_text(engine, tiny_checkpoint):
    hf_model = tiny_checkpoint[1]
    prompt = engine.tokenizer.encode(CODE)
    hf_model.generation_config.eos_token_id = None
    hf_model.generation_config.pad_token_id = 0
    ref = hf_model.generate(torch.tensor([prompt]), max_new_tokens=32, do_sample=False)[0, len(prompt):].tolist()
    deltas: list[str] = []
    result = engine.generate(prompt, GenerationConfig(max_new_tokens=32), on_text=deltas.append)
    print(f"greedy: {result.token_ids[:10]}... text {result.text[:60]!r}")
    assert result.token_ids == ref
    assert result.finish_reason == "length" and result.prompt_tokens == len(prompt)
    assert "".join(deltas) == result.text == engine.tokenizer.decode(result.token_ids)
    assert len(deltas) > 1  # streamed, not delivered at the end


def test_stop_id_ends_generation_before_the_stop_token(engine):
    prompt = engine.tokenizer.encode(PROSE)
    first = engine.generate(prompt, GenerationConfig(max_new_tokens=20))
    stop = first.token_ids[6]
    cut = first.token_ids.index(stop)
    result = engine.generate(prompt, GenerationConfig(max_new_tokens=20, stop_ids=frozenset({stop})))
    assert result.finish_reason == "stop"
    assert result.token_ids == first.token_ids[:cut]


def test_stop_string_is_cut_and_never_streamed(engine):
    prompt = engine.tokenizer.encode(CODE)
    first = engine.generate(prompt, GenerationConfig(max_new_tokens=24))
    middle = len(first.text) // 2
    stop = first.text[middle : middle + 3]
    assert len(stop) == 3
    deltas: list[str] = []
    result = engine.generate(
        prompt, GenerationConfig(max_new_tokens=24, stop_strings=(stop,)), on_text=deltas.append
    )
    assert result.finish_reason == "stop"
    assert result.text == first.text[: first.text.index(stop)]
    assert "".join(deltas) == result.text
    assert len(result.token_ids) < len(first.token_ids)


def test_should_stop_cancels_between_tokens(engine):
    prompt = engine.tokenizer.encode(PROSE)
    first = engine.generate(prompt, GenerationConfig(max_new_tokens=12))
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 4  # once before prefill, then once after each token

    result = engine.generate(prompt, GenerationConfig(max_new_tokens=12), should_stop=should_stop)
    assert result.finish_reason == "cancelled"
    assert result.token_ids == first.token_ids[:4]
    cancelled_first = engine.generate(prompt, GenerationConfig(max_new_tokens=12), should_stop=lambda: True)
    assert cancelled_first.token_ids == [] and cancelled_first.finish_reason == "cancelled"


def test_prefix_reuse_computes_only_new_tokens(engine, tiny_checkpoint):
    tok = engine.tokenizer
    shared = tok.encode(PROSE * 3 + CODE)
    prompt_a = shared + tok.encode("left = [x for x in arr if x < pivot]\n")
    prompt_b = shared + tok.encode("# partition around the pivot\n")
    assert prompt_a[len(shared)] != prompt_b[len(shared)]
    gen = GenerationConfig(max_new_tokens=16)
    engine.reset()
    first = engine.generate(prompt_a, gen)
    assert first.computed_tokens == len(prompt_a) and first.reused_tokens == 0
    fed: list[int] = []  # token positions that actually went through the model
    hook = engine.model.tok_embeddings.register_forward_pre_hook(lambda m, args: fed.append(args[0].numel()))
    try:
        second = engine.generate(prompt_b, gen)
    finally:
        hook.remove()
    print(f"prefix reuse: prompt {len(prompt_b)} tokens, reused {second.reused_tokens}, computed {second.computed_tokens}")
    assert second.reused_tokens == len(shared)
    assert second.computed_tokens == len(prompt_b) - len(shared)
    assert fed[0] == second.computed_tokens  # the prefill
    assert fed[1:] == [1] * (len(second.token_ids) - 1)  # then one token per decode step
    assert second.token_ids == _fresh(tiny_checkpoint).generate(prompt_b, gen).token_ids

    again = engine.generate(prompt_b, gen)  # identical prompt: only the last token is re-run
    assert again.computed_tokens == 1 and again.token_ids == second.token_ids

    # A follow-up that continues the generated text reuses the generated tokens too.
    more = tok.encode(" and more")
    prompt_c = prompt_b + again.token_ids + more
    third = engine.generate(prompt_c, gen)
    assert third.computed_tokens == len(more) + 1  # the last generated token was never fed
    assert third.token_ids == _fresh(tiny_checkpoint).generate(prompt_c, gen).token_ids


@pytest.mark.parametrize("ending", ["length", "stop id", "stop string", "cancelled", "cache full"])
def test_pipelined_decode_keeps_tokens_text_and_cache(engine, ending):
    """The decode step queued ahead of reading its token (CUDA's default, forced here on the
    CPU) changes nothing a caller sees, and the cache row it wrote past a stop is never used."""
    tok = engine.tokenizer
    prompt = tok.encode(PROSE)
    ref_run = engine.generate(prompt, GenerationConfig(max_new_tokens=16))
    limit = {"max_new_tokens": 16}
    if ending == "stop id":
        limit["stop_ids"] = frozenset({ref_run.token_ids[9]})
    elif ending == "stop string":
        limit["stop_strings"] = (ref_run.text[len(ref_run.text) // 2 :][:3],)
    elif ending == "cache full":
        prompt = (prompt * (engine.max_seq_length // len(prompt) + 1))[: engine.max_seq_length - 6]

    def run(pipeline: bool):
        engine.reset()
        calls = []
        should_stop = (lambda: calls.append(1) or len(calls) > 7) if ending == "cancelled" else None
        deltas: list[str] = []
        out = generate(
            engine.model, prompt, start_pos=0, max_new_tokens=limit["max_new_tokens"], sampler=Sampler(),
            stop_ids=limit.get("stop_ids", frozenset()),
            text=TextStream(tok, limit.get("stop_strings", ()), deltas.append),
            should_stop=should_stop, pipeline=pipeline,
        )
        # Continue from the cache this left behind: prefix reuse over the ids it says it holds.
        follow = out.cached_ids + tok.encode(" Then")
        if len(follow) >= engine.max_seq_length:
            return out, "".join(deltas), None
        after = generate(
            engine.model, follow, start_pos=len(out.cached_ids), max_new_tokens=6, sampler=Sampler(),
            pipeline=pipeline,
        )
        return out, "".join(deltas), after.token_ids

    (plain, plain_text, plain_after), (piped, piped_text, piped_after) = run(False), run(True)
    expected_reason = {"stop id": "stop", "stop string": "stop", "cache full": "length"}.get(ending, ending)
    print(f"{ending}: {len(piped.token_ids)} tokens, {piped.finish_reason}, then {piped_after}")
    assert piped.finish_reason == plain.finish_reason == expected_reason
    assert piped.token_ids == plain.token_ids and piped.text == plain.text == piped_text == plain_text
    assert piped.cached_ids == plain.cached_ids
    assert piped_after == plain_after
    engine.reset()


def test_seeded_sampling_repeats_and_top_k_1_is_greedy(engine):
    prompt = engine.tokenizer.encode(PROSE)
    greedy = engine.generate(prompt, GenerationConfig(max_new_tokens=16)).token_ids
    sampled = [
        engine.generate(prompt, GenerationConfig(max_new_tokens=16, temperature=1.5, seed=s)).token_ids
        for s in (7, 7, 8)
    ]
    assert sampled[0] == sampled[1]
    assert sampled[0] != sampled[2] and sampled[0] != greedy
    top1 = engine.generate(prompt, GenerationConfig(max_new_tokens=16, temperature=1.5, top_k=1, seed=3))
    tiny_p = engine.generate(prompt, GenerationConfig(max_new_tokens=16, temperature=1.5, top_p=1e-6, seed=3))
    assert top1.token_ids == greedy and tiny_p.token_ids == greedy


def test_sampler_restricts_support():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    top2 = Sampler(temperature=1.0, top_k=2).probs(logits)[0]
    assert (top2[2:] == 0).all() and (top2[:2] > 0).all()
    # softmax of the logits is about [.64, .24, .09, .03, .01]: top_p 0.7 keeps the first two.
    nucleus = Sampler(temperature=1.0, top_p=0.7).probs(logits)[0]
    assert (nucleus[2:] == 0).all() and (nucleus[:2] > 0).all()
    draws = Sampler(temperature=1.0, top_k=2, seed=0)
    seen = {int(draws(logits)) for _ in range(200)}
    assert seen == {0, 1}
    assert int(Sampler()(logits)) == 0


def test_prompts_that_do_not_fit(tiny_checkpoint):
    small = _fresh(tiny_checkpoint, max_seq_length=64)
    prompt = small.tokenizer.encode(PROSE * 3)
    assert len(prompt) > 64
    with pytest.raises(ContextLengthError, match="64"):
        small.generate(prompt[:64], GenerationConfig(max_new_tokens=4))
    with pytest.raises(ContextLengthError):
        small.generate([], GenerationConfig())
    # 60 prompt tokens leave room for 5 more: generation ends early with "length".
    result = small.generate(prompt[:60], GenerationConfig(max_new_tokens=20))
    assert len(result.token_ids) == 5 and result.finish_reason == "length"


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_weight_only_precisions_quantize_every_layer(engine, tiny_checkpoint, precision):
    from runtime.quantize import Int4Linear, Int8Linear

    quantized = Engine.load(tiny_checkpoint[0], device="cpu", precision=precision)
    kind = Int8Linear if precision == "int8" else Int4Linear
    assert quantized.dtype == precision
    assert any(isinstance(m, kind) for m in quantized.model.modules())
    assert not any(type(m) is torch.nn.Linear for m in quantized.model.layers.modules())
    prompt = quantized.tokenizer.encode(CODE)
    gen = GenerationConfig(max_new_tokens=8, stop_ids=frozenset())
    reference = _fresh(tiny_checkpoint).generate(prompt, gen).token_ids
    # Random tiny weights leave near-ties after the first token; fidelity on real weights is
    # measured in test_quantize.py and benchmarks/cpu.py.
    assert quantized.generate(prompt, gen).token_ids[0] == reference[0]
