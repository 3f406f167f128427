# shellcheck shell=sh
# samarth-certificates: the ACME certificates of Nginx's route host names (components/services/edge/acme.py,
# docs/certificates.md). Installed on the application server as root; run by the systemd timer
# (`renew`) and by `pulumi up` (`placeholders` before Nginx gets a config naming the files, `renew`
# after). Actions:
#   placeholders  a one-day self-signed certificate for each name that has none yet, so `nginx -t`
#                 passes and port 80 can serve the challenges before anything is issued
#   renew [NAME...]
#                 obtain a certificate for each name (or each NAME given) that has none, or whose
#                 lifetime left is under RENEW_PERCENT_LEFT percent; reload Nginx (checked) only when a
#                 file changed; fails after trying every name when one could not be obtained
#   force-renew   obtain a new certificate for every name now
#   status        days left per certificate
# Inputs: HOSTS (space-separated), ACME_DIR, IMAGE (the ACME client, lego), DIRECTORY_URL, EMAIL,
# CA_CERTIFICATE (a PEM file the client trusts for the directory, or empty), NGINX_CONTAINER,
# RENEW_PERCENT_LEFT.
ACTION=${1:-renew}
[ "$#" -eq 0 ] || shift
# The names this run renews: those given (each one of HOSTS), or all of HOSTS.
NAMES="$*"
for name in $NAMES; do
  case " $HOSTS " in *" $name "*) ;; *) fail "$name is not one of the names this server gets certificates for: $HOSTS" ;; esac
done
NAMES=${NAMES:-$HOSTS}
LEGO_DIR="$ACME_DIR/lego"
LIVE_DIR="$ACME_DIR/live"
WEBROOT="$ACME_DIR/webroot"
umask 077

# Seconds since the epoch of a certificate's notBefore (startdate) or notAfter (enddate).
certificate_time() {
  date -d "$(openssl x509 -noout "-$1" -in "$2" | cut -d= -f2)" +%s
}

# True when the certificate has less than RENEW_PERCENT_LEFT percent of its lifetime left: a
# 90-day certificate renews 30 days before it expires, a 6-day one 2 days before.
renewal_due() {
  start=$(certificate_time startdate "$1")
  end=$(certificate_time enddate "$1")
  now=$(date +%s)
  [ $(((end - now) * 100)) -lt $(((end - start) * RENEW_PERCENT_LEFT)) ]
}

# The ACME client, lego, in its pinned image: account and certificates in $LEGO_DIR, HTTP-01 tokens
# written to $WEBROOT, which Nginx serves at /.well-known/acme-challenge/ on port 80. It listens on
# nothing and only calls the CA: the host's network spares it Docker's NAT and forwarding rules.
obtain() {
  set -- --path /data --server "$DIRECTORY_URL" --email "$EMAIL" --accept-tos --key-type ec256 \
    --http --http.webroot /webroot --domains "$1" run
  if [ -n "$CA_CERTIFICATE" ]; then
    docker run --rm --network host -v "$LEGO_DIR:/data" -v "$WEBROOT:/webroot" \
      -v "$CA_CERTIFICATE:/etc/samarth-acme-ca.pem:ro" -e LEGO_CA_CERTIFICATES=/etc/samarth-acme-ca.pem "$IMAGE" "$@"
  else
    docker run --rm --network host -v "$LEGO_DIR:/data" -v "$WEBROOT:/webroot" "$IMAGE" "$@"
  fi
}

placeholders() {
  for host in $HOSTS; do
    [ -s "$LIVE_DIR/$host.crt" ] && [ -s "$LIVE_DIR/$host.key" ] && continue
    step "creating a one-day self-signed placeholder for $host"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=$host" \
      -addext "subjectAltName=DNS:$host" -keyout "$LIVE_DIR/$host.key.new" -out "$LIVE_DIR/$host.crt.new" 2>/dev/null
    mv "$LIVE_DIR/$host.key.new" "$LIVE_DIR/$host.key"
    mv "$LIVE_DIR/$host.crt.new" "$LIVE_DIR/$host.crt"
    echo "placeholder certificate for $host (valid one day, until its ACME certificate is there)"
  done
}

# Put lego's certificate for $1 where Nginx reads it, keeping the previous files for a rollback.
install_live() {
  for extension in crt key; do
    if [ -f "$LIVE_DIR/$1.$extension" ]; then cp -p "$LIVE_DIR/$1.$extension" "$LIVE_DIR/$1.$extension.previous"; fi
  done
  cp "$LEGO_DIR/certificates/$1.key" "$LIVE_DIR/$1.key.new"
  cp "$LEGO_DIR/certificates/$1.crt" "$LIVE_DIR/$1.crt.new"
  mv "$LIVE_DIR/$1.key.new" "$LIVE_DIR/$1.key"
  mv "$LIVE_DIR/$1.crt.new" "$LIVE_DIR/$1.crt"
}

# nginx -t first; on failure every changed name gets its previous files back and Nginx keeps serving.
reload_nginx() {
  step "checking Nginx's configuration with the new certificates"
  if ! docker exec "$NGINX_CONTAINER" nginx -t; then
    for host in $1; do
      for extension in crt key; do
        if [ -f "$LIVE_DIR/$host.$extension.previous" ]; then mv "$LIVE_DIR/$host.$extension.previous" "$LIVE_DIR/$host.$extension"; fi
      done
    done
    fail "nginx -t rejected the new certificates of:$1; the previous ones are back in place and still served"
  fi
  step "reloading Nginx"
  docker exec "$NGINX_CONTAINER" nginx -s reload || fail "nginx -s reload failed; see: docker logs $NGINX_CONTAINER"
  rm -f "$LIVE_DIR"/*.previous
}

renew() {
  obtained=0 current=0 changed="" failed=""
  for host in $NAMES; do
    issued="$LEGO_DIR/certificates/$host.crt"
    if [ "$1" = force ] || [ ! -s "$issued" ] || renewal_due "$issued"; then
      step "obtaining a certificate for $host from $DIRECTORY_URL"
      if obtain "$host"; then
        obtained=$((obtained + 1))
      else
        echo "samarth-certificates: could not obtain a certificate for $host (lego's output above)" >&2
        failed="$failed $host"
        continue
      fi
    else
      current=$((current + 1))
    fi
    if ! cmp -s "$issued" "$LIVE_DIR/$host.crt"; then
      step "installing the certificate of $host for Nginx"
      install_live "$host"
      changed="$changed $host"
    fi
  done
  # A name no longer routed stops renewing: its files leave the directory Nginx reads (lego keeps its copy).
  for file in "$LIVE_DIR"/*.crt; do
    [ -e "$file" ] || continue
    host=$(basename "$file" .crt)
    case " $HOSTS " in *" $host "*) ;; *) rm -f "$LIVE_DIR/$host.crt" "$LIVE_DIR/$host.key"; echo "removed $host (no longer routed)" ;; esac
  done
  if [ -n "$changed" ]; then
    reload_nginx "$changed"
    reloaded="nginx reloaded for:$changed"
  else
    reloaded="nginx not reloaded (nothing changed)"
  fi
  echo "certificates: $obtained obtained, $current current; $reloaded"
  [ -z "$failed" ] || fail "no certificate obtained for:$failed; the names keep their previous certificate. Retry with: samarth-certificates renew$failed"
}

status() {
  now=$(date +%s)
  for host in $HOSTS; do
    file="$LIVE_DIR/$host.crt"
    if [ ! -s "$file" ]; then
      echo "$host: no certificate"
      continue
    fi
    end=$(certificate_time enddate "$file")
    issuer=$(openssl x509 -noout -issuer -in "$file" | sed 's/^issuer=//')
    echo "$host: $(((end - now) / 86400)) days left, until $(date -u -d "@$end" '+%Y-%m-%d %H:%M UTC'), issuer $issuer"
  done
}

step "preparing $ACME_DIR"
command -v openssl >/dev/null || fail "openssl is missing on this server: apt-get install -y openssl"
mkdir -p "$LEGO_DIR" "$LIVE_DIR"
chmod 700 "$ACME_DIR" "$LEGO_DIR" "$LIVE_DIR"
# The one directory Nginx's workers read besides their config: HTTP-01 tokens, public by design.
mkdir -p "$WEBROOT"
chmod 755 "$WEBROOT"
# One run at a time: the timer's and `pulumi up`'s would both call the CA and move the same files.
step "waiting for another run of samarth-certificates to finish"
exec 9>"$ACME_DIR/lock"
flock 9
case "$ACTION" in
  placeholders) placeholders ;;
  renew) placeholders; renew due ;;
  force-renew) placeholders; renew force ;;
  status) status ;;
  *) fail "unknown action $ACTION (expected placeholders, renew, force-renew or status)" ;;
esac
