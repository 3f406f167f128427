# shellcheck shell=sh
# Sentry (getsentry/self-hosted) at REF: compose-lib.sh's install around the project's own installer.
# Inputs: compose-lib.sh's, ADMIN_EMAIL, and sentry-proxy-settings.sh's (URL_PREFIX, NGINX_CONF);
# SENTRY_ADMIN_PASSWORD arrives on stdin.
. ./compose-lib.sh
compose_prepare
if [ "$COMPOSE_SECRETS_ONLY" = false ]; then
  step "writing Sentry's URL prefix, proxy and CSRF settings for $URL_PREFIX"
  . ./sentry-proxy-settings.sh
  step "running the Sentry installer (install.sh $REF)"
  REPORT_SELF_HOSTED_ISSUES=0 APPLY_AUTOMATIC_CONFIG_UPDATES=1 \
    ./install.sh --skip-user-creation --no-report-self-hosted-issues </dev/null
  step "starting Sentry (docker compose ps --all and docker compose logs <service> say which did not turn healthy)"
  # A service that never turns healthy fails the install after 15 minutes instead of holding `pulumi up`
  # (here, not an input: the install's fingerprint digests its inputs, and a timeout is no reason to reinstall).
  dc up --detach --wait --wait-timeout 900
fi
# The admin password (the only secret) lives in Sentry's database: set on every install and rotation.
step "creating or updating the Sentry admin user $ADMIN_EMAIL"
# The password answers createuser's own prompt (asked twice, to confirm) on stdin: on its command
# line the host's process list would show it.
printf '%s\n%s\n' "$SENTRY_ADMIN_PASSWORD" "$SENTRY_ADMIN_PASSWORD" \
  | dc run --rm -T web createuser --email "$ADMIN_EMAIL" --superuser --force-update
compose_record
