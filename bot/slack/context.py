"""What every listener needs, passed explicitly instead of living in globals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from slack_sdk import WebClient

from bot.clock import Clock
from bot.config import FileConfig
from bot.db import Database
from bot.jobs import JobRunner
from bot.pager import Pager
from bot.slack.channels import IncidentChannels
from bot.slack.outbox import SlackOutbox
from bot.workers import WorkerPool

if TYPE_CHECKING:
    from bot.slack.runbook_runner import RunbookRunner
    from bot.webview.auth import WebAccess


@dataclass(frozen=True)
class ListenerContext:
    config: FileConfig
    db: Database
    client: WebClient
    channels: IncidentChannels
    workers: WorkerPool
    pager: Pager
    jobs: JobRunner
    clock: Clock
    outbox: SlackOutbox
    runbooks: RunbookRunner | None = None  # /runbook: catalogue, SSH, executor
    web: WebAccess | None = None  # /incident web: sign-in links to the web view
