"""The rules this platform must never break, as plain Pulumi policy validators.

Each validator is ``(args: ResourceValidationArgs, report_violation) -> None`` and reads only what the
engine hands a policy pack: the resource's type, name, inputs (camelCase) and options. They are written
over resource types and property shapes, not over component names, so a new component is checked the
moment it registers a Docker container, volume, remote command or MinIO bucket.

The same functions run in two places: under the CLI (``pulumi preview --policy-pack policies``, wired in
``__main__.py``) and in CI, where ``tests/unit/test_policies.py`` feeds them every registration of every stack.

Secrets: pulumi-policy 1.21 unwraps secret inputs before validators see them (``Analyze`` deserializes
without ``proxy_secrets``), which would make "is this credential a secret?" unanswerable. The pack
therefore installs ``keep_secret_markers`` so a secret input reaches the validators as a
``pulumi_policy.Secret``; ``plain`` also accepts the wire form (``{<sig>: <secret sig>, "value": ...}``)
so CI can hand over registrations as recorded.

Protect and retain-on-delete: the engine sends a policy ``protect`` but not ``retainOnDelete``
(``AnalyzerResourceOptions`` has no such field), so the volume rule requires ``protect``. CI also checks
``retain_on_delete`` on every volume from the registrations, which it can see.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Optional, cast

import pulumi
from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Secret,
)
from pulumi_policy import deserialize as sdk_deserialize
from pulumi_policy.proxy import _is_unknown

CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
SERVICE = "docker:index/service:Service"
VOLUME = "docker:index/volume:Volume"
COMMAND = "command:remote:Command"
BUCKET = "minio:index/s3Bucket:S3Bucket"
BUCKET_POLICY = "minio:index/s3BucketPolicy:S3BucketPolicy"

SECRET_SIG_KEY = sdk_deserialize.SPECIAL_SIG_KEY
SECRET_SIG = sdk_deserialize.SPECIAL_SECRET_SIG

# The tag rule config.py applies to `versions` (README, "Versions"; a test keeps the two equal): a
# full version (x.y or x.y.z, optional suffix) or a dated release tag; anything else can move.
PINNED_TAGS = (
    re.compile(r"([A-Za-z]+[-_])?v?[0-9]+(\.[0-9]+)+([-+_.][A-Za-z0-9][A-Za-z0-9._+-]*)?", re.ASCII),
    re.compile(r"([A-Za-z]+[.-])?[0-9]{4}-?[0-9]{2}-?[0-9]{2}([T.-][A-Za-z0-9][A-Za-z0-9._-]*)?", re.ASCII),
)


def tag_is_pinned(tag: str) -> bool:
    return any(form.fullmatch(tag) for form in PINNED_TAGS)

# Where a port may be published: the servers' private ranges (as config.py accepts them) and loopback.
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "::1/128", "fc00::/7")
)

# Nginx is the one container that faces the world, on these ports only. It is recognised by its Docker
# container name (``nginx``, or ``<something>-nginx``) or by an image of the ``nginx`` repository.
NGINX_PUBLIC_PORTS = frozenset({80, 443})

# Ports of services that must never be reachable from outside the private network, whatever container
# or swarm service publishes them.
SENSITIVE_PORTS: dict[int, str] = {
    5432: "Postgres",
    6432: "Postgres (PostHog)",
    6379: "Redis",
    5672: "RabbitMQ",
    15672: "RabbitMQ management",
    4369: "Erlang epmd",
    25672: "RabbitMQ distribution",
    9200: "Elasticsearch",
    9300: "Elasticsearch transport",
    8200: "Vault",
    8201: "Vault cluster",
    9055: "Vault UI",
    9090: "MinIO console",
    9001: "MinIO console",
    5000: "Docker registry",
    3306: "MySQL",
    27017: "MongoDB",
    8123: "ClickHouse",
    9092: "Kafka",
    2181: "ZooKeeper",
}
# Images whose every port is sensitive (databases, brokers, Vault, the registry).
SENSITIVE_IMAGES = frozenset(
    {"postgres", "redis", "rabbitmq", "elasticsearch", "opensearch", "vault", "openbao", "registry", "mysql", "mariadb", "mongo", "clickhouse-server"}
)

RESTART_POLICIES = frozenset({"always", "unless-stopped", "on-failure"})
ANONYMOUS_ACTIONS = frozenset({"s3:GetObject", "s3:GetBucketLocation"})


# --- how a validator sees its inputs -------------------------------------------------------------

class _Unknown:
    """A value the engine does not know yet (``pulumi preview`` before its dependency exists)."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = _Unknown()


def plain(value: Any) -> Any:
    """``value`` as plain dicts and lists: secrets as ``Secret``, unknowns as ``UNKNOWN``.

    Accepts the SDK's unknown-checking proxies (read through ``__target``, so reading never raises),
    ``pulumi_policy.Secret`` objects and the wire form of a secret.
    """
    if isinstance(value, Mapping) and not isinstance(value, dict):
        return plain(value["__target"])
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, list, tuple)):
        return plain(cast(Any, value)["__target"])
    if isinstance(value, Secret):
        return Secret(plain(value.value))
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            return Secret(plain(value.get("value")))
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if _is_unknown(value):
        return UNKNOWN
    return value


def props_of(args: ResourceValidationArgs) -> dict[str, Any]:
    return plain(args.props)


def is_secret(value: Any) -> bool:
    return isinstance(value, Secret)


def opened(value: Any) -> Any:
    """The value inside any secret wrapper (for rules that are not about secrecy)."""
    while isinstance(value, Secret):
        value = value.value
    if isinstance(value, dict):
        return {k: opened(v) for k, v in value.items()}
    if isinstance(value, list):
        return [opened(v) for v in value]
    return value


def _marked(value: Any) -> Any:
    if isinstance(value, dict):
        sig = value.get(SECRET_SIG_KEY)
        if sig == SECRET_SIG:
            return Secret(_marked(value.get("value")))
        if sig is not None:
            return sdk_deserialize._deserialize_property(value)  # assets and archives, as the SDK does
        return {k: _marked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_marked(v) for v in value]
    return value


def keep_secret_markers() -> None:
    """Make the pack's analyzer hand secret inputs to validators as ``Secret`` instead of unwrapping them.

    pulumi-policy 1.21 ``Analyze`` calls ``deserialize_properties(props)`` and drops the secret marker;
    with ``proxy_secrets=True`` (remediations) it hides them behind a proxy that unwraps on read. Neither
    lets a rule tell a secret from plaintext, so the analyzer's module-level reference is replaced.
    """
    from pulumi_policy import policy as sdk_policy

    original = sdk_deserialize.deserialize_properties

    def deserialize_properties(props: dict[str, Any], proxy_secrets: bool = False) -> Any:
        if proxy_secrets:
            return original(props, True)
        return {k: _marked(v) for k, v in props.items()}

    sdk_policy.deserialize_properties = deserialize_properties


# --- shared helpers ------------------------------------------------------------------------------

_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


def without_image_id(reference: str) -> str:
    """The reference part of a RemoteImage id (``sha256:<id>`` or ``sha256:<id>name:tag``), else itself."""
    match = _IMAGE_ID.match(reference)
    return reference[match.end():] if match else reference


def image_repository(reference: str) -> str:
    """The last path segment of an image reference's repository: ``postgres`` for ``postgres:16.10``."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0].lower()


def image_pin_problem(reference: Any) -> Optional[str]:
    """Why ``reference`` is not a pinned image, or ``None`` when it is (a version tag or a digest)."""
    reference = opened(reference)
    if reference is UNKNOWN or reference is None:
        # An id computed by a RemoteImage (unknown at preview, absent under mocks without an output
        # fake); the RemoteImage's own name is what gets checked.
        return None
    if not isinstance(reference, str) or not reference.strip():
        return "has no image"
    if _IMAGE_ID.match(reference):
        return None  # an image id (RemoteImage.imageId): immutable, and its RemoteImage's name is checked
    if "@" in reference:
        digest = reference.split("@", 1)[1]
        return None if re.fullmatch(r"sha256:[0-9a-f]{64}", digest) else f"{reference!r} has a malformed digest"
    last = reference.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"{reference!r} has no tag (Docker pulls :latest); pin a version or a digest"
    tag = last.split(":", 1)[1]
    if not tag_is_pinned(tag):
        return f"{reference!r} uses the moving tag {tag!r}; pin a full version, a dated release or a digest"
    return None


def address_is_private(ip: Any) -> bool:
    """True for a literal private or loopback address; wildcard, empty, public and unknown are not."""
    ip = opened(ip)
    if not isinstance(ip, str) or not ip.strip():
        return False
    try:
        address = ipaddress.ip_interface(ip.strip("[]")).ip
    except ValueError:
        return False
    if address.is_unspecified:
        return False
    return any(address in network for network in PRIVATE_NETWORKS)


def _describe_ip(ip: Any) -> str:
    ip = opened(ip)
    if ip is UNKNOWN:
        return "an address not known at preview"
    if ip in (None, ""):
        return "the default address 0.0.0.0"
    return repr(ip)


def _number(value: Any) -> Optional[int]:
    value = opened(value)
    if isinstance(value, bool) or value is None or value is UNKNOWN:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def is_nginx(props: Mapping[str, Any]) -> bool:
    name = opened(props.get("name"))
    image = opened(props.get("image"))
    by_name = isinstance(name, str) and (name == "nginx" or name.endswith("-nginx"))
    by_image = isinstance(image, str) and image_repository(without_image_id(image)).startswith("nginx")
    return by_name or by_image


def sensitive_kind(props: Mapping[str, Any]) -> Optional[str]:
    """Which sensitive server (``postgres``, ``vault``...) a container runs, else ``None``.

    Read from the image reference, or, as a container usually gets a bare image id (``RemoteImage.imageId``),
    from its Docker name (``postgres-yaus``, ``vault``, ``db2-redis-airflow``).
    """
    image = opened(props.get("image"))
    if isinstance(image, str) and without_image_id(image):
        repository = image_repository(without_image_id(image))
        if repository in SENSITIVE_IMAGES:
            return repository
    name = opened(props.get("name"))
    if isinstance(name, str):
        for part in re.split(r"[-_.]", name.lower()):
            if part in SENSITIVE_IMAGES:
                return part
    return None


# --- rule: no container port on a public or wildcard address -------------------------------------

def no_public_container_ports(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != CONTAINER:
        return
    props = props_of(args)
    nginx = is_nginx(props)
    if opened(props.get("publishAllPorts")) is True:
        report_violation(f"container {args.name}: publishAllPorts publishes every exposed port on 0.0.0.0; "
                         "publish each port with ip set to the server's private IP")
    for i, port in enumerate(opened(props.get("ports")) or []):
        ip = port.get("ip")
        if address_is_private(ip):
            continue
        external = _number(port.get("external"))
        internal = _number(port.get("internal"))
        if nginx and external in NGINX_PUBLIC_PORTS:
            continue
        report_violation(
            f"container {args.name}: ports[{i}] ({external or 'random'}->{internal}) is published on "
            f"{_describe_ip(ip)}; set ip to the server's private IP or 127.0.0.1 "
            "(only Nginx may publish 80 and 443 publicly)"
        )


# --- rule: every image pinned --------------------------------------------------------------------

def images_pinned(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = props_of(args)
    if args.resource_type == CONTAINER:
        field, reference = "image", props.get("image")
    elif args.resource_type == REMOTE_IMAGE:
        field, reference = "name", props.get("name")
    elif args.resource_type == SERVICE:
        spec = opened(props.get("taskSpec")) or {}
        field, reference = "taskSpec.containerSpec.image", (spec.get("containerSpec") or {}).get("image")
    else:
        return
    problem = image_pin_problem(reference)
    if problem:
        report_violation(f"{args.resource_type.rsplit(':', 1)[-1]} {args.name}: {field} {problem}")


# --- rule: every Docker volume protected ---------------------------------------------------------

def volumes_protected(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != VOLUME:
        return
    # A policy sees `protect` only (see the module docstring); retain_on_delete is checked in CI.
    if not args.opts.protect:
        report_violation(f"volume {args.name} holds data but is not protected: "
                         "create it with protect=True and retain_on_delete=True")


# --- rule: restart policy, healthcheck and memory limit ------------------------------------------

def _healthcheck_problem(healthcheck: Any) -> Optional[str]:
    tests = (opened(healthcheck) or {}).get("tests") or []
    if not tests:
        return "has no healthcheck"
    if str(tests[0]).upper() == "NONE":
        return "disables its healthcheck (NONE)"
    return None


def containers_supervised(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = props_of(args)
    if args.resource_type == CONTAINER:
        restart = opened(props.get("restart"))
        if restart not in RESTART_POLICIES:
            report_violation(f"container {args.name}: restart is {restart or 'unset (Docker default: no)'}; "
                             "use unless-stopped")
        problem = _healthcheck_problem(props.get("healthcheck"))
        if problem:
            report_violation(f"container {args.name} {problem}; give it a real healthcheck (tests)")
        memory = _number(props.get("memory"))
        if not memory or memory <= 0:
            report_violation(f"container {args.name} has no memory limit; set memory (MiB) from its placement")
    elif args.resource_type == SERVICE:
        spec = opened(props.get("taskSpec")) or {}
        condition = (spec.get("restartPolicy") or {}).get("condition")
        if condition == "none":
            report_violation(f"service {args.name}: restartPolicy.condition is none; use any or on-failure")
        problem = _healthcheck_problem((spec.get("containerSpec") or {}).get("healthcheck"))
        if problem:
            report_violation(f"service {args.name} {problem}; give it a real healthcheck (tests)")
        limit = _number(((spec.get("resources") or {}).get("limits") or {}).get("memoryBytes"))
        if not limit or limit <= 0:
            report_violation(f"service {args.name} has no memory limit; set taskSpec.resources.limits.memoryBytes")


# --- rule: no credential in plaintext ------------------------------------------------------------

_CREDENTIAL_WORDS = frozenset(
    {"password", "passwd", "pwd", "pass", "pw", "auth", "secret", "token", "credential", "credentials", "passphrase"}
)
# `hostKey` and friends name keys that are public or not keys at all.
_NOT_CREDENTIAL_KEYS = frozenset({"host", "public", "primary", "foreign", "partition", "sort", "cache", "routing", "idempotency"})


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


def credential_name(name: str) -> bool:
    """Whether a property or variable called ``name`` carries a credential.

    The last word decides: ``SQL_PASSWORD``, ``minioPassword``, ``token``, ``API_KEY``, ``privateKey``,
    ``secretId``, ``PGPASSWORD``, ``RABBITMQ_DEFAULT_PASS`` and ``REDISCLI_AUTH`` do;
    ``POSTGRES_PASSWORD_FILE``, ``tokenPolicies`` and ``hostKey`` do not.
    """
    words = _words(name)
    if not words:
        return False
    last = words[-1]
    # PGPASSWORD, MYSQL_PWD: the credential word is often glued to a prefix.
    if last in _CREDENTIAL_WORDS or last.endswith(("password", "passwd", "secret", "token", "passphrase")):
        return True
    if last == "key":
        return len(words) == 1 or words[-2] not in _NOT_CREDENTIAL_KEYS
    return len(words) >= 2 and words[-2:] == ["secret", "id"]


# user:password@ in a URL (a `$VAR` password is a shell reference, filled in on the server).
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@'\"]+:(?!\$)[^/\s@'\"]+@")
_URL_QUERY_PASSWORD = re.compile(r"[?&;](?:password|pwd)=(?!\$)[^&;\s'\"]+", re.I)
_ASSIGNMENT = re.compile(r"(?<![A-Za-z0-9_$])([A-Za-z_][A-Za-z0-9_]*)=(?:'([^']*)'|\"([^\"]*)\"|([^\s;'\"|&)]+))")


def _text_problems(text: str) -> Iterator[str]:
    if _URL_PASSWORD.search(text) or _URL_QUERY_PASSWORD.search(text):
        yield "a URL with a password"
    for match in _ASSIGNMENT.finditer(text):
        name = match.group(1)
        single, double, bare = match.group(2), match.group(3), match.group(4)
        value = single if single is not None else double if double is not None else bare
        if not value or not credential_name(name):
            continue
        # A reference ($VAR, $(cmd)) is filled in on the server; only a literal is a leak.
        if single is None and "$" in value:
            continue
        # `key=-` and `key=@file` are how CLIs such as vault read a value from stdin or a file.
        if value == "-" or value.startswith("@"):
            continue
        yield f"{name}=<literal>"


def _json_object(text: str) -> Optional[dict[str, Any]]:
    """A JSON object held in a string input (Vault's dataJson, a config file), else ``None``."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _plaintext_credentials(value: Any, path: str, name: str = "") -> Iterator[str]:
    if is_secret(value):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _plaintext_credentials(item, f"{path}.{key}" if path else key, key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _plaintext_credentials(item, f"{path}[{i}]", name)
    elif value is UNKNOWN:
        if name and credential_name(name):
            yield f"{path} is not marked secret (its value is computed; wrap it with pulumi.Output.secret)"
    elif isinstance(value, pulumi.StringAsset):
        for problem in dict.fromkeys(_text_problems(value.text)):
            yield f"{path} (file content) holds {problem} in plaintext"
    elif isinstance(value, str) and value:
        if name and credential_name(name):
            yield f"{path} is a credential in plaintext"
            return
        document = _json_object(value)
        if document is not None:
            yield from _plaintext_credentials(document, f"{path}(json)")
            return
        for problem in dict.fromkeys(_text_problems(value)):
            yield f"{path} holds {problem} in plaintext"


def credentials_are_secrets(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Any input, of any resource, that carries a credential must be a Pulumi secret.

    Named credentials (a key or an ``ENV=value`` entry whose name ends in PASSWORD, SECRET, TOKEN, KEY...),
    URLs with a password, and credential assignments inside scripts (a command's ``create``, ``stdin``...).
    """
    for problem in _plaintext_credentials(props_of(args), ""):
        report_violation(f"{args.resource_type.rsplit(':', 1)[-1]} {args.name}: {problem}; "
                         "pass it as a secret (pulumi.Output.secret, via environment or stdin)")


# --- rule: MinIO anonymous access is read-only ---------------------------------------------------

def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _anonymous(principal: Any) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, dict):
        return any("*" in _as_list(v) for v in principal.values())
    return False


def minio_anonymous_read_only(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = opened(props_of(args))
    if args.resource_type == BUCKET:
        acl = props.get("acl")
        if acl not in (None, "", "private"):
            report_violation(f"bucket {args.name}: acl {acl!r} opens the bucket (and, in this provider, every "
                             "bucket's listing); keep acl private and grant reads with an S3BucketPolicy")
        return
    if args.resource_type != BUCKET_POLICY:
        return
    text = props.get("policy")
    if text is UNKNOWN:
        report_violation(f"bucket policy {args.name}: policy is not known at preview; build it from config")
        return
    try:
        document = json.loads(text) if isinstance(text, str) else text
        statements = _as_list(document.get("Statement"))
    except (ValueError, AttributeError):
        report_violation(f"bucket policy {args.name}: policy is not a JSON policy document")
        return
    for i, statement in enumerate(statements):
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        if "NotPrincipal" in statement:
            report_violation(f"bucket policy {args.name}: Statement[{i}] allows NotPrincipal, i.e. everyone else")
            continue
        if not _anonymous(statement.get("Principal")):
            continue
        if "NotAction" in statement:
            report_violation(f"bucket policy {args.name}: Statement[{i}] grants anonymous NotAction (everything else)")
            continue
        extra = sorted(set(_as_list(statement.get("Action"))) - ANONYMOUS_ACTIONS)
        if extra:
            report_violation(f"bucket policy {args.name}: Statement[{i}] grants anonymous {', '.join(extra)}; "
                             "anonymous access is s3:GetObject (and s3:GetBucketLocation) only")


# --- rule: Vault, MinIO console, registry and database ports never public ------------------------

# `address = "10.20.0.10:8200"` (Vault's listener, and the HCL/TOML/YAML style of many servers).
_LISTEN_ADDRESS = re.compile(r"""\b(?:address|cluster_address|bind|listen)\s*[=:]\s*["']?(\[[^\]]*\]|[^\s"':]*):\d+""")


def _host_network_problem(props: Mapping[str, Any]) -> Optional[str]:
    """On the host network a server listens where its own config says: accept it only when the config
    uploaded into the container names listen addresses and every one of them is private."""
    contents = [opened(u.get("content")) for u in opened(props.get("uploads")) or [] if isinstance(u, dict)]
    addresses = [m.group(1) for text in contents if isinstance(text, str) for m in _LISTEN_ADDRESS.finditer(text)]
    if not addresses:
        return "no uploaded config names its listen addresses (it may listen on every address)"
    public = [a or "<all addresses>" for a in addresses if not address_is_private(a)]
    if public:
        return f"its config listens on {', '.join(public)}"
    return None


def sensitive_ports_private(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = props_of(args)
    if args.resource_type == CONTAINER:
        image = sensitive_kind(props)
        if image and opened(props.get("networkMode")) == "host":
            problem = _host_network_problem(props)
            if problem:
                report_violation(f"container {args.name} ({image}) uses the host network and {problem}; "
                                 "bind its listeners to the private IP in its config, or use a bridge network")
        for i, port in enumerate(opened(props.get("ports")) or []):
            if address_is_private(port.get("ip")):
                continue
            internal, external = _number(port.get("internal")), _number(port.get("external"))
            what = SENSITIVE_PORTS.get(internal or 0) or SENSITIVE_PORTS.get(external or 0) or image
            if what:
                report_violation(f"container {args.name}: ports[{i}] exposes {what} ({external or 'random'}->"
                                 f"{internal}) on {_describe_ip(port.get('ip'))}; bind it to the private IP")
    elif args.resource_type == SERVICE:
        spec = opened(props.get("taskSpec")) or {}
        image = sensitive_kind({**(spec.get("containerSpec") or {}), "name": props.get("name")})
        # Swarm publishes on every address of every node (moby 26696): no sensitive port may be published.
        for i, port in enumerate((opened(props.get("endpointSpec")) or {}).get("ports") or []):
            target, published = _number(port.get("targetPort")), _number(port.get("publishedPort"))
            what = SENSITIVE_PORTS.get(target or 0) or SENSITIVE_PORTS.get(published or 0) or image
            if what:
                report_violation(f"service {args.name}: endpointSpec.ports[{i}] publishes {what} on every "
                                 "address of every swarm node; reach it over the overlay network instead")


# --- the registry --------------------------------------------------------------------------------

Validator = Callable[[ResourceValidationArgs, ReportViolation], None]

# Where Nginx reads the certificates the program obtains over ACME, and where the CA fetches the
# HTTP-01 tokens (components/services/edge/acme.py: NGINX_LIVE_DIR, CHALLENGE_PATH).
ACME_CERTIFICATES = "/etc/nginx/acme/"
ACME_CHALLENGE = "/.well-known/acme-challenge/"
_SERVER_BLOCK = re.compile(r"^server \{\n(.*?)^\}", re.M | re.S)


def _directive(block: str, name: str) -> list[str]:
    return [line.split(None, 1)[1].rstrip(";").strip() for line in block.splitlines() if line.strip().startswith(name + " ")]


def certificate_names(config: str) -> dict[str, str]:
    """Every name an Nginx config (the rendered ``conf.d`` file) serves over HTTPS -> its certificate
    file (``""`` for none); names under ``ACME_CERTIFICATES`` are the ones the program obtains."""
    outside = _SERVER_BLOCK.sub("", config)
    default = (_directive(outside, "ssl_certificate") or [""])[0]
    names: dict[str, str] = {}
    for block in _SERVER_BLOCK.findall(config):
        if not any(listen.startswith("443 ssl") for listen in _directive(block, "listen")):
            continue
        if "ssl_reject_handshake on;" in block:
            continue
        certificate = (_directive(block, "ssl_certificate") or [default])[0]
        for served in _directive(block, "server_name"):
            for name in served.split():
                names[name] = certificate
    return names


def challenge_names(config: str) -> set[str]:
    """Names whose port-80 server serves the ACME HTTP-01 path to anyone (no allow/deny there)."""
    found: set[str] = set()
    for block in _SERVER_BLOCK.findall(config):
        if not any(listen.split()[0] == "80" for listen in _directive(block, "listen")):
            continue
        location = re.search(rf"location {re.escape(ACME_CHALLENGE)} \{{(.*?)\}}", block, re.S)
        if location is None or re.search(r"^\s*(allow|deny) ", location.group(1), re.M):
            continue
        for served in _directive(block, "server_name"):
            found.update(served.split())
    return found


def tls_names_have_certificates(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != COMMAND:
        return
    config = opened(props_of(args).get("stdin"))
    if not isinstance(config, str) or "server_name" not in config or "listen 443" not in config:
        return
    challenges = challenge_names(config)
    for name, certificate in sorted(certificate_names(config).items()):
        if not certificate:
            report_violation(f"Nginx serves {name} over HTTPS without a certificate")
        elif certificate.startswith(ACME_CERTIFICATES) and name not in challenges:
            report_violation(
                f"{name} gets its certificate over ACME, but port 80 does not serve {ACME_CHALLENGE} for it to the CA"
            )


RULES: dict[str, tuple[str, Validator]] = {
    "no-public-container-ports": (
        "No container port on a public or wildcard address (0.0.0.0, ::, unset), except Nginx on 80 and 443.",
        no_public_container_ports,
    ),
    "images-pinned": (
        "Every image of a Container, RemoteImage or swarm Service is pinned by a version tag or a digest.",
        images_pinned,
    ),
    "volumes-protected": (
        "Every Docker volume is protected (and, checked in CI, retained on delete).",
        volumes_protected,
    ),
    "containers-supervised": (
        "Every container has a restart policy other than no, a real healthcheck and a memory limit.",
        containers_supervised,
    ),
    "credentials-are-secrets": (
        "Inputs that carry credentials (passwords, tokens, keys, URLs with a password) are Pulumi secrets.",
        credentials_are_secrets,
    ),
    "minio-anonymous-read-only": (
        "MinIO buckets keep the private ACL; anonymous access is s3:GetObject and s3:GetBucketLocation only.",
        minio_anonymous_read_only,
    ),
    "sensitive-ports-private": (
        "Vault, MinIO console, registry and database ports are never public.",
        sensitive_ports_private,
    ),
    "tls-names-have-certificates": (
        "Every name Nginx serves over HTTPS has a certificate; one obtained over ACME has its HTTP-01 challenge "
        "served on port 80 to anyone.",
        tls_names_have_certificates,
    ),
}

POLICIES: list[ResourceValidationPolicy] = [
    ResourceValidationPolicy(name, description, validate=fn, enforcement_level=EnforcementLevel.MANDATORY)
    for name, (description, fn) in RULES.items()
]

