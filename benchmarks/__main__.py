"""python -m benchmarks {op,training,tasks,reproduce} [options]"""
import importlib
import sys

COMMANDS = {"op": "bench_op", "training": "bench_training", "tasks": "bench_tasks", "reproduce": "reproduce"}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip() + "\n  " + "\n  ".join(f"{k}: benchmarks/{v}.py" for k, v in COMMANDS.items()))
        return 2
    module = importlib.import_module(f"benchmarks.{COMMANDS[argv[0]]}")
    module.main(argv[1:])  # each prints its table and writes its JSON; its return value is not an exit status
    return 0


if __name__ == "__main__":
    sys.exit(main())
