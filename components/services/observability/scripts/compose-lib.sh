# shellcheck shell=sh
# A compose project installed from a git repository at a pinned ref (components/services/observability/component.py,
# ComposeRelease), shared by sentry-install.sh and posthog-install.sh: compose_prepare, then the
# project's own deploy steps, then compose_record. The marker file holds "<ref> <fingerprint> <secrets>"
# (the fingerprint digests the versions and settings, not this text; <secrets> is a digest of the values
# read from stdin): when it already says what is wanted, compose_prepare ends the script, so a converged
# server is left alone. When only the secrets changed (a rotation), compose_prepare re-renders ENV_FILE
# and sets COMPOSE_SECRETS_ONLY=true: the install script then re-applies the secrets and restarts what
# reads them, without fetching or reinstalling.
# Inputs: NAME, REPOSITORY, REF, VERIFY (the ref as `git rev-parse` checks it), KIND ("release tag" or
# "commit"), DIRECTORY, DESIRED ("<ref> <fingerprint>"), MARKER, ENV_FILE, ENV_BASE, SETTINGS ("KEY=value"
# lines, plain), SECRET_SETTINGS (names, written to ENV_FILE), SECRETS (every name read from stdin, in
# order), OVERRIDE (compose override text; empty: none), OVERRIDE_FILE, SERVER.

. ./compose-dc.sh
. ./root-lib.sh

compose_read_secrets() {
  step "reading the secrets from stdin"
  for key in $SECRETS; do
    # shellcheck disable=SC2229 # reads into the variable named by $key (names checked by the program)
    IFS= read -r "$key" || fail "stdin ended before $key"
    eval "value=\${$key}"
    [ -n "$value" ] || fail "$key arrived empty on stdin"
  done
}

# 16 hex digits of the SHA-256 of the secrets, one per line (printf is the shell's builtin: no argv).
compose_secrets_digest() {
  for key in $SECRETS; do
    eval "printf '%s\\n' \"\${$key}\""
  done | sha256sum | cut -c1-16
}

compose_render_env() {
  keys=$(printf '%s\n' "$SETTINGS" | sed -n 's/=.*//p' | tr '\n' ' ')$SECRET_SETTINGS
  [ -n "${keys% }" ] || return 0
  step "rendering $ENV_FILE from $ENV_BASE at $REF"
  [ -f "$ENV_BASE" ] || fail "$ENV_BASE is missing from $REPOSITORY at $REF"
  for key in $keys; do
    grep -q "^$key=" "$ENV_BASE" || fail "$ENV_BASE at $REF has no $key; review the $NAME settings for this release"
  done
  # shellcheck disable=SC2086 # one word per key
  pattern="^($(printf '%s|' $keys | sed 's/|$//'))="
  (
    umask 077
    {
      grep -v -E "$pattern" "$ENV_BASE" || true
      # Single quotes: values are literal both to compose's dotenv parser and to a sourcing shell.
      printf '%s\n' "$SETTINGS" | while IFS= read -r line; do
        [ -n "$line" ] || continue
        printf "%s='%s'\n" "${line%%=*}" "${line#*=}"
      done
      for key in $SECRET_SETTINGS; do
        eval "value=\${$key}"
        printf "%s='%s'\n" "$key" "$value"
      done
    } > "$ENV_FILE.samarth-new"
  )
  mv "$ENV_FILE.samarth-new" "$ENV_FILE"
}

# DIRECTORY is the SSH user's, who runs git and docker compose in it: made by the user, or where its
# parent is root's (/opt/samarth) made as root and given to the user.
compose_directory() {
  if [ ! -d "$DIRECTORY" ] && ! mkdir -p "$DIRECTORY" 2>/dev/null; then
    need_root "to create $DIRECTORY for $NAME"
    as_root mkdir -p "$DIRECTORY"
    as_root chown "$(id -u):$(id -g)" "$DIRECTORY"
  fi
  [ -w "$DIRECTORY" ] || fail "$DIRECTORY exists but user $(id -un) cannot write to it: give it to the user (sudo chown -R $(id -un) $DIRECTORY) on $SERVER"
}

compose_prepare() {
  compose_read_secrets
  wanted="$DESIRED $(compose_secrets_digest)"
  step "reading the installed release from $DIRECTORY/$MARKER"
  installed=""
  if [ -f "$DIRECTORY/$MARKER" ]; then installed=$(cat "$DIRECTORY/$MARKER"); fi
  if [ "$installed" = "$wanted" ]; then
    echo "$NAME: $REF is already installed with this configuration; nothing to do"
    exit 0
  fi
  # The same release and settings (a marker from before secrets were recorded has no digest): rotation.
  if [ "${installed% *}" = "$DESIRED" ] || [ "$installed" = "$DESIRED" ]; then
    # shellcheck disable=SC2034 # read by the install scripts that source this file
    COMPOSE_SECRETS_ONLY=true
    cd "$DIRECTORY" || fail "cannot enter $DIRECTORY"
    echo "$NAME: $REF is installed; applying changed secrets"
    compose_render_env
    return 0
  fi
  # shellcheck disable=SC2034 # read by the install scripts that source this file
  COMPOSE_SECRETS_ONLY=false
  step "looking for git and docker compose"
  command -v git >/dev/null 2>&1 || fail "git is not installed on the server"
  docker compose version >/dev/null 2>&1 || fail "the docker compose plugin is not installed on the server"
  if [ -d "$DIRECTORY/.git" ]; then
    step "fetching $REPOSITORY into $DIRECTORY"
    git -C "$DIRECTORY" fetch --quiet --tags --force origin
  else
    step "cloning $REPOSITORY into $DIRECTORY"
    compose_directory
    git clone --quiet "$REPOSITORY" "$DIRECTORY"
  fi
  step "checking out $REF"
  git -C "$DIRECTORY" rev-parse --quiet --verify "$VERIFY" >/dev/null || fail "$REF is not a $KIND of $REPOSITORY"
  git -C "$DIRECTORY" -c advice.detachedHead=false checkout --quiet --force "$REF"
  cd "$DIRECTORY" || fail "cannot enter $DIRECTORY"
  if [ -n "$installed" ]; then
    echo "$NAME: upgrading from ${installed%% *} to $REF"
  else
    echo "$NAME: installing $REF"
  fi
  compose_render_env
  if [ -n "$OVERRIDE" ]; then
    step "writing $OVERRIDE_FILE"
    printf '%s\n' "$OVERRIDE" > "$OVERRIDE_FILE"
  fi
}

compose_record() {
  step "recording $REF in $DIRECTORY/$MARKER"
  printf '%s\n' "$wanted" > "$DIRECTORY/$MARKER.new"
  mv "$DIRECTORY/$MARKER.new" "$DIRECTORY/$MARKER"
  echo "$NAME: $REF is installed"
}
