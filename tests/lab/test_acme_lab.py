"""ACME certificates on the lab machines, for real: the program's certificate scripts, timer and Nginx config against pebble.

A fresh application server goes from no certificate to valid HTTPS for every route host name; a second
run obtains nothing; the renewal timer is enabled and scheduled; renewal starts with a third of the
lifetime left, also when the timer's service runs it; a forced renewal swaps every certificate while
requests keep flowing (the figure is printed; benchmarks/acme_renewal.py repeats it); a failing renewal
exits non-zero, leaves the timer's unit failed and the served certificates alone; a host name removed
from the routes stops renewing, and one added gets its certificate on the next run. See lab/acme.py.
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Iterator

import pytest

from components.services.edge import acme
from components.shared.service import Route
from lab.acme import AcmeLab, RequestLoop, acme_lab, missing_tools
from tests.support.skip_policy import needs_root

pytestmark = [
    needs_root("the ACME lab's network namespaces and bridge"),
    pytest.mark.skipif(
        bool(missing_tools()), reason=f"needs Debian's pebble, lego, nginx, busybox-static (.ci/run installs them): missing {missing_tools()}"
    ),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AcmeLab]:
    with acme_lab(tmp_path_factory.mktemp("acme")) as running:
        yield running


@pytest.fixture(scope="module")
def roots(lab: AcmeLab) -> ssl.SSLContext:
    return lab.pebble_roots()


def _ok(step) -> str:
    assert step.returncode == 0, step.stdout + step.stderr
    return step.stdout


def test_a_fresh_server_goes_from_no_certificate_to_valid_https_for_every_route_host(lab: AcmeLab, roots: ssl.SSLContext) -> None:
    hosts = lab.config.acme_hosts()
    assert len(hosts) == 7
    # `pulumi up`'s order: install (placeholders), the renewal timer, the Nginx container, its config,
    # then issuance.
    assert "placeholder certificate for registry.samarth.example.org" in _ok(lab.install())
    _ok(lab.install_timer())
    lab.start_nginx()
    _ok(lab.reload())
    # Nginx runs before any certificate exists: 443 serves the placeholder, which no client trusts.
    with pytest.raises(ssl.SSLCertVerificationError):
        lab.served_certificate("registry.samarth.example.org", roots)
    out = _ok(lab.certificates("renew"))
    assert f"certificates: {len(hosts)} obtained, 0 current; nginx reloaded for: {' '.join(hosts)}" in out
    for host in hosts:
        assert lab.wait_served(host, roots) == lab.live_certificate(host), host
    assert lab.https_status("registry.samarth.example.org", "/", roots) == 200
    # lego registered with the account key the program gave it (from state), root-only.
    assert lab.config.edge.tls.acme is not None
    key_file = lab.path(acme.account_key_path(lab.config.edge.tls.acme, lab.acme_dir))
    assert key_file.read_text() == lab.account_key
    assert (key_file.parent.parent / "account.json").exists()
    assert oct(key_file.stat().st_mode & 0o777) == "0o600" and key_file.stat().st_uid == 0
    assert oct(lab.path(f"{lab.acme_dir}/live").stat().st_mode & 0o777) == "0o700"


def test_the_vault_host_serves_its_challenge_path_and_nothing_else(lab: AcmeLab, roots: ssl.SSLContext) -> None:
    vault = "vault.samarth.example.org"
    # Its certificate came from pebble, whose address is not on the route's allow list.
    assert lab.wait_served(vault, roots) == lab.live_certificate(vault)
    assert lab.https_status(vault, "/ui/", roots) == 403
    assert lab.http_status(vault, f"{acme.CHALLENGE_PATH}no-such-token") == 404
    assert lab.http_status(vault, "/ui/") == 301
    assert lab.http_status("unrouted.samarth.example.org", f"{acme.CHALLENGE_PATH}no-such-token") == 301


def test_a_second_run_obtains_nothing_and_does_not_reload(lab: AcmeLab) -> None:
    before = {h: lab.live_certificate(h) for h in lab.config.acme_hosts()}
    out = _ok(lab.certificates("renew"))
    assert "certificates: 0 obtained, 7 current; nginx not reloaded (nothing changed)" in out
    assert {h: lab.live_certificate(h) for h in before} == before


def test_the_renewal_timer_is_enabled_and_scheduled_twice_a_day(lab: AcmeLab) -> None:
    timer = f"{acme.UNIT}.timer"
    assert _ok(lab.systemctl("is-enabled", timer)).strip() == "enabled"
    assert _ok(lab.systemctl("is-active", timer)).strip() == "active"
    # 04:00 or 16:00 plus up to an hour's random delay, in the machine's time zone (UTC).
    assert _ok(lab.systemctl("show", "--property=TimersCalendar", "--value", timer)).count("*-*-* 04,16:00:00") == 1
    next_run = _ok(lab.systemctl("show", "--property=NextElapseUSecRealtime", "--value", timer)).strip()
    assert re.search(r" (04|16):\d\d:\d\d ", next_run), next_run


def test_the_timer_starts_the_renewal_by_itself(lab: AcmeLab) -> None:
    """With the lab stack's schedule (every minute, no random delay) systemd starts the renewal service by
    itself; with nothing due it obtains nothing. The default schedule is installed again afterwards."""
    assert lab.config.edge.tls.acme is not None
    every_minute = lab.config.edge.tls.acme.model_copy(update={"renewal_schedule": "minutely", "renewal_random_delay": "0"})
    tls = lab.config.edge.tls.model_copy(update={"acme": every_minute})
    config = lab.config.model_copy(update={"edge": lab.config.edge.model_copy(update={"tls": tls})})
    timer = f"{acme.UNIT}.timer"
    before = lab.renewal_journal()
    try:
        _ok(lab.install_timer(config))
        assert _ok(lab.systemctl("show", "--property=TimersCalendar", "--value", timer)).count("OnCalendar=*-*-* *:*:00 ") == 1
        deadline = time.monotonic() + 150
        while not re.search(r"^certificates: 0 obtained, 7 current", lab.renewal_journal()[len(before):], re.M):
            assert time.monotonic() < deadline, "the timer did not start the renewal: " + _ok(lab.systemctl("status", "--no-pager", timer))
            time.sleep(2)
        assert _ok(lab.systemctl("show", "--property=LastTriggerUSec", "--value", timer)).strip() not in ("", "n/a")
        assert _ok(lab.systemctl("show", "--property=Result", "--value", f"{acme.UNIT}.service")).strip() == "success"
    finally:
        _ok(lab.install_timer())
    assert _ok(lab.systemctl("show", "--property=TimersCalendar", "--value", timer)).count("*-*-* 04,16:00:00") == 1


def test_renewal_starts_with_a_third_of_the_lifetime_left_and_the_timer_renews(lab: AcmeLab, roots: ssl.SSLContext) -> None:
    # One-hour certificates: 30 minutes on, half is left; 45 minutes on, a quarter.
    assert "0 obtained, 7 current" in _ok(lab.certificates("renew", clock_offset_seconds=30 * 60))
    before = lab.live_certificate("files.samarth.example.org")
    # The renewal as the timer runs it: systemd starts the service, as root, with systemd's environment.
    with lab.clock_ahead(45 * 60):
        run = lab.renewal_run()
    assert run.returncode == 0, run.stdout + run.stderr
    assert "7 obtained, 0 current; nginx reloaded for:" in run.stdout, run.stdout
    assert _ok(lab.systemctl("show", "--property=Result", "--value", f"{acme.UNIT}.service")).strip() == "success"
    renewed = lab.wait_served("files.samarth.example.org", roots)
    assert renewed != before and renewed == lab.live_certificate("files.samarth.example.org")


def test_a_forced_renewal_swaps_certificates_without_a_failed_request(lab: AcmeLab, roots: ssl.SSLContext) -> None:
    host = "registry.samarth.example.org"
    before = lab.served_certificate(host, roots)
    with RequestLoop(lab, host, roots).running() as loop:
        step = lab.certificates("force-renew")
        served = lab.wait_served(host, roots)
    out = _ok(step)
    print(f"\nforced renewal of 7 certificates took {step.seconds:.1f}s; {loop.sent} HTTPS requests during it, "
          f"{len(loop.failures)} failed")
    assert "7 obtained" in out and "nginx reloaded for:" in out
    assert served != before and served == lab.live_certificate(host)
    assert loop.sent > 50
    assert loop.failures == []


def test_a_failing_renewal_exits_non_zero_and_keeps_serving(lab: AcmeLab, roots: ssl.SSLContext) -> None:
    assert lab.config.edge.tls.acme is not None
    broken_acme = lab.config.edge.tls.acme.model_copy(update={"directory_url": f"https://{lab.ca.address}:14999/dir"})
    broken = lab.config.model_copy(
        update={"edge": lab.config.edge.model_copy(update={"tls": lab.config.edge.tls.model_copy(update={"acme": broken_acme})})}
    )
    host = "api.samarth.example.org"
    before = lab.live_certificate(host)
    try:
        _ok(lab.install(broken))
        step = lab.certificates("force-renew")
        assert step.returncode != 0
        assert "no certificate obtained for: api.samarth.example.org" in step.stderr
        assert lab.served_certificate(host, roots) == before == lab.live_certificate(host)
        # The timer's run of a due renewal fails alike, and leaves its unit failed, for `systemctl --failed`.
        with lab.clock_ahead(45 * 60):
            run = lab.renewal_run()
        assert run.returncode != 0
        assert "no certificate obtained for: api.samarth.example.org" in run.stdout, run.stdout
        assert f"{acme.UNIT}.service" in _ok(lab.systemctl("list-units", "--failed", "--plain", "--no-legend"))
        assert lab.served_certificate(host, roots) == before == lab.live_certificate(host)
    finally:
        _ok(lab.install())
        _ok(lab.systemctl("reset-failed", f"{acme.UNIT}.service"))


def test_a_name_the_ca_cannot_reach_holds_back_only_its_own_step(lab: AcmeLab, roots: ssl.SSLContext) -> None:
    """As `pulumi up` runs it: the registry's name in a step of its own, then every name. A name whose DNS
    does not point at the server yet fails the every-name step, naming it, and nothing else."""
    pending, registry = "api.samarth.example.org", "registry.samarth.example.org"
    before = lab.live_certificate(pending)
    with lab.unresolvable(pending):
        alone = lab.certificates("force-renew", names=[registry])
        assert alone.returncode == 0, alone.stderr
        assert lab.wait_served(registry, roots) == lab.live_certificate(registry)
        every = lab.certificates("force-renew")
        assert every.returncode != 0
        assert f"no certificate obtained for: {pending}; the names keep their previous certificate. " \
               f"Retry with: samarth-certificates renew {pending}" in every.stderr, every.stderr
        assert lab.live_certificate(pending) == before
    retried = lab.certificates("renew", names=[pending])
    assert retried.returncode == 0, retried.stderr
    refused = lab.certificates("renew", names=["elsewhere.example.net"])
    assert refused.returncode != 0 and "elsewhere.example.net is not one of the names" in refused.stderr


def test_a_removed_host_stops_renewing_and_an_added_one_gets_its_certificate(lab: AcmeLab, roots: ssl.SSLContext) -> None:
    removed = "esamwad.samarth.example.org"
    routes = [r for r in lab.config.edge.routes if r.host != removed]
    smaller = lab.config.model_copy(update={"edge": lab.config.edge.model_copy(update={"routes": routes})})
    _ok(lab.install(smaller))
    _ok(lab.reload(smaller))
    out = _ok(lab.certificates("renew"))
    assert f"removed {removed} (no longer routed)" in out and "0 obtained, 6 current" in out
    assert not lab.path(f"{lab.acme_dir}/live/{removed}.crt").exists()
    assert removed not in _ok(lab.certificates("status"))
    with pytest.raises(ssl.SSLError):
        lab.served_certificate(removed, roots)
    # A new name in the routes gets its certificate on the next run (a placeholder first, so that
    # nginx -t passes); the removed one, back, gets the still-current certificate the client kept.
    added = "new.samarth.example.org"
    larger = lab.config.model_copy(update={"edge": lab.config.edge.model_copy(
        update={"routes": [*lab.config.edge.routes, Route(host=added, upstream="swarm", port=8003)]})})
    _ok(lab.install(larger))
    _ok(lab.reload(larger))
    assert f"1 obtained, 7 current; nginx reloaded for: {removed} {added}" in _ok(lab.certificates("renew"))
    for host in (removed, added):
        assert lab.wait_served(host, roots) == lab.live_certificate(host)
    _ok(lab.install())
    _ok(lab.reload())
    assert f"removed {added} (no longer routed)" in _ok(lab.certificates("renew"))


def test_status_reads_days_left_per_certificate(lab: AcmeLab) -> None:
    lines = _ok(lab.certificates("status")).splitlines()
    assert [line.split(":")[0] for line in lines] == lab.config.acme_hosts()
    assert all(" 0 days left, until " in line and "Pebble Intermediate CA" in line for line in lines), lines
