# shellcheck shell=sh
# Sourced by the swarm's init and join scripts: with ENCRYPT_OVERLAY=true, fail unless NODE's kernel can
# carry Docker's encrypted overlay. Docker's overlay driver (libnetwork/drivers/overlay/encryption.go,
# docs/upstreams.md) marks the VXLAN packets to encrypt and drops unencrypted ones with iptables' u32
# match (newer engines also accept bpf) and policy match, and encrypts with ESP in transport mode; when a
# rule or state cannot be programmed it only logs a warning, the network is created and the traffic
# between nodes is silently lost. Inputs: NODE (and SERVER, the same), ENCRYPT_OVERLAY, PROC_DIR (the kernel's /proc).
. ./root-lib.sh
if [ "$ENCRYPT_OVERLAY" = true ]; then
  step "checking that the kernel of $NODE can carry an encrypted overlay network"
  # The kernel lists its iptables matches to root only (0440): found by running this as the login user on
  # the lab machines.
  need_root "to read the iptables matches the kernel of $NODE has registered"
  # modprobe -n only resolves a module, it loads nothing (sbin is on PATH: prelude.sh).
  modular=false
  [ -r "$PROC_DIR/modules" ] && modular=true
  # kernel_has MATCH MODULE: the iptables match is registered, or (modular kernel) its module can be loaded.
  kernel_has() {
    as_root cat "$PROC_DIR/net/ip_tables_matches" 2>/dev/null | grep -qx "$1" && return 0
    [ "$modular" = true ] && modprobe -n -q "$2" 2>/dev/null
  }
  missing=""
  kernel_has u32 xt_u32 || kernel_has bpf xt_bpf || missing="$missing xt_u32"
  kernel_has policy xt_policy || missing="$missing xt_policy"
  if [ "$modular" = true ]; then
    grep -q '^esp4 ' "$PROC_DIR/modules" || modprobe -n -q esp4 2>/dev/null || missing="$missing esp4"
  else
    echo "$NODE's kernel loads no modules (no $PROC_DIR/modules): ESP support cannot be checked; it must be built in (CONFIG_INET_ESP)" >&2
  fi
  if [ -n "$missing" ]; then
    load=""
    for module in $missing; do load="${load}modprobe $module; "; done
    fail "the kernel of $NODE lacks what Docker's encrypted overlay needs:$missing; as root run '${load%; }' and list the modules in /etc/modules-load.d/ for reboots (on Ubuntu they come with linux-modules-extra-\$(uname -r)), or set swarm.encryptOverlay: false (docs/swarm.md)"
  fi
fi
