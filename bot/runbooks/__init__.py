"""Runbooks: whitelisted steps from YAML, planned into exact argv per host, approved, run, audited.

The domain imports no paramiko and no Slack. `plan` holds the data every part shares (a
validated `Plan` of hosts and steps), `transport` the protocol `integrations.ssh` implements,
`command` the one place a remote command line is built.
"""
