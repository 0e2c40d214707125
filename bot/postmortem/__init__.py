"""Postmortem drafts: incident metrics from the timeline, the context a draft shows, and its
rendering from sandboxed Jinja2 templates into Markdown.

Domain code: it reads the database and returns text; it knows nothing of Slack's API or
HTTP (Slack-stored text is turned into names with `bot.slack.text`, a pure text module).

- `metrics`: time to acknowledge, mitigate and resolve, each None when unknown.
- `context`: everything a draft shows, gathered from the database into plain data.
- `markdown`: escaping user text for Markdown, names for Slack mentions, timeline sentences.
- `templates`: the sandboxed Jinja2 environment, template lookup, errors with line numbers.
- `config`: the `postmortem:` section of firebreak.yaml.
"""
