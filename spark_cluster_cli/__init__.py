"""The `spark-cluster` command (console script): a thin front door over
pyinfra and pytest that runs from a checkout of the repository."""

def main(argv=None) -> int:
    from .command import main as run

    return run(argv)
