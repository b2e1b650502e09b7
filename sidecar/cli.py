"""Command line: ``serve`` (the sidecar), ``validate`` (rules, offline), ``check`` (one call)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sidecar import __version__
from sidecar.errors import RuleSetError, SettingsError

if TYPE_CHECKING:
    from sidecar.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="viva-ratelimit",
        description="Envoy rate-limit sidecar (envoyproxy/ratelimit-compatible).")
    parser.add_argument("--version", action="version", version=f"viva-ratelimit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the sidecar (gRPC 8081, HTTP 8080, debug 6070)")
    serve.add_argument("--mode", choices=("standalone", "full"),
                       help="standalone (default) or full: customers, API keys, plans and the "
                       "admin API on the HTTP port (env VIVA_MODE or MODE)")
    serve.add_argument("--config", help="rules directory or file (default ./config; env "
                       "VIVA_CONFIG_DIR or RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/config)")
    serve.add_argument("--backend", choices=("memory", "redis"),
                       help="counter store (env BACKEND_TYPE; default memory, or redis when "
                       "REDIS_URL is set)")
    serve.add_argument("--redis-url", help="host:port, a socket path, or redis:// / rediss:// "
                       "URL (env REDIS_URL)")
    serve.add_argument("--grpc-port", type=int, help="gRPC port (env GRPC_PORT, default 8081)")
    serve.add_argument("--http-port", type=int, help="HTTP port (env PORT, default 8080)")
    serve.add_argument("--debug-port", type=int, help="debug port (env DEBUG_PORT, "
                       "default 6070)")
    serve.add_argument("--transport", choices=("fast", "grpcio"),
                       help="gRPC server: fast (our HTTP/2 transport, default) or grpcio "
                       "(env VIVA_TRANSPORT)")
    serve.add_argument("--workers", type=int, help="worker processes sharing the ports "
                       "(env VIVA_WORKERS, default 1; more than one needs the Redis store)")
    serve.add_argument("--log-level", choices=("debug", "info", "warn", "error"),
                       help="env LOG_LEVEL, default warn")

    db = sub.add_parser("db", help="full mode's catalog database")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply the migrations to VIVA_DATABASE_URL (the sidecar "
                      "also does at start-up)")

    admin = sub.add_parser("admin", help="full mode administration")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    root = admin_sub.add_parser("create-root-key", help="create a root key (admin "
                                "credentials) and print it once")
    root.add_argument("--scopes", required=True, help="comma-separated: admin, keys:write, "
                      "keys:read, keys:verify, customers:write, customers:read")
    root.add_argument("--name", default=None, help="a label to tell root keys apart")

    validate = sub.add_parser("validate", help="check rules offline; exit 1 listing every "
                              "problem")
    validate.add_argument("path", nargs="?", default="config", help="file or directory")
    validate.add_argument("--merge-domains", action="store_true",
                          help="allow one domain across files (MERGE_DOMAIN_CONFIG)")

    check = sub.add_parser("check", help="ask a running sidecar over gRPC")
    check.add_argument("--address", default="localhost:8081")
    check.add_argument("--domain", required=True)
    check.add_argument("--descriptor", action="append", required=True, metavar="K=V[,K=V]",
                       help="one descriptor; repeat for several")
    check.add_argument("--hits", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "validate":
        return _validate(args.path, args.merge_domains)
    if args.command == "check":
        from sidecar.client import check_once

        return check_once(args.address, args.domain, args.descriptor, args.hits)
    if args.command in ("db", "admin"):
        return _manage(args)
    return _serve(args)


def _manage(args: argparse.Namespace) -> int:
    """``db upgrade`` and ``admin create-root-key``: full mode's commands (settings from the
    environment, as for serve)."""
    from sidecar.logs import configure_logging
    from sidecar.management.commands import create_root_key, upgrade_database
    from sidecar.settings import Settings

    try:
        settings = Settings.load({})
        configure_logging(settings.log_level, settings.log_format)
        if args.command == "db":
            return upgrade_database(settings)
        return create_root_key(settings, args.scopes, args.name)
    except SettingsError as exc:
        print(f"viva-ratelimit: {exc}", file=sys.stderr)
        return 2


def _validate(path: str, merge: bool) -> int:
    from sidecar.rules.loader import load_rules

    try:
        rules = load_rules(path, merge_domains=merge)
    except RuleSetError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        print(f"{len(exc.errors)} problem(s) found", file=sys.stderr)
        return 1
    limits = rules.iter_limits()
    print(f"{path}: OK — {len(rules.domains)} domain(s), {len(limits)} limit(s), "
          f"version {rules.version}")
    return _validate_plans(path)


def _validate_plans(path: str) -> int:
    """Full mode's plans documents beside the rules, when there are any."""
    from sidecar.management.plans import build_plans
    from sidecar.rules.loader import read_rule_files

    files = read_rule_files(path, plans=True)
    if not files:
        return 0
    try:
        plans = build_plans(files)
    except RuleSetError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        print(f"{len(exc.errors)} problem(s) found in the plans", file=sys.stderr)
        return 1
    print(f"plans: OK — {', '.join(plans.plans)}, version {plans.version}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from sidecar.logs import configure_logging
    from sidecar.settings import Settings

    flags = {"mode": args.mode, "config": args.config, "backend": args.backend,
             "redis_url": args.redis_url, "grpc_port": args.grpc_port, "http_port": args.http_port,
             "debug_port": args.debug_port, "log_level": args.log_level,
             "workers": args.workers, "transport": args.transport}
    try:
        settings = Settings.load(flags)
    except SettingsError as exc:
        print(f"viva-ratelimit: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    _warn_about_environment()
    logging.getLogger("sidecar.settings").debug("settings: %s", settings.describe())
    try:
        return _run(settings)
    except RuleSetError as exc:
        where = settings.rules_path
        if settings.mode == "full" and settings.plans_dir != where:
            where += f" or the plans in {settings.plans_dir}"
        print(f"viva-ratelimit: the rules in {where} are invalid:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    except SettingsError as exc:
        print(f"viva-ratelimit: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"viva-ratelimit: cannot start: {exc}", file=sys.stderr)
        return 1


def _warn_about_environment() -> None:
    """Unknown and shadowed variables, once (by the supervisor, not again by each worker)."""
    from sidecar.envcheck import environment_warnings
    from sidecar.workers import WORKER_ENV

    if os.environ.get(WORKER_ENV):
        return
    log = logging.getLogger("sidecar.settings")
    for warning in environment_warnings(os.environ):
        log.warning("%s", warning)


def _run(settings: Settings) -> int:
    """The supervisor of --workers N (which needs only the settings: it stays small), or one
    sidecar process."""
    from sidecar.workers import WORKER_ENV, supervise

    if settings.workers > 1 and not os.environ.get(WORKER_ENV):
        return supervise(settings)
    from sidecar.app import run_sidecar

    return run_sidecar(settings)
