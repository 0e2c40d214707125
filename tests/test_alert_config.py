"""Alert routes, alert sources and routing keys in firebreak.yaml: loading, `firebreak check`,
routing, and authenticating senders (bearer tokens, routing keys)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from bot.alerts.auth import bearer_ok, presented_bearer, service_for_routing_key
from bot.alerts.routing import AlertRoute, AlertsSection, route_for
from bot.config import FileConfig, load_file
from bot.oncall.configuration import Service
from tests.test_cli import TOKENS, child_env, invoke, run_script
from tests.test_config import line_of, problems_of, write

KEY = "3f1b8a7c2d4e4f5a9b6c0d1e2f3a4b5c"
OTHER_KEY = "A" * 32
BASE = """\
slack: {announce_channel: C0INCIDENTS}
people:
  alice: {slack: U0ALICE}
escalation_policies:
  payments:
    steps:
      - targets: [user:alice]
        wait: 5m
services:
  checkout: {escalation_policy: payments}
  search: {escalation_policy: payments}
"""
ROUTES = """\
alert_routes:
  - name: checkout-critical
    match: {service: checkout}
    match_re: {severity: "critical|page"}
    service: checkout
    incident: {open: true, severity: sev2}
    auto_resolve: true
    storm: {max_pages: 5, per: 10m}
  - match: {team: search}
    service: search
  - match: {}
    service: checkout
"""


def config_of(text: str) -> FileConfig:
    return FileConfig.model_validate(yaml.safe_load(text))


# -- loading ------------------------------------------------------------------------------


def test_valid_routes_load_with_their_defaults(tmp_path: Path) -> None:
    config, _ = load_file(write(tmp_path, BASE + ROUTES), required=True)
    first, second, last = config.alert_routes
    assert first.name == "checkout-critical"
    assert first.match == {"service": "checkout"}
    assert first.match_re["severity"].pattern == "critical|page"
    assert first.incident is not None
    assert (first.incident.open, first.incident.severity) == (True, "sev2")
    assert first.auto_resolve is True
    assert (first.storm.max_pages, first.storm.per) == (5, timedelta(minutes=10))
    assert second.incident is None and second.auto_resolve is False
    assert (second.storm.max_pages, second.storm.per) == (20, timedelta(minutes=5))
    assert last.catches_all and not first.catches_all
    labels = [route.label(index) for index, route in enumerate(config.alert_routes)]
    assert labels == ["checkout-critical", "route 2", "route 3"]
    assert config.alerts.sources == {}


def test_the_example_routes_and_its_routing_key_variable() -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "firebreak.yaml"
    config, _ = load_file(example, required=True)
    assert config.services["checkout"].routing_key_env == "FIREBREAK_CHECKOUT_ROUTING_KEY"
    found = route_for(config.alert_routes, {"service": "checkout", "severity": "critical"})
    assert found is not None
    _, route = found
    assert route.incident is not None and route.incident.severity == "sev2"
    assert config.alert_routes[-1].catches_all
    assert config.alert_warnings(default_token=True, environ={}) == []


def test_a_route_to_an_unknown_service_names_file_line_key_and_the_known_ones(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, BASE + "alert_routes:\n  - match: {}\n    service: payments\n")
    [problem] = problems_of(path)
    assert problem == (
        f"{path}:{line_of(path, 'service: payments')}: alert_routes.0.service: 'payments' is "
        "not in services: (checkout, search)"
    )


def test_a_regex_that_does_not_compile_is_named_with_its_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        BASE + "alert_routes:\n  - match_re: {severity: 'crit(ical'}\n    service: checkout\n",
    )
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:{line_of(path, 'crit(ical')}: alert_routes.0.match_re.")
    assert "severity: 'crit(ical' is not a regular expression: missing ), unterminated" in problem


@pytest.mark.parametrize(
    ("regex", "says"),
    [
        ("'" + "a" * 1001 + "'", "is 1001 characters; a label regex may have 1000"),
        ("'a{99999999999}'", "is not a usable regular expression"),
        ("'" + "(" * 500 + ")" * 500 + "'", "nests its groups too deeply"),
        ("5", "write the regular expression as text"),
    ],
)
def test_unusable_regexes_are_refused(tmp_path: Path, regex: str, says: str) -> None:
    path = write(tmp_path, BASE + f"alert_routes:\n  - match_re: {{x: {regex}}}\n    service: a\n")
    problems = problems_of(path)
    assert any("alert_routes.0.match_re.x: " in p and says in p for p in problems), problems


@pytest.mark.parametrize(
    ("fragment", "key", "says"),
    [
        ("incident: {severity: sev9}", "alert_routes.0.incident.severity", "'sev9' is not a"),
        ("storm: {per: 0s}", "alert_routes.0.storm.per", "longer than zero"),
        ("storm: {per: 2d}", "alert_routes.0.storm.per", "must be from 1s to 1d"),
        ("storm: {max_pages: 0}", "alert_routes.0.storm.max_pages", "greater than or equal"),
        ("match: {code: 500}", "alert_routes.0.match.code", "in quotes"),
        ("name: Checkout Critical", "alert_routes.0.name", "lowercase word"),
        ("matches: {}", "alert_routes.0.matches", "unknown key"),
    ],
)
def test_bad_route_fields_name_their_key(
    tmp_path: Path, fragment: str, key: str, says: str
) -> None:
    path = write(tmp_path, BASE + f"alert_routes:\n  - service: checkout\n    {fragment}\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:{line_of(path, fragment)}: {key}: "), problem
    assert says in problem


def test_a_route_needs_a_service(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "alert_routes:\n  - match: {}\n")
    [problem] = problems_of(path)
    assert problem == f"{path}:{line_of(path, '- match')}: alert_routes.0.service: Field required"


def test_two_routes_with_one_name(tmp_path: Path) -> None:
    text = "alert_routes:\n  - {name: pay, service: checkout}\n  - {name: pay, service: search}\n"
    path = write(tmp_path, BASE + text)
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:{line_of(path, 'service: search')}: alert_routes.1.name:")
    assert "'pay' already names route 1" in problem


def test_pagerduty_cannot_have_a_bearer_token(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "alerts:\n  sources:\n    pagerduty: {token_env: PD_TOKEN}\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:{line_of(path, 'pagerduty:')}: alerts.sources.pagerduty: ")
    assert "authenticate by routing key" in problem and "routing_key_env" in problem


def test_an_unknown_source_and_a_token_given_as_token_env(tmp_path: Path) -> None:
    text = "alerts:\n  sources:\n    nagios: {token_env: X}\n    grafana: {token_env: 's3cr3t!'}\n"
    problems = problems_of(write(tmp_path, BASE + text))
    assert any("alerts.sources.nagios" in p and "'alertmanager'" in p for p in problems)
    [env_problem] = [p for p in problems if "alerts.sources.grafana.token_env" in p]
    assert "not an environment variable name" in env_problem
    assert "s3cr3t" not in env_problem


# -- routing keys -------------------------------------------------------------------------


def test_a_short_routing_key_is_refused_without_showing_it(tmp_path: Path) -> None:
    secret = "abcdef0123456789abcdef012345678"  # 31 characters
    path = write(tmp_path, BASE.replace("checkout: {", f"checkout: {{routing_key: {secret}, "))
    [problem] = problems_of(path)
    assert problem.startswith(
        f"{path}:{line_of(path, 'checkout:')}: services.checkout.routing_key: must"
    )
    assert secret not in problem and secret[:8] not in problem


def test_a_routing_key_of_digits_is_refused_without_showing_it(tmp_path: Path) -> None:
    digits = "1" * 32  # YAML reads it as a number
    path = write(tmp_path, BASE.replace("checkout: {", f"checkout: {{routing_key: {digits}, "))
    [problem] = problems_of(path)
    assert "services.checkout.routing_key: must be exactly 32" in problem
    assert "1111" not in problem


def test_two_services_with_one_routing_key(tmp_path: Path) -> None:
    text = BASE.replace("checkout: {", f"checkout: {{routing_key: {KEY}, ").replace(
        "search: {", f"search: {{routing_key: {KEY}, "
    )
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    assert problem.startswith(
        f"{path}:{line_of(path, 'search:')}: services.search.routing_key: is already"
    )
    assert "'checkout'" in problem and KEY not in problem


def test_routing_key_and_routing_key_env_together(tmp_path: Path) -> None:
    text = BASE.replace(
        "checkout: {", f"checkout: {{routing_key: {KEY}, routing_key_env: CHECKOUT_KEY, "
    )
    [problem] = problems_of(write(tmp_path, text))
    assert "services.checkout.routing_key_env: give routing_key or routing_key_env" in problem
    assert KEY not in problem


def test_a_routing_key_stays_out_of_repr() -> None:
    service = Service(escalation_policy="payments", routing_key=KEY)
    assert KEY not in repr(service) and KEY not in str(service)


# -- matching -----------------------------------------------------------------------------


def route(**fields: object) -> AlertRoute:
    return AlertRoute.model_validate({"service": "checkout", **fields})


def test_match_re_is_always_a_full_match() -> None:
    critical = route(match_re={"severity": "critical|page"})
    assert critical.matches({"severity": "critical"})
    assert critical.matches({"severity": "page"})
    assert not critical.matches({"severity": "critical2"})
    assert not critical.matches({"severity": "not-critical"})
    assert not critical.matches({"severity": "pager"})
    assert not route(match_re={"severity": "crit"}).matches({"severity": "critical"})
    assert route(match_re={"severity": "crit.*"}).matches({"severity": "critical"})


def test_missing_labels_are_the_empty_string() -> None:
    assert not route(match={"env": "prod"}).matches({})
    assert route(match={"env": ""}).matches({})
    assert route(match_re={"env": ".*"}).matches({})
    assert not route(match_re={"env": ".+"}).matches({})
    assert route(match_re={"env": "prod|"}).matches({"team": "x"})


def test_every_condition_must_hold() -> None:
    both = route(match={"service": "checkout", "team": "pay"}, match_re={"severity": "p[12]"})
    assert both.matches({"service": "checkout", "team": "pay", "severity": "p1", "x": "y"})
    assert not both.matches({"service": "checkout", "team": "pay", "severity": "p3"})
    assert not both.matches({"service": "checkout", "severity": "p1"})
    assert route().matches({}) and route().matches({"anything": "at all"})


def test_the_first_matching_route_wins(tmp_path: Path) -> None:
    config, _ = load_file(write(tmp_path, BASE + ROUTES), required=True)
    routes = config.alert_routes
    critical = {"service": "checkout", "severity": "critical", "team": "search"}
    assert route_for(routes, critical) == (0, routes[0])
    assert route_for(routes, {"service": "checkout", "team": "search"}) == (1, routes[1])
    assert route_for(routes, {"service": "checkout", "severity": "warning"}) == (2, routes[2])
    assert route_for(routes[:2], {"service": "billing"}) is None
    assert route_for([], {"service": "checkout"}) is None


# -- warnings -----------------------------------------------------------------------------


def test_warnings_about_routes_and_tokens() -> None:
    no_default = config_of(BASE + ROUTES.split("  - match: {}")[0])
    [warning] = no_default.alert_warnings(default_token=True, environ={})
    assert "alerts no route matches are stored but page nobody" in warning
    assert "`- match: {} service: <name>`" in warning

    config = config_of(BASE + ROUTES)
    assert config.alert_warnings(default_token=True, environ={}) == []
    [token] = config.alert_warnings(default_token=False, environ={})
    assert "/alerts/alertmanager and /alerts/grafana will refuse every request" in token

    early = config_of(BASE + "alert_routes:\n  - {service: search}\n  - {service: checkout}\n")
    [unreachable] = early.alert_warnings(default_token=True, environ={})
    assert "route 1 matches every alert, so the 1 route(s) after it never match" in unreachable

    nothing = config_of(BASE)
    [routes] = nothing.alert_warnings(default_token=True, environ={})
    assert "alert_routes: none are configured" in routes
    # No way in and no routes: only the token warning (a config that does not use alerts).
    [token] = nothing.alert_warnings(default_token=False, environ={})
    assert "refuse every request" in token


# -- firebreak check ----------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "work"
    directory.mkdir()
    monkeypatch.chdir(directory)
    return directory


def check(path: Path, **env: str) -> tuple[int, str, str]:
    result = invoke(["check"], FIREBREAK_CONFIG=str(path), **TOKENS, **env)
    return result.exit_code, result.stdout, result.stderr


def test_check_accepts_routes_and_warns_about_nothing(workdir: Path) -> None:
    path = write(workdir, BASE + ROUTES)
    code, out, err = check(path, FIREBREAK_ALERT_TOKEN="t")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == f"Configuration OK ({path})."
    assert "warning" not in out  # (a note says there is no runbook catalogue here)


def test_check_refuses_a_route_to_an_unknown_service_with_file_line_and_key(
    workdir: Path,
) -> None:
    path = write(workdir, BASE + "alert_routes:\n  - match: {}\n    service: nope\n")
    done = run_script(["check"], child_env(FIREBREAK_CONFIG=str(path), **TOKENS), workdir)
    assert done.returncode == 2
    line = line_of(path, "service: nope")
    assert f"error: {path}:{line}: alert_routes.0.service: 'nope' is not in services:" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr and "Configuration OK" not in done.stdout


def test_check_refuses_a_bad_regex_naming_it(workdir: Path) -> None:
    path = write(workdir, BASE + "alert_routes:\n  - match_re: {job: '[api'}\n    service: x\n")
    code, _, err = check(path)
    assert code == 2
    assert f"error: {path}:{line_of(path, '[api')}: alert_routes.0.match_re.job: '[api' " in err
    assert "unterminated character set" in err


def test_check_warns_but_passes_without_a_default_route(workdir: Path) -> None:
    path = write(workdir, BASE + "alert_routes:\n  - {match: {team: search}, service: search}\n")
    code, out, err = check(path, FIREBREAK_ALERT_TOKEN="t")
    assert code == 0, err
    assert "warning: alert_routes: no default route, so alerts no route matches are stored" in out


def test_check_warns_when_no_alert_token_is_configured(workdir: Path) -> None:
    path = write(workdir, BASE + ROUTES)
    code, out, _ = check(path)
    assert code == 0
    assert "warning: alerts: FIREBREAK_ALERT_TOKEN is not set" in out
    # A source's own token is enough.
    sources = "alerts:\n  sources:\n    grafana: {token_env: GRAFANA_TOKEN}\n"
    path = write(workdir, BASE + ROUTES + sources)
    code, out, _ = check(path, GRAFANA_TOKEN="g")
    assert code == 0 and "warning" not in out


def test_check_refuses_a_token_env_naming_an_unset_variable(workdir: Path) -> None:
    sources = "alerts:\n  sources:\n    alertmanager: {token_env: FIREBREAK_TEST_AM_TOKEN}\n"
    path = write(workdir, BASE + ROUTES + sources)
    code, _, err = check(path)
    assert code == 2
    assert (
        "error: environment: FIREBREAK_TEST_AM_TOKEN is not set, but "
        "alerts.sources.alertmanager.token_env names it" in err
    )


def test_check_warns_of_unset_and_refuses_malformed_or_shared_routing_keys(workdir: Path) -> None:
    text = BASE.replace("checkout: {", "checkout: {routing_key_env: CHECKOUT_KEY, ").replace(
        "search: {", "search: {routing_key_env: SEARCH_KEY, "
    )
    path = write(workdir, text + ROUTES)
    code, out, err = check(path, FIREBREAK_ALERT_TOKEN="t")
    assert code == 0, err  # unset: that service's PagerDuty events are refused, with a warning
    assert "warning: environment: CHECKOUT_KEY is not set, but services.checkout." in out
    assert "warning: environment: SEARCH_KEY is not set" in out

    short = "tooshort0123456789"
    code, _, err = check(path, FIREBREAK_ALERT_TOKEN="t", CHECKOUT_KEY=short, SEARCH_KEY=KEY)
    assert code == 2
    assert "CHECKOUT_KEY (services.checkout.routing_key_env) must hold exactly 32" in err
    assert short not in err and KEY not in err

    code, _, err = check(path, FIREBREAK_ALERT_TOKEN="t", CHECKOUT_KEY=KEY, SEARCH_KEY=KEY)
    assert code == 2
    assert "services.checkout.routing_key_env (CHECKOUT_KEY) and services.search." in err
    assert "are the same routing key" in err and KEY not in err

    code, out, err = check(path, FIREBREAK_ALERT_TOKEN="t", CHECKOUT_KEY=KEY, SEARCH_KEY=OTHER_KEY)
    assert (code, err) == (0, ""), err
    assert "warning" not in out


def test_check_refuses_a_literal_key_shared_with_a_variable(workdir: Path) -> None:
    text = BASE.replace("checkout: {", f"checkout: {{routing_key: {KEY}, ").replace(
        "search: {", "search: {routing_key_env: SEARCH_KEY, "
    )
    path = write(workdir, text + ROUTES)
    code, _, err = check(path, FIREBREAK_ALERT_TOKEN="t", SEARCH_KEY=KEY)
    assert code == 2
    assert "services.checkout.routing_key and services.search.routing_key_env (SEARCH_KEY)" in err
    assert KEY not in err


def test_check_refuses_duplicate_literal_routing_keys_without_echoing_them(workdir: Path) -> None:
    text = BASE.replace("checkout: {", f"checkout: {{routing_key: {KEY}, ").replace(
        "search: {", f"search: {{routing_key: {KEY}, "
    )
    path = write(workdir, text)
    code, out, err = check(path, FIREBREAK_ALERT_TOKEN="t")
    assert code == 2
    assert (
        f"error: {path}:{line_of(path, 'search:')}: services.search.routing_key: is already" in err
    )
    assert KEY not in out + err


# -- bearer tokens ------------------------------------------------------------------------

SOURCES = AlertsSection.model_validate({"sources": {"grafana": {"token_env": "GRAFANA_TOKEN"}}})
ENVIRON = {"GRAFANA_TOKEN": "grafana-secret"}


def ok(
    header: str | None,
    source: str = "alertmanager",
    *,
    alerts: AlertsSection = SOURCES,
    default_token: str | None = "default-secret",
    environ: Mapping[str, str] = ENVIRON,
) -> bool:
    return bearer_ok(
        header,
        source,  # type: ignore[arg-type]  # unknown sources are tested too
        alerts=alerts,
        default_token=default_token,
        environ=environ,
    )


def test_the_default_token_opens_both_bearer_sources() -> None:
    assert ok("Bearer default-secret")
    assert ok("Bearer default-secret", "grafana")
    assert ok("bearer default-secret") and ok("BEARER  default-secret ")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer default-secre",
        "Bearer default-secret2",
        "Basic default-secret",
        "default-secret",
        "Token default-secret",
        "Bearer d\u00e9fault-secret",
        "Bearer \ud800",
    ],
)
def test_anything_but_the_right_bearer_token_is_refused(header: str | None) -> None:
    assert not ok(header)


def test_a_source_token_opens_only_its_own_source() -> None:
    assert ok("Bearer grafana-secret", "grafana")
    assert not ok("Bearer grafana-secret", "alertmanager")
    assert ok("Bearer grafana-secret", "grafana", default_token=None)
    # The variable unset: only the default token is left.
    assert not ok("Bearer grafana-secret", "grafana", environ={})
    assert ok("Bearer default-secret", "grafana", environ={})


def test_no_token_configured_refuses_everything() -> None:
    empty = AlertsSection()
    for header in ("Bearer ", "Bearer x", "Bearer None", None):
        assert not ok(header, alerts=empty, default_token=None, environ={})
        assert not ok(header, alerts=empty, default_token="", environ={})
    assert not ok("Bearer grafana-secret", "grafana", default_token=None, environ={})


def test_pagerduty_and_unknown_sources_are_never_bearer_authenticated() -> None:
    assert not ok("Bearer default-secret", "pagerduty")
    assert not ok("Bearer default-secret", "nagios")
    assert not ok("Bearer grafana-secret", "Grafana")


def test_presented_bearer() -> None:
    assert presented_bearer("Bearer abc") == "abc"
    assert presented_bearer("  bearer   abc  ") == "abc"
    assert presented_bearer("Bearer a b") == "a b"  # no token has a space: it never matches
    assert presented_bearer("Basic abc") is None
    assert presented_bearer("Bearer   ") is None


# -- routing keys at /v2/enqueue ----------------------------------------------------------

SERVICES = {
    "checkout": Service(escalation_policy="payments", routing_key=KEY),
    "search": Service(escalation_policy="payments", routing_key_env="SEARCH_KEY"),
    "billing": Service(escalation_policy="payments"),
}


def test_routing_keys_find_their_service() -> None:
    environ = {"SEARCH_KEY": OTHER_KEY}
    assert service_for_routing_key(KEY, SERVICES, environ) == "checkout"
    assert service_for_routing_key(OTHER_KEY, SERVICES, environ) == "search"
    assert service_for_routing_key(OTHER_KEY, SERVICES, {}) is None  # variable unset
    assert service_for_routing_key("B" * 32, SERVICES, environ) is None
    assert service_for_routing_key(KEY.upper(), SERVICES, environ) is None
    assert service_for_routing_key(KEY[:-1], SERVICES, environ) is None
    assert service_for_routing_key("", SERVICES, {"SEARCH_KEY": ""}) is None
    assert service_for_routing_key("\ud800" * 32, SERVICES, environ) is None


def test_every_configured_key_is_compared_whichever_matches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[bytes] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)  # bot.alerts.auth calls hmac.<name>
    environ = {"SEARCH_KEY": OTHER_KEY}
    assert service_for_routing_key(KEY, SERVICES, environ) == "checkout"  # the first one
    assert compared == [KEY.encode(), OTHER_KEY.encode()]
    compared.clear()
    assert ok("Bearer default-secret", "grafana")  # the first candidate
    assert compared == [b"default-secret", b"grafana-secret"]
