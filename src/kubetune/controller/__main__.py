"""``python -m kubetune.controller [--namespace NS ...]``: run the TrainJob operator."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Run the kopf operator for kubetune.dev resources until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m kubetune.controller", description=__doc__)
    parser.add_argument("--namespace", action="append", help="watch only these namespaces (default: all)")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL")
    args = parser.parse_args(argv)
    import kopf

    import kubetune.controller.operator  # noqa: F401  (importing registers the handlers)

    # One replica (the Deployment uses the Recreate strategy), so no kopf peering is needed.
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
        standalone=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
