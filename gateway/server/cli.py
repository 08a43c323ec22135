"""`tandem serve`: validate the catalog, then serve it with uvicorn (also `check`, `chat`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import uvicorn

from gateway.api.routing import Router
from gateway.chat import cli as chat_cli
from gateway.core.config import CatalogError, Settings, export_to_env, settings_from_env
from gateway.observability.logs import configure_logging
from gateway.server.app import build_state
from gateway.training import cli as training_cli
from gateway.training.planner import cli as planner_cli

EXIT_BAD_CONFIG = 2
STARTUP_FAILURE = 3  # uvicorn's exit code when the app's lifespan fails


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tandem", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the OpenAI-compatible API")
    serve.add_argument("--config", type=Path, help="catalog YAML (default: built-in catalog)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")
    serve.add_argument("--log-level", help="debug, info, warning, error")
    check = commands.add_parser("check", help="validate the catalog and exit")
    check.add_argument("--config", type=Path)
    chat = commands.add_parser(
        "chat",
        help="chat in the terminal, coloured by the model writing",
        description=chat_cli.DESCRIPTION,
        epilog=chat_cli.HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chat_cli.add_arguments(chat)
    router = commands.add_parser(
        "router",
        help="train a token router for a collab pair (collect, train, calibrate)",
        description=training_cli.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    training_cli.add_arguments(router)
    train = commands.add_parser(
        "train",
        help="post-train a model of a catalog alias (planner: GRPO for hawkeye)",
        description=planner_cli.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    planner_cli.add_arguments(train)
    return parser.parse_args(argv)


def load_settings(args: argparse.Namespace) -> Settings:
    return settings_from_env(
        config=args.config,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        workers=getattr(args, "workers", None),
        log_level=getattr(args, "log_level", None),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "chat":
        return chat_cli.main(args)
    if args.command == "router":
        return training_cli.main(args)
    if args.command == "train":
        return planner_cli.main(args)
    try:
        settings = load_settings(args)
        state = build_state(settings)
    except CatalogError as exc:
        what = "settings" if exc.key == "api_keys_file" else "catalog"
        print(f"tandem: bad {what}: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except ValueError as exc:
        print(f"tandem: bad settings: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    if args.command == "check":
        return check(state.router)
    configure_logging(settings.log_level)
    export_to_env(settings)
    try:
        serve(settings)
    except SystemExit as exc:
        # uvicorn's "application startup failed": the lifespan logged why (a model that cannot
        # load, a router its models cannot run); like any bad configuration, exit 2
        return EXIT_BAD_CONFIG if exc.code == STARTUP_FAILURE else int(exc.code or 0)
    return 0


def check(router: Router) -> int:
    """Validate the catalog; aliases that only their loaded models can vouch for (a learned
    router's pair and features) start those models, check, and stop them."""
    aliases = router.needing_models()
    if aliases:
        try:
            asyncio.run(check_with_models(router, aliases))
        except CatalogError as exc:
            print(f"tandem: bad catalog: {exc}", file=sys.stderr)
            return EXIT_BAD_CONFIG
    print(f"catalog ok: {', '.join(router.aliases())}")
    return 0


async def check_with_models(router: Router, aliases: list[str]) -> None:
    names = {name for alias in aliases for name in router.routes[alias].spec.backends.values()}
    backends = [router.backends[name] for name in sorted(names)]
    try:
        await asyncio.gather(*(backend.start() for backend in backends))
        await router.check_started(aliases)
    finally:
        await asyncio.gather(*(b.aclose() for b in backends), return_exceptions=True)


def serve(settings: Settings) -> None:
    uvicorn.run(
        "gateway.server.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + 1,
        access_log=False,  # Tandem writes its own JSON access line per request
        log_config=None,
    )


if __name__ == "__main__":
    sys.exit(main())
