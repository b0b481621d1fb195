"""The `mixtui` command: the TUI by default, `models` and `generate` for scripts."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from mixtui import __version__
from mixtui.cli.wording import report
from mixtui.core.errors import MixtuiError, UsageError
from mixtui.core.types import DEFAULT_CONTEXT, Sampling


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one sentence (as JSON with --json), exits 2."""

    as_json = False  # set by main() when the command line asks for --json

    def error(self, message: str) -> NoReturn:
        problem = UsageError(f"{message}; see `{self.prog} --help`.", code="bad-arguments")
        raise SystemExit(report(problem, as_json=_Parser.as_json))


class Interrupted(MixtuiError):
    """ctrl+c (exit code 130)."""

    exit_code = 130


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")
    parser = _Parser(prog="mixtui", description="A terminal lab for Mixture-of-Experts models.",
                     parents=[common])
    parser.add_argument("--version", action="version", version=f"mixtui {__version__}")
    parser.add_argument("--model", help="model to open the TUI with (key, repo id or path)")
    parser.add_argument("--force", action="store_true",
                        help="load a model even if it does not fit the memory budget")
    parser.add_argument("--no-routing", action="store_true",
                        help="run a mixture-of-experts model whose family mixtui does not "
                             "know, without its routing")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    models = sub.add_parser("models", parents=[common],
                            help="list models: size, parameters, state, memory fit")
    models.add_argument("--json", action="store_true", help="print a JSON list")

    gen = sub.add_parser("generate", parents=[common],
                         help="generate text headlessly, optionally with a trace")
    gen.add_argument("--model", required=True, help="model key, Hub repo id or local directory")
    gen.add_argument("--prompt", required=True,
                     help="the prompt (a chat turn, or text to continue)")
    gen.add_argument("--max-tokens", type=int, default=Sampling.max_tokens,
                     help=f"tokens to generate ({Sampling.max_tokens})")
    gen.add_argument("--temp", type=float, default=Sampling.temperature,
                     help=f"sampling temperature ({Sampling.temperature}; 0: greedy)")
    gen.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling (1.0: off)")
    gen.add_argument("--top-k", type=int, default=0, help="top-k sampling (0: off)")
    gen.add_argument("--min-p", type=float, default=0.0, help="min-p sampling (0: off)")
    gen.add_argument("--seed", type=int, help="random seed, for repeatable sampling")
    gen.add_argument("--system", help="system prompt")
    gen.add_argument("--experts-per-token", type=int, metavar="K",
                     help="route each token to K experts instead of the model's own number")
    gen.add_argument("--max-kv-size", type=int, default=DEFAULT_CONTEXT,
                     help=f"context (KV cache) size ({DEFAULT_CONTEXT})")
    gen.add_argument("--no-routing", action="store_true", help="do not capture routing")
    gen.add_argument("--trace", type=Path, metavar="FILE",
                     help="write every token's routing as JSON Lines (docs/trace-format.md)")
    gen.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    gen.add_argument("--force", action="store_true", default=argparse.SUPPRESS,
                     help="generate even if the model does not fit the memory budget")
    _add_hub_commands(sub, common)
    _add_bench(sub, common)
    _add_analyze(sub, common)
    return parser


def _add_analyze(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    analyze = sub.add_parser(
        "analyze", parents=[common],
        help="what a trace's routing means: load, repeats, co-activation, an expert cache",
        description="Per MoE layer of a trace written by `mixtui generate --trace`: each "
                    "expert's load, the Mixtral paper's Table 5 repeat rates against their "
                    "random baselines, co-activation, router confidence, an LRU/LFU/optimal "
                    "expert-cache replay and the decode speed an offloading engine would "
                    "reach (docs/analysis.md).")
    analyze.add_argument("trace", type=Path, metavar="TRACE.jsonl", help="the trace file")
    analyze.add_argument("--compare", type=Path, metavar="OTHER.jsonl",
                         help="per layer, how often another run of the same text chose the "
                              "same experts")
    analyze.add_argument("--layers", metavar="L,...",
                         help="the MoE layers to show: 0,15,31 or 0-3 or first,middle,last "
                              "(default: all)")
    analyze.add_argument("--cache-bandwidth", type=float, metavar="GB/s",
                         help="the speed the missed experts load at (an SSD's), for tokens/s")
    analyze.add_argument("--memory-bandwidth", type=float, metavar="GB/s",
                         help="memory bandwidth for the resident weights (default: this "
                              "machine's probe from `mixtui bench`, or the Apple chip's figure)")
    analyze.add_argument("--expert-model", metavar="KEY",
                         help="project onto this registry model's expert size (default: the "
                              "trace's model)")
    analyze.add_argument("--format", choices=("table", "md", "json"), default="table",
                         help="how to print the report (table)")
    analyze.add_argument("--out", type=Path, metavar="FILE", help="write the report to FILE")


def _add_bench(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from mixtui.app import bench as b  # deferred to here: its defaults only, nothing heavy

    bench = sub.add_parser(
        "bench", parents=[common],
        help="time models side by side: speed, memory, bandwidth, optionally perplexity",
        description="Run the same prompt on each model (and each experts-per-token value), "
                    "one engine process at a time, and compare decode speed, memory and the "
                    "wait for an answer.")
    bench.add_argument("--models", required=True, metavar="K1,K2,...",
                       help="model keys (mixtui models), Hub repo ids or folders")
    bench.add_argument("--synthetic", action="store_true",
                       help="build each model from its registry geometry with random weights "
                            "in the real checkpoint's layout: nothing is downloaded")
    bench.add_argument("--layers", type=int, metavar="N",
                       help="with --synthetic: run the first N layers (and N/2) and scale time "
                            "and memory to the full depth")
    prompt = bench.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", metavar="TEXT", help="the prompt (default: a built-in one)")
    prompt.add_argument("--prompt-file", type=Path, metavar="F", help="read the prompt from F")
    bench.add_argument("--prompt-tokens", type=int, default=b.DEFAULT_PROMPT_TOKENS,
                       metavar="N", help="cut or repeat the prompt to N tokens "
                                         f"({b.DEFAULT_PROMPT_TOKENS})")
    bench.add_argument("--gen-tokens", type=int, default=b.DEFAULT_GEN_TOKENS, metavar="N",
                       help=f"tokens to generate per run ({b.DEFAULT_GEN_TOKENS})")
    bench.add_argument("--runs", type=int, default=b.DEFAULT_RUNS, metavar="R",
                       help=f"timed runs per row, after a warm-up ({b.DEFAULT_RUNS})")
    bench.add_argument("--experts-per-token", metavar="K[,K...]",
                       help="a row for each value (mixture-of-experts models)")
    bench.add_argument("--perplexity", type=Path, metavar="FILE",
                       help="score FILE's text for each row (real weights only)")
    bench.add_argument("--perplexity-tokens", type=int, default=b.DEFAULT_PERPLEXITY_TOKENS,
                       metavar="N", help=f"tokens of FILE to score ({b.DEFAULT_PERPLEXITY_TOKENS})")
    bench.add_argument("--format", choices=("table", "md", "csv", "json"), default="table",
                       help="how to print the report (table)")
    bench.add_argument("--out", type=Path, metavar="FILE", help="write the report to FILE")
    bench.add_argument("--probe", action="store_true",
                       help="measure this machine's memory bandwidth again")
    bench.add_argument("--force", action="store_true", default=argparse.SUPPRESS,
                       help="run models that do not fit the memory budget")


def _add_hub_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    download = sub.add_parser("download", parents=[common],
                              help="fetch a model's MLX weights from the Hub into the HF cache")
    download.add_argument("model", metavar="KEY|REPO", help="model key or Hub repo id (org/name)")
    download.add_argument("--revision",
                          help="branch, tag or commit (default: the model's, or main)")
    download.add_argument("--offline", action="store_true",
                          help="use the cache only and say what is missing (as HF_HUB_OFFLINE=1)")
    verify = sub.add_parser("verify", parents=[common],
                            help="check a downloaded model's files against the Hub's sizes and "
                                 "SHA-256")
    verify.add_argument("model", metavar="KEY|REPO", help="model key or Hub repo id (org/name)")
    verify.add_argument("--revision", help="branch, tag or commit (default: the model's, or main)")
    verify.add_argument("--repair", action="store_true", help="fetch the bad files again")
    verify.add_argument("--offline", action="store_true",
                        help="check against the cached record only, never the network")


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    pairs = zip(words, words[1:], strict=False)
    _Parser.as_json = ("--json" in words and bool({"generate", "models"} & set(words))
                       or bool({"bench", "analyze"} & set(words)) and ("--format=json" in words
                                                or ("--format", "json") in pairs))
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    as_json = bool(getattr(args, "json", False)) or getattr(args, "format", "") == "json"
    try:
        if args.command == "models":
            from mixtui.cli import models  # deferred: a command loads only what it needs

            return models.run(args.json)
        if args.command == "download":
            from mixtui.cli import download  # deferred: a command loads only what it needs

            return download.run(args.model, args.revision, args.offline)
        if args.command == "verify":
            from mixtui.cli import download  # deferred: a command loads only what it needs

            return download.run_verify(args.model, args.revision, args.repair, args.offline)
        if args.command == "bench":
            from mixtui.app.bench.figures import BenchRequest  # deferred: as the others
            from mixtui.cli import bench  # deferred: a command loads only what it needs

            request = BenchRequest(
                models=bench.parse_models(args.models), synthetic=args.synthetic,
                layers=args.layers, prompt=bench.read_prompt(args.prompt, args.prompt_file),
                prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens, runs=args.runs,
                experts_per_token=bench.parse_ks(args.experts_per_token),
                perplexity=args.perplexity, perplexity_tokens=args.perplexity_tokens,
                force=getattr(args, "force", False), probe=args.probe)
            return bench.run(request, args.format, args.out)
        if args.command == "analyze":
            from mixtui.cli import analyze  # deferred: a command loads only what it needs

            return analyze.run(analyze.AnalyzeArgs(
                trace=args.trace, compare=args.compare, layers=args.layers,
                cache_gbps=args.cache_bandwidth, memory_gbps=args.memory_bandwidth,
                expert_model=args.expert_model, fmt=args.format, out=args.out))
        if args.command == "generate":
            from mixtui.cli.generate import (  # deferred: a command loads only what it needs
                GenerateArgs,
                run,
            )

            return run(GenerateArgs(
                model=args.model, prompt=args.prompt, max_tokens=args.max_tokens,
                temp=args.temp, top_p=args.top_p, top_k=args.top_k, min_p=args.min_p,
                seed=args.seed, system=args.system, experts_per_token=args.experts_per_token,
                routing=not args.no_routing, trace=args.trace, json=args.json,
                max_kv_size=args.max_kv_size, force=args.force))
        from mixtui.tui.app import run_app  # deferred: a command loads only what it needs

        return run_app(args.model, force=args.force, without_routing=args.no_routing)
    except MixtuiError as exc:
        if debug:
            traceback.print_exc()
            if exc.detail:
                print(f"the traceback of the process that failed (engine or download):\n"
                      f"{exc.detail}", file=sys.stderr)
        return report(exc, as_json=as_json)
    except KeyboardInterrupt:
        return report(Interrupted("interrupted."), as_json=as_json)
    except BrokenPipeError:  # `mixtui models | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
