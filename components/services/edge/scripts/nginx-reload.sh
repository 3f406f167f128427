# shellcheck shell=sh
# Install the config read from stdin, check it inside the running container, reload; on a failed check
# put the previous file back so a restart still finds a valid config.
# Inputs: CONTAINER, LIVE_DIR, LIVE (the config file in LIVE_DIR).
step "receiving the new config"
mkdir -p "$LIVE_DIR"
cat > "$LIVE.new"
step "checking that container $CONTAINER is running"
[ "$(docker inspect -f '{{.State.Running}}' "$CONTAINER" 2>/dev/null)" = "true" ] \
  || fail "container $CONTAINER is not running; see: docker logs $CONTAINER"
step "installing the config"
if [ -f "$LIVE" ]; then cp "$LIVE" "$LIVE.previous"; else rm -f "$LIVE.previous"; fi
mv "$LIVE.new" "$LIVE"
step "checking the config with nginx -t"
if ! docker exec "$CONTAINER" nginx -t; then
  if [ -f "$LIVE.previous" ]; then mv "$LIVE.previous" "$LIVE"; else rm -f "$LIVE"; fi
  fail "nginx -t rejected the new config; the previous one is back in place and still served"
fi
step "reloading nginx"
docker exec "$CONTAINER" nginx -s reload || fail "nginx -s reload failed; see: docker logs $CONTAINER"
rm -f "$LIVE.previous"
echo "nginx reloaded with config $(sha256sum "$LIVE" | cut -c1-12)"
