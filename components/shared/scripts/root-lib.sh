# shellcheck shell=sh
# The one way a script does what only root may do (inlined where a script sources it). Remote scripts run
# as the stack's SSH user (servers.<name>.sshUser): as root a command runs as it is, as any other user
# through passwordless sudo. `sudo -n` never prompts: a password prompt would hang `pulumi up`.
# Reads SERVER: the server's name in the stack.

# as_root COMMAND [ARGUMENT...]: COMMAND as root, with the script's stdin (`... | as_root tee FILE`
# writes a root-owned FILE without the content on any command line).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  else
    sudo -n "$@"
  fi
}

# need_root WHAT: stop, before anything changes, when as_root cannot work, saying who needs sudo where and
# for WHAT ("to install the host firewall"). Reads nothing from stdin, which may still hold the script's
# secrets.
need_root() {
  if [ "$(id -u)" -ne 0 ] && ! sudo -n true </dev/null >/dev/null 2>&1; then
    fail "user $(id -un) needs passwordless sudo on $SERVER $1: allow it (a line '$(id -un) ALL=(ALL) NOPASSWD: ALL' in /etc/sudoers.d/) or log in as root (servers.$SERVER.sshUser)"
  fi
}
