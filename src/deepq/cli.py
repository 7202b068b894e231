"""The `deepq` command: `deepq <command> [args]`. Hydra commands take Hydra overrides (`deepq train model.hidden_size=16`)."""

from __future__ import annotations

import importlib
import sys

# command -> module with a `main()`; Hydra apps read their overrides from sys.argv
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("deepq.tasks.train", "walk-forward training and evaluation (Hydra overrides, -m for multirun)"),
    "data": ("deepq.tasks.data", "market data cache: import, download, update, quality, sql (deepq data -h)"),
    "serve": ("deepq.tasks.serve", "REST + gRPC prediction service over the model registry (A/B, shadow)"),
    "models": ("deepq.tasks.models", "model registry: list | promote | archive | show | verify"),
    "predict": (
        "deepq.tasks.predict",
        "batch scoring with a registered model: --date, --start/--end, --since-training-end",
    ),
    "daily": (
        "deepq.tasks.daily",
        "the scheduler's command: data update, quality gate, predict, monitor, server reload",
    ),
    "monitor": ("deepq.tasks.monitor", "drift, decay and importance of a registered model; retrain on alert"),
    "backup": ("deepq.tasks.backup", "checksummed snapshot of the price cache, feature store and registry"),
    "restore": ("deepq.tasks.backup", "restore a snapshot (verified) into its locations or --into DIR"),
    "features": ("deepq.tasks.features", "feature registry: list [--family F] [--set S] | families"),
    "plan": ("deepq.tasks.plan", "print the walk-forward fold plan and draw it (Hydra overrides)"),
    "compare": ("deepq.tasks.compare", "leaderboard (HTML + markdown) across run and sweep folders"),
}


def _usage() -> str:
    lines = ["usage: deepq <command> [args]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"deepq: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(COMMANDS[command][0])
    sys.argv = [f"deepq {command}", *rest]
    module.main()


if __name__ == "__main__":
    main()
