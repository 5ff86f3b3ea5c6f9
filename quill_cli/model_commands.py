"""Model commands of the `quill` CLI: generate, pull, models, rm.

They use the runtime directly, without a server. Generated text is the only thing written to
stdout by `generate`; progress bars and errors go to stderr, so scripts can capture the
continuation as it is.
"""

from __future__ import annotations

import argparse
import sys

from runtime.errors import QuillError
from runtime.precision import PRECISION_NAMES
from runtime.progress import format_bytes
from runtime.store.aliases import DEFAULT_ALIAS, describe_aliases

from quill_cli.progress_bars import ProgressBars



def add_commands(subparsers) -> None:
    aliases = describe_aliases()
    model_help = f"alias, HF repo id[@rev], HF folder, .gguf, model.pth or checkpoint (default {DEFAULT_ALIAS})"

    gen = subparsers.add_parser(
        "generate", help="continue a prompt with a model and print only the continuation",
        description=f"Continue PROMPT and print only the generated text.\n\nAliases:\n{aliases}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gen.add_argument("--model", "--hf_model", "--checkpoint_path", dest="model",
                     default=DEFAULT_ALIAS, help=model_help)
    gen.add_argument("--prompt", required=True, help="text to continue")
    gen.add_argument("--max-tokens", "--max_tokens", "--max_new_tokens", dest="max_tokens",
                     type=int, default=128, help="tokens to generate at most (default 128)")
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    gen.add_argument("--top-k", "--top_k", dest="top_k", type=int, default=None)
    gen.add_argument("--top-p", "--top_p", dest="top_p", type=float, default=None)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--precision", default="auto", choices=PRECISION_NAMES)
    gen.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps, directml")
    _cache_arg(gen)
    gen.set_defaults(handler=cmd_generate)

    pull = subparsers.add_parser(
        "pull", help="download and convert a model into the cache",
        description=f"Download and convert MODEL once.\n\nAliases:\n{aliases}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pull.add_argument("model", nargs="?", default=DEFAULT_ALIAS, help=model_help)
    _cache_arg(pull)
    pull.set_defaults(handler=cmd_pull)

    models = subparsers.add_parser("models", help="list the models in the cache")
    _cache_arg(models)
    models.set_defaults(handler=cmd_models)

    rm = subparsers.add_parser("rm", help="remove a model from the cache")
    rm.add_argument("model", help="name as `quill models` shows it, alias, repo id or path")
    _cache_arg(rm)
    rm.set_defaults(handler=cmd_rm)


def _cache_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", "--cache_dir", dest="cache_dir", default=None,
                        help="model cache (default: QUILL_CACHE_DIR or the user cache dir)")


def _fail(err: QuillError) -> int:
    print(f"error: {err}", file=sys.stderr)
    return 1


def cmd_generate(args: argparse.Namespace) -> int:
    from runtime.engine import GenerationConfig, load_engine

    bars = ProgressBars()
    try:
        engine = load_engine(args.model, device=args.device, precision=args.precision,
                             cache_dir=args.cache_dir, progress=bars)
        bars.close()
        tok = engine.tokenizer
        ids = tok.encode(args.prompt)
        if tok.add_bos and tok.bos_id is not None:
            ids = [tok.bos_id, *ids]
        gen = GenerationConfig(max_new_tokens=args.max_tokens, temperature=args.temperature,
                               top_k=args.top_k, top_p=args.top_p, seed=args.seed)
        engine.generate(ids, gen, on_text=_write_stdout)
    except QuillError as err:
        return _fail(err)
    if sys.stdout.isatty():
        sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


def _write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def cmd_pull(args: argparse.Namespace) -> int:
    from runtime.checkpoint import read_manifest
    from runtime.store import cached_checkpoint, resolve_model
    from runtime.store.cache import dir_size

    try:
        existing = cached_checkpoint(args.model, args.cache_dir)
        if existing is not None:
            print(f"{args.model} is already in the cache at {existing}; nothing to do.")
            return 0
        bars = ProgressBars()
        path = resolve_model(args.model, cache_dir=args.cache_dir, progress=bars)
        bars.close()
        manifest = read_manifest(path)
    except QuillError as err:
        return _fail(err)
    src = manifest.source
    print(
        f"Pulled {args.model} into {path} ({format_bytes(dir_size(path))}, "
        f"{manifest.architecture}, {manifest.dtype}; from {src.get('kind')} {src.get('ref')})."
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from runtime.store import list_models
    from runtime.store.cache import resolve_cache_dir

    models = list_models(args.cache_dir)
    if not models:
        print(f"No models in {resolve_cache_dir(args.cache_dir)}. Get one with "
              f"`quill pull {DEFAULT_ALIAS}`.")
        return 0
    rows = [("NAME", "SIZE", "ARCHITECTURE", "DTYPE", "SOURCE")]
    rows += [(m.name, format_bytes(m.size_bytes), m.architecture, m.dtype, m.source) for m in models]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from runtime.store import remove_model

    try:
        path = remove_model(args.model, args.cache_dir)
    except QuillError as err:
        return _fail(err)
    print(f"Removed {args.model} ({path}).")
    return 0
