"""The web view's Flask blueprint: security headers, who is reading, and the routes.

Read-only: every route is a GET and none changes anything, except `/signin`, which spends
a single-use link, sets the session cookie and redirects (so a reload cannot spend it
again). Every answer carries a Content-Security-Policy that allows scripts and styles only
from this site's files (no inline script can run), and is never cached.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.config import FileConfig
from bot.db import Database
from bot.postmortem import draft
from bot.postmortem.context import UnknownIncident
from bot.postmortem.templates import TemplateError, Templates
from bot.slack.text import plain
from bot.webview import oncall, pages, queries, reports
from bot.webview.auth import COOKIE, SESSION_LIFETIME, SignInRefused, WebAccess
from bot.webview.lines import TimelineLines
from bot.webview.render import (
    Names,
    Page,
    Viewer,
    markdown_html,
    text_style,
    viewer_for,
)

log = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # sign-in tokens are in URLs: never pass them on
    "X-Frame-Options": "DENY",
}
SANDBOX_VIEWER = Viewer("sandbox", "sandbox visitor", sandbox=True)


def secure_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/assets/"):
        response.headers.setdefault("Cache-Control", "public, max-age=300")
    else:
        response.headers["Cache-Control"] = "no-store"
    return response


def _loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _over_https(base_url: str | None) -> bool:
    """The browser reached us over HTTPS: directly, through a proxy that says so in
    X-Forwarded-Proto, or at an https:// public address."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.is_secure or forwarded == "https" or (base_url or "").startswith("https://")


@dataclass
class WebView:
    """What the pages read: the database, the configuration, the clock and who may read."""

    db: Database
    config: FileConfig
    clock: Clock
    access: WebAccess
    calendar_secret: str | None = None  # SLACK_SIGNING_SECRET: signs `/oncall/<name>.ics` links
    _templates: Templates | None = field(default=None, init=False)
    # Incident pages' timeline lines, each made once (`bot.webview.lines`).
    lines: TimelineLines = field(default_factory=TimelineLines, init=False)

    @property
    def names(self) -> Names:
        return Names(self.config.people)

    def viewer(self) -> Viewer | None:
        """The reader of this request: the sandbox visitor (`serve --sandbox`, loopback),
        a live session's holder, or None."""
        if self.access.open_on_loopback and _loopback(request.remote_addr):
            return SANDBOX_VIEWER
        holder = self.access.session(request.cookies.get(COOKIE))
        if holder is None:
            return None
        return viewer_for(holder.user_id, holder.name, self.config.people)

    def page(self, viewer: Viewer | None) -> Page:
        return Page(viewer, self.clock(), sandbox=self.access.open_on_loopback, path=request.path)

    def sign_in_page(self, status: int = 401, problem: str | None = None) -> Response:
        """How to sign in, instead of a page the reader may not see."""
        html = self.page(None).render(
            "signin.html", title="Sign in", problem=problem, people=list(self.config.people)
        )
        return Response(html, status=status, mimetype="text/html")

    def templates(self) -> Templates:
        if self._templates is None:
            self._templates = Templates.load(self.config.postmortem.templates_dir)
        return self._templates


def web_view_blueprint(view: WebView) -> Blueprint:
    blueprint = Blueprint("webview", __name__, static_folder="static", static_url_path="/assets")
    blueprint.after_request(secure_headers)

    def signed_in(handler: Callable[[Viewer], Response]) -> Response:
        """The handler's page for a signed-in reader; how to sign in for anyone else."""
        viewer = view.viewer()
        return view.sign_in_page() if viewer is None else handler(viewer)

    @blueprint.get("/signin")
    def sign_in() -> Response:
        token = request.args.get("token", "")
        if not token:
            return view.sign_in_page(status=400, problem="The sign-in link has no token.")
        try:
            signed = view.access.redeem(token)
        except SignInRefused as refused:
            return view.sign_in_page(status=403, problem=str(refused))
        response = Response(status=303, headers={"Location": signed.next_path})
        response.set_cookie(
            COOKIE,
            signed.cookie,
            max_age=int(SESSION_LIFETIME.total_seconds()),
            httponly=True,
            samesite="Lax",
            secure=_over_https(view.access.base_url),
            path="/",
        )
        return response

    @blueprint.get("/")
    def incident_list() -> Response:
        def show(viewer: Viewer) -> Response:
            page = view.page(viewer)
            policy = view.config.incidents
            services = sorted(view.config.services)
            filters, problems = queries.ListFilters.parse(request.args, policy, services)
            with view.db.session_scope() as session:
                rows, total = queries.incident_list(session, filters, page.zone)
            html = page.render(
                "list.html",
                title="Incidents",
                rows=rows,
                total=total,
                filters=filters,
                problems=problems,
                statuses=["open", "resolved", *[s for s in policy.statuses if s != "resolved"]],
                severities=list(policy.severities),
                services=services,
                per_page=queries.PER_PAGE,
                max_page=queries.MAX_PAGE,
                names=view.names,
            )
            return Response(html, status=400 if problems else 200, mimetype="text/html")

        return signed_in(show)

    @blueprint.get("/incidents/<reference>")
    def incident_page(reference: str) -> Response:
        def show(viewer: Viewer) -> Response:
            page = view.page(viewer)
            incident_id = queries.parse_reference(reference)
            with view.db.session_scope() as session:
                detail = (
                    queries.incident_detail(session, incident_id, view.config.incidents.roles)
                    if incident_id is not None
                    else None
                )
                if detail is None:
                    html = page.render(
                        "missing.html", title="No such incident", reference=reference[:40]
                    )
                    return Response(html, status=404, mimetype="text/html")
                timeline = view.lines.html(
                    session, detail.incident.id, detail.event_ids, page, text_style(view.names)
                )
                html = page.render(
                    "incident.html",
                    title=f"{detail.incident.reference}: {plain(detail.incident.title)}",
                    detail=detail,
                    incident=detail.incident,
                    timeline=timeline,
                    names=view.names,
                )
            return Response(html, mimetype="text/html")

        return signed_in(show)

    @blueprint.get("/incidents/<reference>/postmortem")
    def postmortem_page(reference: str) -> Response:
        """The draft rendered as HTML on a page of its own: rendering it from the record
        costs about as much as `firebreak postmortem`, too much for every incident view."""

        def show(viewer: Viewer) -> Response:
            page = view.page(viewer)
            incident_id = queries.parse_reference(reference)
            try:
                if incident_id is None:
                    raise UnknownIncident(reference)
                with view.db.session_scope() as session:
                    draft, problem = _draft(view, session, incident_id, page)
            except UnknownIncident:
                html = page.render(
                    "missing.html", title="No such incident", reference=reference[:40]
                )
                return Response(html, status=404, mimetype="text/html")
            html = page.render(
                "postmortem.html",
                title=f"INC-{incident_id} postmortem draft",
                reference=f"INC-{incident_id}",
                draft_html=markdown_html(draft) if draft else "",
                draft_problem=problem,
            )
            return Response(html, mimetype="text/html")

        return signed_in(show)

    @blueprint.get("/incidents/<reference>/events")
    def incident_events(reference: str) -> Response | tuple[Response, int]:
        """Events after `?after=ID` as JSON text (the page's script appends them as text)."""
        viewer = view.viewer()
        if viewer is None:
            return jsonify(error="not signed in; open a sign-in link from /incident web"), 401
        incident_id = queries.parse_reference(reference)
        after_text = request.args.get("after", "0")
        if not (after_text.isascii() and after_text.isdigit()) or len(after_text) > 18:
            return jsonify(error="after must be an event id (a whole number)"), 400
        if incident_id is None:
            return jsonify(error=f"{reference[:40]!r} is not an incident like INC-7"), 404
        page = view.page(viewer)
        with view.db.session_scope() as session:
            events, open_now = queries.events_after(session, incident_id, int(after_text))
        if open_now is None:
            return jsonify(error=f"there is no incident INC-{incident_id}"), 404
        rows = page.timeline(events, text_style(view.names))
        body = [
            {"id": row.id, "kind": row.kind, "at": row.iso, "time": row.when, "text": row.text}
            for row in rows
        ]
        return jsonify(events=body, open=open_now)

    @blueprint.get("/incidents/<reference>/postmortem.md")
    def postmortem_markdown(reference: str) -> Response:
        def download(viewer: Viewer) -> Response:
            page = view.page(viewer)
            incident_id = queries.parse_reference(reference)
            try:
                if incident_id is None:
                    raise UnknownIncident(f"{reference[:40]!r} is not an incident like INC-7")
                with view.db.session_scope() as session:
                    draft, problem = _draft(view, session, incident_id, page)
            except UnknownIncident as unknown:
                return Response(f"{unknown}\n", status=404, mimetype="text/plain")
            if problem is not None:
                return Response(
                    f"the draft could not be rendered: {problem}\n",
                    status=500,
                    mimetype="text/plain",
                )
            return Response(
                draft,
                mimetype="text/markdown",
                headers={
                    "Content-Disposition": f'attachment; filename="INC-{incident_id}-postmortem.md"'
                },
            )

        return signed_in(download)

    # -- /oncall: who is on call now and next, a two-week grid per schedule -------------
    # (`/oncall/<schedule>.ics`, the calendar feed, is a route of `bot.web`; no clash.)

    @blueprint.get("/oncall")
    def oncall_page() -> Response:
        def show(viewer: Viewer) -> Response:
            now = view.clock()
            known = list(view.config.schedules)
            query = oncall.OncallQuery.parse(request.args, known, viewer.zone, now)
            page = view.page(replace(viewer, zone=query.zone))
            base_url = view.access.base_url or request.host_url
            with view.db.session_scope() as session:
                boards = oncall.boards(
                    session,
                    view.config.oncall,
                    query,
                    now,
                    base_url=base_url,
                    secret=view.calendar_secret,
                )
            html = page.render(
                "oncall.html",
                title="On call",
                query=query,
                boards=boards,
                known=known,
                earlier=query.query_string(query.first - timedelta(days=oncall.DAYS)),
                later=query.query_string(query.first + timedelta(days=oncall.DAYS)),
                moment=lambda at: oncall.moment_label(at, page.zone),
                hours=oncall.hours,
                tones=oncall.tones(view.config.people),
                names=view.names,
            )
            return Response(html, status=400 if query.problems else 200, mimetype="text/html")

        return signed_in(show)

    # -- /pages and /reports (bot/webview/pages.py, bot/webview/reports.py) ---------------

    @blueprint.get("/pages")
    def pages_board() -> Response:
        """Open pages and where each stands in its escalation; pages resolved lately."""

        def show(viewer: Viewer) -> Response:
            page = view.page(viewer)
            services = {
                name: service.escalation_policy for name, service in view.config.services.items()
            }
            with view.db.session_scope() as session:
                board = pages.board(session, now=page.now, services=services)
                html = page.render(
                    "pages.html",
                    title="Pages",
                    board=board,
                    names=view.names,
                    when_next=pages.when_next,
                    recent_hours=int(pages.RECENT.total_seconds() // 3600),
                )
            return Response(html, mimetype="text/html")

        return signed_in(show)

    @blueprint.get("/reports")
    def reports_page() -> Response:
        """`firebreak report`'s numbers as charts drawn on the server, with their tables."""

        def show(viewer: Viewer) -> Response:
            page = view.page(viewer)
            section = view.config.postmortem
            period, problems = reports.Period.parse(request.args, page.now, section.zone)
            with view.db.session_scope() as session:
                report = reports.build(
                    session,
                    period,
                    now=page.now,
                    zone=section.zone,
                    mitigated_statuses=section.mitigated_statuses,
                    severity_order=list(view.config.incidents.severities),
                )
            html = page.render(
                "reports.html",
                title="Reports",
                report=report,
                period=period,
                problems=problems,
                choices=reports.MONTH_CHOICES,
                team_zone=section.timezone,
            )
            return Response(html, status=400 if problems else 200, mimetype="text/html")

        return signed_in(show)

    return blueprint


def _draft(view: WebView, session: Session, incident_id: int, page: Page) -> tuple[str, str | None]:
    """The postmortem draft (default template) as Markdown and None, or "" and why the
    template failed; raises UnknownIncident."""
    config = view.config
    try:
        text = draft.render(
            session,
            incident_id,
            templates=view.templates(),
            template="default",
            people=config.people,
            severities=config.incidents.severities,
            section=config.postmortem,
            now=page.now,
        )
    except TemplateError as error:
        log.warning("postmortem draft of INC-%s: %s", incident_id, error)
        return "", str(error)
    return text, None
