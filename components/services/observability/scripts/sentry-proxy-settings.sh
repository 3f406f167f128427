# shellcheck shell=sh
# Run in the getsentry/self-hosted checkout before install.sh. Sentry behind a TLS-terminating proxy needs
# its public URL (system.url-prefix in sentry/config.yml) and Django's proxy and CSRF settings
# (sentry/sentry.conf.py), or logins end in "CSRF verification failed". Both files are the operator's
# copies of the release's examples (install.sh keeps them; the secret key it generates lives in
# config.yml), so they are edited in place: our lines are replaced on every run, the rest is kept.
# Sentry's own nginx sets X-Forwarded-Proto to its own scheme (http); NGINX_CONF is its nginx.conf with
# the header passed on from our Nginx, mounted in its place by the compose override.
# Inputs: URL_PREFIX (https://<observability.sentry.hostName>), NGINX_CONF.

MARK_BEGIN="# BEGIN samarth-infra proxy settings (rewritten on every install: change the stack config instead)"
MARK_END="# END samarth-infra proxy settings"

for file in sentry/config.example.yml sentry/sentry.conf.example.py nginx.conf; do
  [ -f "$file" ] || fail "$file is missing from the Sentry checkout; review the proxy settings for this release"
done

step "writing system.url-prefix to sentry/config.yml"
[ -f sentry/config.yml ] || cp sentry/config.example.yml sentry/config.yml
{
  grep -v '^system\.url-prefix:' sentry/config.yml || true
  printf "system.url-prefix: '%s'\n" "$URL_PREFIX"
} > sentry/config.yml.samarth-new
mv sentry/config.yml.samarth-new sentry/config.yml

step "writing the proxy and CSRF settings to sentry/sentry.conf.py"
[ -f sentry/sentry.conf.py ] || cp sentry/sentry.conf.example.py sentry/sentry.conf.py
{
  awk -v begin="$MARK_BEGIN" -v end="$MARK_END" '$0 == begin { skip = 1 } !skip { print } $0 == end { skip = 0 }' sentry/sentry.conf.py
  printf '%s\n' "$MARK_BEGIN"
  printf '%s\n' \
    'SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")' \
    'USE_X_FORWARDED_HOST = True' \
    'SESSION_COOKIE_SECURE = True' \
    'CSRF_COOKIE_SECURE = True' \
    'SOCIAL_AUTH_REDIRECT_IS_HTTPS = True'
  printf 'CSRF_TRUSTED_ORIGINS = ["%s"]\n' "$URL_PREFIX"
  printf '%s\n' "$MARK_END"
} > sentry/sentry.conf.py.samarth-new
mv sentry/sentry.conf.py.samarth-new sentry/sentry.conf.py

step "writing $NGINX_CONF (nginx.conf with X-Forwarded-Proto passed on)"
# shellcheck disable=SC2016 # nginx variables, not shell ones
upstream_line='proxy_set_header X-Forwarded-Proto $scheme;'
count=$(grep -c -F "$upstream_line" nginx.conf || true)
[ "$count" = 1 ] || fail "nginx.conf has $count lines '$upstream_line' (expected 1); review how this release's nginx forwards the scheme"
# shellcheck disable=SC2016
sed 's/proxy_set_header X-Forwarded-Proto \$scheme;/proxy_set_header X-Forwarded-Proto $http_x_forwarded_proto;/' nginx.conf > "$NGINX_CONF.samarth-new"
mv "$NGINX_CONF.samarth-new" "$NGINX_CONF"
echo "sentry: served as $URL_PREFIX behind the proxy"
