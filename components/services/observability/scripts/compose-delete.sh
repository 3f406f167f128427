# shellcheck shell=sh
# Stop a compose project installed by compose-lib.sh (docker compose down, without -v: the data
# volumes stay) and forget its marker. Inputs: NAME, DIRECTORY, MARKER, ENV_FILE.
. ./compose-dc.sh
if [ ! -d "$DIRECTORY" ]; then
  echo "$NAME: $DIRECTORY does not exist; nothing to stop"
  exit 0
fi
cd "$DIRECTORY" || fail "cannot enter $DIRECTORY"
step "stopping $NAME (docker compose down; volumes are kept)"
dc down --remove-orphans
step "forgetting the installed release"
rm -f "$MARKER"
echo "$NAME: stopped; its volumes and $DIRECTORY are kept"
