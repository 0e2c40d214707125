"""`python -m bot.sandbox --port 8765`: run the sandbox Slack until interrupted."""

from __future__ import annotations

import argparse
import contextlib
import threading

from bot.sandbox.server import SlackSandbox


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bot.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--bot-user-id", default="UFIREBREAK")
    parser.add_argument("--bot-token", default=None, help="accept only this token")
    parser.add_argument("--team-id", default="T0SANDBOX")
    parser.add_argument(
        "--scopes",
        default=None,
        help="the bot token's scopes, comma-separated (default: the manifest's)",
    )
    options = parser.parse_args(argv)
    sandbox = SlackSandbox(
        options.host,
        options.port,
        bot_user_id=options.bot_user_id,
        bot_token=options.bot_token,
        team_id=options.team_id,
        scopes=options.scopes.split(",") if options.scopes is not None else None,
    )
    with sandbox:
        print(sandbox.api_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
