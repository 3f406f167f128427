"""ACME certificates without the lab: config guardrails, the rendered Nginx config, the account key,
the resources under mocks, the policy rule, the plan and the systemd units (tests/lab/test_acme_lab.py runs
the scripts for real against pebble)."""

from __future__ import annotations

import copy
import fcntl
import shlex
import shutil
import subprocess
from base64 import b64encode
from pathlib import Path

import pytest
import yaml

from components.config import StackConfig, load_stack_config
from components.services.edge import acme
from components.services.edge.settings import LETSENCRYPT_PRODUCTION, LETSENCRYPT_STAGING, Acme
from policies import rules
from tests.support.program_runs import program_run
from tests.support.rendered import nginx_config
from tools.offline import PROJECT, ProgramRun, is_secret, read_stack_values, reveal, stack_deployment, stack_file
from tools.plan import render_certificates

COMMAND = "command:remote:Command"
CONTAINER = "docker:index/container:Container"


def _config(stack: str = "prod") -> StackConfig:
    values, _ = read_stack_values(stack_file(stack))
    return load_stack_config(PROJECT, values)


def _section(key: str, stack: str = "prod") -> dict:
    document = yaml.safe_load(stack_file(stack).read_text())
    return copy.deepcopy(document["config"][f"{PROJECT}:{key}"])


def _fails_early(**overrides) -> str:
    run = program_run("prod", overrides=overrides)
    assert run.error is not None, "bad config was accepted"
    assert run.registrations == [], "resources were registered before the config was rejected"
    return str(run.error)


# --- config ------------------------------------------------------------------------------------------


def test_acme_is_the_default_with_production_only_where_a_stack_sets_it() -> None:
    prod, staging = _config("prod"), _config("staging")
    assert prod.edge.tls.mode == staging.edge.tls.mode == "acme"
    assert prod.edge.tls.acme is not None and prod.edge.tls.acme.directory_url == LETSENCRYPT_PRODUCTION
    assert staging.edge.tls.acme is not None and staging.edge.tls.acme.directory_url == LETSENCRYPT_STAGING
    assert Acme(email="ops@example.org").directory_url == LETSENCRYPT_STAGING
    # Every routed name, observability's included, once.
    assert prod.acme_hosts() == sorted({route.host for _, route in prod.edge_routes()})
    assert "sentry.samarth.example.org" in prod.acme_hosts() and len(prod.acme_hosts()) == 7


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda t: t["files"].update({"other.example.com": {"certificatePath": "/a.pem", "keyPath": "/a.key"}}),
         "edge.tls.files.other.example.com: 'other.example.com' is not under domain 'samarth.example.org'"),
        (lambda t: t["files"].update({"intranet.samarth.example.org": {"certificatePath": "/a.pem", "keyPath": "/a.key"}}),
         "edge.tls.files.intranet.samarth.example.org: 'intranet.samarth.example.org' is not routed through Nginx"),
        (lambda t: t.update(mode="files"), "edge.tls.certificatePath: required because mode is 'files'"),
        (lambda t: t.update(mode="files", certificatePath="/a.pem", keyPath="/a.key"), "edge.tls.acme: only for mode 'acme'"),
        (lambda t: t.update(certificatePath="/a.pem"), "edge.tls.certificatePath: only for mode 'files'"),
        (lambda t: t.pop("acme"), "edge.tls.acme: required because mode is 'acme'"),
        (lambda t: t["acme"].update(email="devops"), "edge.tls.acme.email: 'devops' is not an email address"),
        (lambda t: t["acme"].update(directoryUrl="http://acme.example.org/dir"), "edge.tls.acme.directoryUrl"),
        (lambda t: t["acme"].update(caCertificate="ca.pem"), "edge.tls.acme.caCertificate: 'ca.pem' is not an absolute path"),
        (lambda t: t.update(mode="manual"), "edge.tls.mode"),
        (lambda t: t["acme"].update(renewalSchedule="every day"),
         "edge.tls.acme.renewalSchedule: 'every day' is not a calendar event systemd reads"),
        (lambda t: t["acme"].update(renewalSchedule="*-*-* 24:00:00"),
         "edge.tls.acme.renewalSchedule: '*-*-* 24:00:00' is not a calendar event systemd reads"),
        (lambda t: t["acme"].update(renewalRandomDelay="-5min"),
         "edge.tls.acme.renewalRandomDelay: '-5min' is not a time span systemd reads"),
        (lambda t: t["acme"].update(renewalRandomDelay="infinity"),
         "edge.tls.acme.renewalRandomDelay: 'infinity' is not a time span systemd reads"),
        (lambda t: t["acme"].update(renewalRandomDelay=-300), "edge.tls.acme.renewalRandomDelay: -300 is negative"),
        (lambda t: t["acme"].update(renewalRandomDelay=True), "edge.tls.acme.renewalRandomDelay: Input should be a valid string"),
    ],
)
def test_certificate_mistakes_fail_early_naming_the_key(change, expected: str) -> None:
    edge_section = _section("edge")
    edge_section["tls"].setdefault("files", {})
    change(edge_section["tls"])
    assert expected in _fails_early(edge=edge_section)


def test_a_route_host_outside_the_domain_needs_no_certificate_to_fail() -> None:
    edge_section = _section("edge")
    edge_section["routes"][0]["host"] = "registry.other.example.com"
    assert "edge.routes[0].host: 'registry.other.example.com' is not under domain" in _fails_early(edge=edge_section)


def test_a_moving_client_image_tag_is_refused() -> None:
    versions = _section("versions")
    versions["lego"] = "goacme/lego:latest"
    assert "versions.lego: 'goacme/lego:latest' uses the moving tag 'latest'" in _fails_early(versions=versions)


# --- the rendered Nginx config ----------------------------------------------------------------------


def _blocks(text: str) -> list[str]:
    return rules._SERVER_BLOCK.findall(text)


def test_port_80_serves_every_acme_name_its_challenge_outside_any_allow_list() -> None:
    config = _config()
    text = nginx_config(config, "10.20.0.10", "10.20.0.31")
    (challenge,) = [b for b in _blocks(text) if acme.CHALLENGE_PATH in b]
    assert "listen 80;" in challenge
    assert f"server_name {' '.join(config.acme_hosts())};" in challenge
    assert "allow" not in challenge and "deny" not in challenge
    assert f"root {acme.NGINX_WEBROOT};" in challenge and "return 301 https://$host$request_uri;" in challenge
    # The Vault route keeps its allow list on 443.
    (vault,) = [b for b in _blocks(text) if "server_name vault.samarth.example.org;" in b]
    assert "deny all;" in vault and f"ssl_certificate {acme.NGINX_LIVE_DIR}/vault.samarth.example.org.crt;" in vault
    assert rules.certificate_names(text) == {h: f"{acme.NGINX_LIVE_DIR}/{h}.crt" for h in config.acme_hosts()}
    assert rules.challenge_names(text) == set(config.acme_hosts())
    assert rules.ACME_CERTIFICATES == acme.NGINX_LIVE_DIR + "/" and rules.ACME_CHALLENGE == acme.CHALLENGE_PATH


def test_a_name_under_files_is_served_from_the_operators_files_and_gets_no_challenge() -> None:
    edge_section = _section("edge")
    edge_section["tls"]["files"] = {
        "vault.samarth.example.org": {"certificatePath": "/etc/ssl/private-ca/vault.pem", "keyPath": "/etc/ssl/private-ca/vault.key"}
    }
    run = program_run("prod", overrides={"edge": edge_section})
    assert run.error is None, run.error
    text = run.named(COMMAND, "nginx-reload").plain_inputs["stdin"]
    assert rules.certificate_names(text)["vault.samarth.example.org"] == "/etc/ssl/private-ca/vault.pem"
    assert "vault.samarth.example.org" not in rules.challenge_names(text)
    assert "vault.samarth.example.org" not in run.named(COMMAND, "nginx-certificates-install").plain_inputs["create"]
    (nginx,) = [c for c in run.of_type(CONTAINER) if c.plain_inputs["name"] == "nginx"]
    mounts = {m["containerPath"]: m for m in nginx.plain_inputs["volumes"]}
    assert mounts["/etc/ssl/private-ca"]["readOnly"] is True


def test_mode_files_keeps_the_operators_single_certificate_and_no_acme() -> None:
    edge_section = _section("edge")
    edge_section["tls"] = {"mode": "files", "certificatePath": "/etc/ssl/samarth/fullchain.pem", "keyPath": "/etc/ssl/samarth/privkey.pem"}
    run = program_run("prod", overrides={"edge": edge_section})
    assert run.error is None, run.error
    assert not [r for r in run.registrations if "certificates" in r.name or r.name.endswith("acme-account-key")]
    text = run.named(COMMAND, "nginx-reload").plain_inputs["stdin"]
    assert set(rules.certificate_names(text).values()) == {"/etc/ssl/samarth/fullchain.pem"}
    assert acme.CHALLENGE_PATH not in text


# --- resources under mocks --------------------------------------------------------------------------


def test_account_key_is_a_state_secret_and_commands_run_in_bootstrap_order(stack_run: ProgramRun) -> None:
    (key,) = stack_run.of_type("random:index/randomBytes:RandomBytes")
    assert key.plain_inputs["length"] == acme.ACCOUNT_KEY_BYTES
    install = stack_run.named(COMMAND, "nginx-certificates-install")
    assert is_secret(install.inputs["stdin"]) and "PRIVATE KEY" in reveal(install.inputs["stdin"])
    assert "PRIVATE KEY" not in install.plain_inputs["create"]
    (container,) = [c for c in stack_run.of_type(CONTAINER) if c.plain_inputs["name"] == "nginx"]
    reload = stack_run.named(COMMAND, "nginx-reload")
    renew = stack_run.named(COMMAND, "nginx-certificates-renew")
    timer = stack_run.named(COMMAND, "nginx-certificates-timer")
    # Placeholders before the container and its config; issuance after the config serves the challenges.
    assert install.urn in container.dependencies
    assert {reload.urn, install.urn} <= set(renew.dependencies)
    assert install.urn in timer.dependencies
    assert len(renew.inputs["triggers"]) == 3
    mounts = {m["containerPath"]: m for m in container.plain_inputs["volumes"]}
    assert mounts[acme.NGINX_LIVE_DIR] == {"hostPath": f"{acme.ACME_DIR}/live", "containerPath": acme.NGINX_LIVE_DIR, "readOnly": True}
    assert mounts[acme.NGINX_WEBROOT]["hostPath"] == f"{acme.ACME_DIR}/webroot"
    # The registry's name gets its certificate in a step of its own, before every name's; the swarm's
    # registry logins wait for that real certificate (not the placeholder), and for no other name's.
    (registry_name,) = [r for r in stack_run.of_type(COMMAND) if r.name.startswith("nginx-certificate-")]
    assert {reload.urn, install.urn} <= set(registry_name.dependencies) and registry_name.urn in renew.dependencies
    routes = stack_deployment(stack_run.stack).config.edge_routes()
    (host,) = [route.host for _, route in routes if route.upstream == "registry"]
    assert registry_name.name == f"nginx-certificate-{host}"
    assert f"NAMES={host}\n" in registry_name.plain_inputs["create"]
    logins = [r for r in stack_run.of_type(COMMAND) if registry_name.urn in r.dependencies and r.name.endswith("-registry-login")]
    assert len(logins) == 3 and not [r for r in logins if renew.urn in r.dependencies]


def test_the_account_key_is_a_p256_key_openssl_and_lego_read() -> None:
    pem = acme.account_key_pem(b64encode(bytes(range(1, 33))).decode())
    result = subprocess.run(["openssl", "ec", "-noout", "-text"], input=pem, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "ASN1 OID: prime256v1" in result.stdout and "pub:" in result.stdout
    with pytest.raises(ValueError, match="32 random bytes"):
        acme.account_key_pem(b64encode(b"short").decode())


def test_account_key_path_is_where_lego_looks() -> None:
    # lego cmd/accounts_storage.go (v4.9.1 and v4.35.2): accounts/<host with ':' as '_'>/<email>/keys/<email>.key
    assert acme.account_key_path(Acme(email="ops@example.org", directoryUrl="https://10.0.0.3:14000/dir"), "/x") == (
        "/x/lego/accounts/10.0.0.3_14000/ops@example.org/keys/ops@example.org.key"
    )
    assert acme.account_key_path(Acme(email="ops@example.org", directoryUrl=LETSENCRYPT_PRODUCTION)).startswith(
        "/etc/samarth/acme/lego/accounts/acme-v02.api.letsencrypt.org/ops@example.org/"
    )


# --- policy, plan, units ----------------------------------------------------------------------------


def test_policy_names_an_acme_name_without_a_challenge_and_an_https_name_without_a_certificate() -> None:
    from tests.unit.test_policies import resource, violations

    text = nginx_config(_config(), "10.20.0.10", "10.20.0.31")
    assert violations(rules.tls_names_have_certificates, resource(COMMAND, {"stdin": text})) == []
    no_challenge = text.replace(" vault.samarth.example.org;\n    location /.well-known", ";\n    location /.well-known")
    assert violations(rules.tls_names_have_certificates, resource(COMMAND, {"stdin": no_challenge})) == [
        "vault.samarth.example.org gets its certificate over ACME, but port 80 does not serve "
        "/.well-known/acme-challenge/ for it to the CA"
    ]
    guarded = text.replace("        root /var/www/acme;", "        allow 10.0.0.0/8;\n        deny all;\n        root /var/www/acme;")
    assert len(violations(rules.tls_names_have_certificates, resource(COMMAND, {"stdin": guarded}))) == 7
    no_certificate = text.replace("    ssl_certificate /etc/nginx/acme/api.samarth.example.org.crt;\n", "")
    assert violations(rules.tls_names_have_certificates, resource(COMMAND, {"stdin": no_certificate})) == [
        "Nginx serves api.samarth.example.org over HTTPS without a certificate"
    ]


def test_plan_lists_the_names_that_get_certificates() -> None:
    lines = render_certificates(_config("staging"))
    assert lines[0] == "== Certificates (edge.tls.mode acme)"
    assert LETSENCRYPT_STAGING in lines[1] and "goacme/lego:v4.35.2" in lines[1]
    assert [line.strip() for line in lines[2:-1]] == _config("staging").acme_hosts()


def test_the_renewal_timer_runs_when_the_stack_says() -> None:
    default = Acme(email="ops@example.org")
    # The unit prod and staging have: their timer command is not re-run by this setting.
    assert acme.timer_unit(default) == (
        "[Unit]\nDescription=Renew the ACME certificates of Samarth's public names twice a day\n\n"
        "[Timer]\nOnCalendar=*-*-* 04,16:00:00\nRandomizedDelaySec=1h\nPersistent=true\n\n"
        "[Install]\nWantedBy=timers.target\n"
    )
    edge_section = _section("edge")
    edge_section["tls"]["acme"].update(renewalSchedule="*:0/2", renewalRandomDelay=90)
    run = program_run("prod", overrides={"edge": edge_section})
    assert run.error is None, run.error
    unit = acme.timer_unit(Acme(email="ops@example.org", renewalSchedule="*:0/2", renewalRandomDelay="90"))
    assert "\nOnCalendar=*:0/2\nRandomizedDelaySec=90\n" in unit and "names on the schedule *:0/2\n" in unit
    assert f"TIMER_UNIT={shlex.quote(unit)}" in run.named(COMMAND, "nginx-certificates-timer").inputs["create"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing (.ci/run installs systemd)")
@pytest.mark.parametrize("timing", [{}, {"renewalSchedule": "minutely", "renewalRandomDelay": "0"}])
def test_the_renewal_units_pass_systemd_analyze_verify(tmp_path: Path, timing: dict[str, str]) -> None:
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    (units / f"{acme.UNIT}.service").write_text(acme.SERVICE_UNIT)
    timer_unit = acme.timer_unit(Acme(email="ops@example.org", **timing))
    (units / f"{acme.UNIT}.timer").write_text(timer_unit)
    script = root / acme.SCRIPT_PATH.lstrip("/")
    script.parent.mkdir(parents=True)
    config = _config()
    assert config.edge.tls.acme is not None
    script.write_text(acme.certificates_script(acme.AcmeClient(config.edge.tls.acme, tuple(config.acme_hosts()), config.versions.lego)))
    script.chmod(0o700)
    # systemd executes ExecStart itself: without an interpreter line the exec fails (203/EXEC).
    assert script.read_text().startswith("#!/bin/sh\n")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", f"/etc/systemd/system/{acme.UNIT}.service",
         f"/etc/systemd/system/{acme.UNIT}.timer"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "Persistent=true" in timer_unit and "Type=oneshot" in acme.SERVICE_UNIT
    # The timer script installs exactly these units.
    assert f"SERVICE_UNIT={shlex.quote(acme.SERVICE_UNIT)}" in acme.timer_script(config.edge.tls.acme)
    assert f"TIMER_UNIT={shlex.quote(acme.timer_unit(config.edge.tls.acme))}" in acme.timer_script(config.edge.tls.acme)


def test_the_pinned_client_keeps_the_layout_the_scripts_rely_on() -> None:
    """lego's own files at the pinned tag (tests/support/fixtures/upstreams/lego-v4.35.2): the Dockerfile the
    published goacme/lego image is built from (the release config names it) and its entrypoint, where
    the account key is read, where webroot tokens go."""
    upstream = Path(__file__).parents[1] / "support" / "fixtures" / "upstreams" / "lego-v4.35.2"
    assert _config().versions.lego == "goacme/lego:v4.35.2"
    (published,) = yaml.safe_load((upstream / "goreleaser.yml").read_text())["dockers_v2"]
    assert published["images"] == ["goacme/lego"] and "{{ .Tag }}" in published["tags"]
    dockerfile = (upstream / published["dockerfile"]).read_text()
    # The script passes lego's arguments only: any entrypoint that is the lego binary does.
    assert 'ENTRYPOINT ["/lego"]' in dockerfile and "FROM alpine:" in dockerfile
    accounts = (upstream / "accounts_storage.go").read_text()
    assert 'baseKeysFolderName         = "keys"' in accounts
    assert 'strings.NewReplacer(":", "_", "/", string(os.PathSeparator)).Replace(serverURL.Host)' in accounts
    assert 'filepath.Join(rootPath, serverPath)' in accounts and 'filepath.Join(accountsPath, userID)' in accounts
    assert "userID := email" in accounts
    webroot = (upstream / "webroot.go").read_text()
    assert "http01.ChallengePath(token)" in webroot and "0o644" in webroot


def test_a_second_run_waits_for_the_first(tmp_path: Path) -> None:
    """The timer's run and `pulumi up`'s never overlap: while one holds the lock in ACME_DIR, another
    waits (here, stopped by `timeout` before the holder lets go) and then runs."""
    config = _config()
    assert config.edge.tls.acme is not None
    script = tmp_path / "samarth-certificates"
    acme_dir = tmp_path / "acme"
    client = acme.AcmeClient(config.edge.tls.acme, tuple(config.acme_hosts()), config.versions.lego)
    script.write_text(acme.certificates_script(client, acme_dir=str(acme_dir)))
    script.chmod(0o700)
    acme_dir.mkdir()
    with open(acme_dir / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        waiting = subprocess.run(["timeout", "3", str(script), "status"], capture_output=True, text=True)
    assert waiting.returncode == 124, waiting.stdout + waiting.stderr
    assert waiting.stdout == ""
    done = subprocess.run([str(script), "status"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == len(client.hosts), done.stdout
