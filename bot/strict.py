"""The base of every configuration section, and the Slack id shapes sections check.

Each domain package owns its section types (incidents in `bot.incidents.config`, on-call in
`bot.oncall.configuration`, people in `bot.people`); `bot.config` only composes them and
reads the files. They share this base so every section refuses unknown keys and is frozen.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{2,}$")
USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class Section(BaseModel):
    """A configuration section: unknown keys are errors, values never change after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
