"""``python -m kubetune.initializers model|dataset``: run one initializer from the command line.

Configured by arguments or environment variables, so the same command works as a local step
and as a container's entry point:

- ``KUBETUNE_INITIALIZER_SPEC``: the whole spec as JSON (a ``ModelInitializer`` or
  ``DatasetInitializer`` dump; it holds secret *references* only). Arguments override its fields.
- ``KUBETUNE_STORAGE_URI``, ``KUBETUNE_TARGET_DIR``, ``KUBETUNE_CACHE_DIR``: defaults for
  ``--uri``, ``--target`` and ``--cache-dir``.

Exit status 0 on success, 2 on a user error (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from kubetune.errors import ConfigError, KubetuneError
from kubetune.initializers.run import run_initializer
from kubetune.initializers.secrets import ScrubbingFilter, scrub
from kubetune.spec.base import validate_config
from kubetune.spec.initializer import INITIALIZER_SPEC_ENV, DatasetInitializer, ModelInitializer

SPEC_ENV = INITIALIZER_SPEC_ENV


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m kubetune.initializers", description="Fetch a model or dataset into a job's folder."
    )
    parser.add_argument("kind", choices=["model", "dataset"])
    parser.add_argument("--uri", default=os.environ.get("KUBETUNE_STORAGE_URI"), help="storage URI or local path")
    parser.add_argument("--target", default=os.environ.get("KUBETUNE_TARGET_DIR"), help="folder the job reads")
    parser.add_argument("--cache-dir", default=os.environ.get("KUBETUNE_CACHE_DIR"), help="cache root")
    parser.add_argument("--revision", help="branch, tag or commit (hf://)")
    parser.add_argument("--allow", action="append", metavar="GLOB", help="fetch only matching files (repeatable)")
    parser.add_argument("--ignore", action="append", metavar="GLOB", help="skip matching files (repeatable)")
    parser.add_argument("--token-env", metavar="VAR", help="environment variable holding the access token")
    parser.add_argument("--token-file", metavar="PATH", help="file holding the access token")
    parser.add_argument("--s3-endpoint", metavar="URL", help="S3-compatible endpoint (MinIO, Ceph...)")
    parser.add_argument("--s3-region", metavar="REGION")
    parser.add_argument("--s3-access-key-id-env", metavar="VAR", help="environment variable holding the key id")
    parser.add_argument("--s3-secret-access-key-env", metavar="VAR", help="environment variable holding the key")
    parser.add_argument("--s3-session-token-env", metavar="VAR")
    parser.add_argument("--materialize", choices=["symlink", "copy"])
    parser.add_argument("--extract", action="store_true", default=None, help="unpack .tar/.tar.gz/.zip files")
    parser.add_argument("--extract-max-bytes", type=int, metavar="N", help="refuse archives unpacking to more")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="provider option (repeatable)")
    return parser


def spec_from_args(args: argparse.Namespace, environ: dict[str, str]) -> ModelInitializer | DatasetInitializer:
    """Merge ``KUBETUNE_INITIALIZER_SPEC`` and the arguments into a validated spec.

    Raises:
        ConfigError: the JSON is invalid, a field is invalid, or no storage URI is given.
    """
    data: dict = {}
    if environ.get(SPEC_ENV):
        try:
            data = json.loads(environ[SPEC_ENV])
        except ValueError as err:
            raise ConfigError(f"{SPEC_ENV}: not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{SPEC_ENV}: expected a JSON object")
    data.setdefault("kind", args.kind)
    for field, value in (
        ("storage_uri", args.uri),
        ("revision", args.revision),
        ("allow_patterns", args.allow),
        ("ignore_patterns", args.ignore),
        ("materialize", args.materialize),
        ("extract", args.extract),
        ("extract_max_bytes", args.extract_max_bytes),
    ):
        if value is not None:
            data[field] = value
    if args.token_env or args.token_file:
        data["token"] = {"env": args.token_env} if args.token_env else {"file": args.token_file}
    s3 = dict(data.get("s3") or {})
    for field, value in (("endpoint_url", args.s3_endpoint), ("region", args.s3_region)):
        if value is not None:
            s3[field] = value
    for field, var in (
        ("access_key_id", args.s3_access_key_id_env),
        ("secret_access_key", args.s3_secret_access_key_env),
        ("session_token", args.s3_session_token_env),
    ):
        if var is not None:
            s3[field] = {"env": var}
    if s3:
        data["s3"] = s3
    for item in args.option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE")
        data.setdefault("options", {})[key] = value
    if "storage_uri" not in data:
        raise ConfigError("no storage URI: give --uri or set KUBETUNE_STORAGE_URI")
    model = ModelInitializer if data["kind"] == "model" else DatasetInitializer
    return validate_config(model, data, source=f"{args.kind} initializer")


def main(argv: list[str] | None = None) -> int:
    """Run the initializer; return the exit status."""
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.addFilter(ScrubbingFilter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    for noisy in ("botocore", "boto3", "urllib3", "httpx", "httpx2", "huggingface_hub", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if not args.target:
            raise ConfigError("no target folder: give --target or set KUBETUNE_TARGET_DIR")
        spec = spec_from_args(args, dict(os.environ))
        result = run_initializer(spec, args.target, args.cache_dir)
    except KubetuneError as err:
        print(f"error: {scrub(str(err))}", file=sys.stderr)
        return err.exit_code
    summary = {
        "kind": result.kind,
        "uri": result.uri,
        "target": str(result.target),
        "cache_hit": result.cache_hit,
        "files": result.files,
        "total_bytes": result.total_bytes,
        "downloaded_bytes": result.downloaded_bytes,
        "seconds": round(result.seconds, 3),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
