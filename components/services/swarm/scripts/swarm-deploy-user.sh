# shellcheck shell=sh
# Jenkins' way onto the swarm: the user DEPLOY_USER on swarm-master, whose one key (PUBLIC_KEY) is
# accepted from FROM_NETWORKS only (comma-separated), with every SSH feature off (`restrict`) and a
# forced command: WRAPPER (WRAPPER_TEXT, rendered swarm-stack-deploy.sh) as root through sudo, which runs
# only `docker stack deploy` of the stack file on stdin. The user is not in the docker group; sudo
# allows it that one program (SUDOERS_FILE); its home and key file are root's, so it changes neither.
# Inputs: SERVER, DEPLOY_USER, DEPLOY_HOME, PUBLIC_KEY, FROM_NETWORKS, WRAPPER, WRAPPER_TEXT, SUDOERS_FILE.
. ./root-lib.sh

need_root "to create the deploy user $DEPLOY_USER and its forced command"
command -v sudo >/dev/null 2>&1 || fail "sudo is not installed on $SERVER: the deploy key's forced command runs $WRAPPER through it (apt-get install sudo)"

if ! id "$DEPLOY_USER" >/dev/null 2>&1; then
  step "creating system user $DEPLOY_USER"
  as_root useradd --system --home-dir "$DEPLOY_HOME" --shell /bin/sh "$DEPLOY_USER"
fi
step "checking the account of $DEPLOY_USER"
# sshd runs a forced command with the user's shell.
[ "$(getent passwd "$DEPLOY_USER" | cut -d: -f7)" = /bin/sh ] || as_root usermod --shell /bin/sh "$DEPLOY_USER"
[ "$(getent passwd "$DEPLOY_USER" | cut -d: -f6)" = "$DEPLOY_HOME" ] || as_root usermod --home "$DEPLOY_HOME" "$DEPLOY_USER"
# No password, but not locked ('!'): without PAM, sshd refuses a locked account even a key login.
[ "$(as_root getent shadow "$DEPLOY_USER" | cut -d: -f2)" = '*' ] || as_root usermod --password '*' "$DEPLOY_USER"
# The docker group is root on this host: the forced command is the deploy user's only way to Docker.
for group in $(id -nG "$DEPLOY_USER"); do
  if [ "$group" = docker ]; then
    step "taking $DEPLOY_USER out of the docker group"
    as_root gpasswd -d "$DEPLOY_USER" docker >/dev/null
  fi
done

step "installing $WRAPPER"
as_root mkdir -p "$(dirname "$WRAPPER")"
printf '%s' "$WRAPPER_TEXT" | as_root tee "$WRAPPER.new" >/dev/null
as_root chown root:root "$WRAPPER.new"
as_root chmod 0755 "$WRAPPER.new"
as_root mv "$WRAPPER.new" "$WRAPPER"

step "allowing $DEPLOY_USER to run $WRAPPER as root ($SUDOERS_FILE)"
# sudo reads no file of sudoers.d whose name has a dot: the .new file is inert until it is renamed.
printf '# Written by samarth-infra (swarm-deploy-user.sh): the deploy key runs this program only.\n%s ALL=(root) NOPASSWD: %s\n' \
  "$DEPLOY_USER" "$WRAPPER" | as_root tee "$SUDOERS_FILE.new" >/dev/null
as_root chmod 0440 "$SUDOERS_FILE.new"
if ! as_root visudo -cqf "$SUDOERS_FILE.new" >&2; then
  as_root rm -f "$SUDOERS_FILE.new"
  fail "visudo refuses $SUDOERS_FILE.new (removed); see above"
fi
as_root mv "$SUDOERS_FILE.new" "$SUDOERS_FILE"

step "writing the deploy key into $DEPLOY_HOME/.ssh/authorized_keys"
as_root install -d -m 0755 -o root -g root "$DEPLOY_HOME" "$DEPLOY_HOME/.ssh"
keys="$DEPLOY_HOME/.ssh/authorized_keys"
# The command runs in the deploy user's shell, which expands $SSH_ORIGINAL_COMMAND (what the client asked
# to run) into one argument; the wrapper decides whether it is a deploy.
# shellcheck disable=SC2016
printf 'from="%s",restrict,command="sudo -n %s \\"$SSH_ORIGINAL_COMMAND\\"" %s\n' "$FROM_NETWORKS" "$WRAPPER" "$PUBLIC_KEY" |
  as_root tee "$keys.new" >/dev/null
as_root chown root:root "$keys.new"
as_root chmod 0644 "$keys.new"
as_root mv "$keys.new" "$keys"
echo "$SERVER: $DEPLOY_USER may deploy stacks from $FROM_NETWORKS" >&2
