"""cycleseg command line: parses options and delegates. No logic lives here.

Every ``UserError`` becomes one line on stderr and exit code 2, and so does every input error Click finds.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .model.errors import Interrupted, UserError


def _user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a ``UserError`` into ``error: <message>`` and exit 2, and Ctrl-C into one line saying what was kept
    and exit 130, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            click.echo(f"error: {_one_line(str(e))}", err=True)
            sys.exit(2)
        except Interrupted as e:
            click.echo(f"interrupted: {_one_line(str(e))}", err=True)
            sys.exit(130)
        except KeyboardInterrupt:  # a command with nothing of its own to keep: every file it writes is whole
            click.echo("interrupted: no file was left half-written (each is written whole, or not at all); run the "
                       "command again", err=True)
            sys.exit(130)

    return wrapper


def _one_line(message: str) -> str:
    """The message on one line whatever the user typed into it: unprintable characters (line breaks
    included) shown escaped, as Python writes them."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cycleseg")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _examples(*lines: str) -> str:
    """A command's help epilog: example lines, shown verbatim (``\\b`` stops Click's rewrapping)."""
    return "\b\nExamples:\n" + "\n".join(f"  {ln}" for ln in lines)


class _Cli(click.Group):
    """Click's own input errors (a missing argument, a bad option value) in the same format as ours: one line
    naming the problem and where the help is, exit 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("standalone_mode", None)
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as e:  # a bare `cycleseg`: the help, as asked
            click.echo(e.ctx.get_help())
            sys.exit(0)
        except click.ClickException as e:
            where = f" (see '{e.ctx.command_path} --help')" if getattr(e, "ctx", None) is not None else ""
            click.echo(f"error: {_one_line(e.format_message())}{where}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(130)


class _MethodOption(click.Option):
    """``--method``, whose help names the built-in methods (``config.BUILTIN_METHODS``) when it is shown: the
    names' owner is not imported at start-up, which ``sweep --list`` keeps quick."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from .model.config import BUILTIN_METHODS

        self.help = f"{', '.join(BUILTIN_METHODS)} (or one a plugin registers)."
        return super().get_help_record(ctx)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=_examples("cycleseg sweep", "cycleseg report runs/demo", "cycleseg debug --preset tiny --epochs 2",
                              "cycleseg confirm runs/lambdas --seeds 5   # a search's winners on fresh seeds"))
@click.version_option(_version(), "--version", prog_name="cycleseg", message="%(prog)s %(version)s")
def main() -> None:
    """Semi-supervised segmentation with CycleGAN (Mondal et al. 2019): sweeps on Ray."""


@main.command(epilog=_examples(
    "cycleseg debug --dataset digits --method cyclegan --preset tiny --epochs 2 --out runs/x",
    "cycleseg debug --config best.yaml --epochs 1",
    "cycleseg debug --out runs/x --resume"))
@click.option("--config", "config_file", type=click.Path(path_type=Path),
              help="Resolved config YAML (e.g. from best-config).")
@click.option("--dataset", help="digits (built in), voc, cityscapes, acdc.")
@click.option("--data-root", help="Folder with the dataset's on-disk layout.")
@click.option("--method", cls=_MethodOption)
@click.option("--labeled-fraction", type=float, help="Share of labeled training images, in (0, 1].")
@click.option("--seed", type=int, help="Fixes the labeled subset, init and batch order.")
@click.option("--epochs", type=int, help="Training epochs.")
@click.option("--preset", help="Network size: paper, small, tiny.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Any config field, e.g. --set lambda_2=0 or --set d_s_input=straight_through; every field with "
              "its range, default and meaning: docs/config.md.")
@click.option("--out", type=click.Path(), default="runs/debug", show_default=True, help="Output folder.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --out.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where to train (default auto).")
@_user_errors
def debug(config_file: Path | None, sets: tuple[str, ...], out: str, resume: bool, **opts: Any) -> None:
    """Train one trial locally, without Ray, through the same entry point a sweep worker calls.

    With no options on a machine without a GPU: a quick sanity run (tiny networks, 2 epochs).

    Config fields (docs/config.md): the data, the method and its weights lambda_1..lambda_5, the GAN levers
    (recipe, d_s_input, gumbel_tau, instance_noise, instance_noise_anneal, real_label_smoothing, discriminator,
    d_depth, d_norm, d_lr_ratio, pool_size, pool_prob, unsup_warmup_epochs, unsup_rampup_epochs), the
    networks, the optimiser, evaluation and execution.
    """
    from .model.debug import debug_config, debug_run, interrupted_line

    flags = {k: v for k, v in opts.items() if v is not None}
    cfg = debug_config(config_file, flags, list(sets), out=out, resume=resume)
    try:
        debug_run(cfg, out, resume=resume)
    except KeyboardInterrupt:
        raise Interrupted(interrupted_line(out)) from None


def _run_options(resume_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options of every command that runs a sweep (sweep, confirm): where it goes, the cluster, how it runs."""
    options = [
        click.option("--storage", default="runs", show_default=True,
                     help="Local dir, shared FS path or s3:// / gs:// URI."),
        click.option("--address", envvar="RAY_ADDRESS",
                     help="Join this Ray cluster (or set RAY_ADDRESS); none starts a local Ray."),
        click.option("--workers-per-trial", type=int, default=1, show_default=True,
                     help="Ray Train workers (DDP ranks) per trial."),
        click.option("--gpus-per-worker", type=float, default=None,
                     help="GPUs per worker, fractional to pack trials (default 1 if the cluster has GPUs, else 0)."),
        click.option("--cpus-per-worker", type=float, default=1.0, show_default=True,
                     help="CPUs per worker (a single-worker trial: per trial); more leave fewer trials at once."),
        click.option("--max-concurrent", type=int, default=None,
                     help="Trials at once (default: what the cluster fits)."),
        click.option("--dry-run", is_flag=True,
                     help="Print the expanded trials, their compute and expected hours (steps timed here); "
                     "run nothing."),
        click.option("--assume-tflops", type=float, default=None, metavar="X",
                     help="--dry-run: plan for a device sustaining X TFLOP/s (e.g. a GPU cluster you are not on) "
                     "instead of timing steps here."),
        click.option("--resume", is_flag=True, help=resume_help),
        click.option("--verbose", is_flag=True,
                     help="Show Ray's own output too (by default it goes to <sweep>/logs/)."),
        click.option("--mlflow", metavar="URI", default=None,
                     help="Log every trial as an MLflow run to this tracking server (extra: cycleseg[mlflow])."),
    ]

    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


@main.command(epilog=_examples(
    "cycleseg sweep                                   # the demo on an embedded local Ray",
    "cycleseg sweep table1 --set data_root=/data/VOC2012 --dry-run",
    "cycleseg sweep --resume --name table1"))
@click.argument("space", required=False, default=None)
@click.option("--name", help="Sweep name (folder under --storage); default: the space's file name.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a base config field for every trial.")
@_run_options("Finish an interrupted sweep (same --name) without re-running finished trials.")
@click.option("--list", "list_spaces", is_flag=True, help="List the shipped spaces and exit.")
@_user_errors
def sweep(space: str | None, sets: tuple[str, ...], list_spaces: bool, **opts: Any) -> None:
    """Run a search space (YAML) as Ray Tune trials; results as Parquet.

    A trial trains in its Tune trial process (reused by the next trial), or as a Ray Train DDP run with
    --workers-per-trial N > 1.

    SPACE is a YAML file or a shipped space (see `cycleseg sweep --list`); default demo, or with
    --resume the trials the sweep was started with. Exit status 1 when a trial failed after its retries
    (diverged and early-stopped trials are results, not failures).
    """
    if list_spaces:
        from .search_spaces import describe_shipped

        click.echo(describe_shipped())
        return
    from .sweep.execution.runner import run_sweep

    outcome = run_sweep(space, sets=list(sets), **opts)
    if outcome is not None and outcome.failed:
        sys.exit(1)


@main.command(epilog=_examples(
    "cycleseg confirm runs/lambdas --seeds 5 --name lambdas-confirm",
    "cycleseg confirm runs/lambdas --seeds 100,101,102 --with-default --dry-run",
    "cycleseg confirm --resume --name lambdas-confirm         # after the driver died",
    "cycleseg report runs/lambdas-confirm"))
@click.argument("source", metavar="[SWEEP]", required=False, default=None)
@click.option("--seeds", default=None, metavar="N|S1,S2,...",
              help="A count: the N smallest seeds no trial of SWEEP used (default 5); or the seeds themselves, "
                   "e.g. 100,101,102 (a seed SWEEP used is refused). At least 2.")
@click.option("--with-default", is_flag=True,
              help="Also re-run each cell with its searched fields at their defaults (e.g. the paper's λ's).")
@click.option("--name", help="Confirmation sweep name (folder under --storage); default: <SWEEP name>-confirm.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Where the arms run, for every arm: data_root, cache_dir, device, amp, channels_last, compile or "
              "eval_batch_size (what they are is the search's choice).")
@_run_options("Finish an interrupted confirmation: cycleseg confirm --resume --name NAME (same --storage); "
              "cycleseg sweep --resume --name NAME works too where --storage is local.")
@_user_errors
def confirm(source: str | None, **opts: Any) -> None:
    """Re-run a search's winners on fresh seeds, each paired with partial: gains free of the winner's curse.

    SWEEP: a finished sweep folder (local or s3:// / gs:// URI). Each grid cell's winner (chosen on val as
    best-config does; semi-supervised methods only) runs on seeds SWEEP never used, beside partial at the
    same dataset, labeled fraction and budget. It is an ordinary sweep: the generated space
    (<storage>/<name>/confirm.yaml), confirm.json (provenance), Parquet results, `cycleseg report`.
    Exit status 1 when a trial failed after its retries.
    """
    from .sweep.execution.confirm import confirm_winners

    outcome = confirm_winners(source, **opts)
    if outcome is not None and outcome.failed:
        sys.exit(1)


@main.command("best-config", epilog=_examples(
    "cycleseg best-config runs/lambdas -o best/          # one YAML per grid cell",
    "cycleseg best-config runs/demo --where 'labeled_fraction == 0.2' -o best.yaml",
    "cycleseg best-config s3://bucket/sweeps/demo -o best.yaml"))
@click.argument("results")
@click.option("--metric", default="val_miou", show_default=True,
              help="A val result column of trials/ (never a test one); val_miou is the selected epoch's.")
@click.option("--mode", type=click.Choice(["max", "min"]), default="max", show_default=True)
@click.option("--where", "where", default=None, help="pandas query on trials/, e.g. 'labeled_fraction == 0.2'.")
@click.option("--trial", "trial_id", default=None, help="Export this exact trial's config instead of ranking.")
@click.option("--per-seed", is_flag=True, help="Rank single trials instead of configs averaged over seeds.")
@click.option("-o", "--output", type=click.Path(), default=None,
              help="The YAML; with several cells a folder (e.g. best/) for one YAML per cell. Default: best.yaml, "
              "or best/ when the sweep has several cells.")
@_user_errors
def best_config(results: str, **opts: Any) -> None:
    """Export the best configuration of a sweep as a YAML that `debug --config` and sweeps accept.

    RESULTS: a sweep folder (local or s3:// / gs:// URI), e.g. runs/demo.
    """
    from .sweep.results.export import export_best_config

    export_best_config(results, **opts)


@main.command(epilog=_examples(
    "cycleseg report runs/demo",
    "cycleseg report runs/table1-voc runs/ablation -o reports/voc",
    "cycleseg report s3://bucket/sweeps/demo -o report-demo"))
@click.argument("results", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(), default=None,
              help="Report folder (default: <first results>/report; needed for results on object storage).")
@click.option("--metric", type=click.Choice(["test_miou", "val_miou"]), default="test_miou", show_default=True,
              help="What the tables report, at each trial's selected epoch (chosen on val).")
@click.option("--labeled-fraction", type=float, default=None,
              help="Fraction for the per-class IoU tables and sample grids (default: the smallest).")
@click.option("--no-samples", is_flag=True, help="Skip the sample grid (needs the checkpoints).")
@click.option("--ci", type=click.Choice(["t", "bootstrap"]), default="t", show_default=True,
              help="Interval for paired differences (bootstrap where a cell has >= 4 seed pairs, else t).")
@_user_errors
def report(results: tuple[str, ...], **opts: Any) -> None:
    """Tables (paper Table 1/2 replicas with paired gains and CIs), plots and sample grids.

    RESULTS: one or more sweep folders (each with trials/ and epochs/), e.g. runs/table1 runs/ablation.
    """
    from .sweep.report import build_report

    build_report(list(results), **opts)


if __name__ == "__main__":
    main()
