"""The read-only web view: sign-in from Slack, the incident list and each incident's page.

- `auth`: sign-in links (HMAC-signed, single use, 10 minutes) and sessions (12 hours,
  revocable), stored in `models`; no Flask here.
- `render`: the autoescaping Jinja environment and `Page`, which renders a template for a
  viewer (their time zone, the navigation, the sandbox banner).
- `queries`: the read-only database queries behind each page.
- `views`: the Flask blueprint: security headers, the session check, the routes.
- `oncall`: the `/oncall` page's content (now and next, a two-week grid per schedule cut
  at the viewer's midnights from the on-call domain's shifts); no Flask.

A new page is a route in a blueprint that calls `views.viewer_or_sign_in()` and
`Page.render(...)`, a template extending `base.html`, and an entry in `render.NAV`.
"""
