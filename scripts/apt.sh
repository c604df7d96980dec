# Sourced by the install scripts: apt-get that waits for the package
# manager's locks instead of failing when another apt or dpkg process
# (unattended-upgrades, a second install script) holds them.
#
#   apt_update            apt-get update, retried while the lists lock is held
#   apt_install PKG...    apt-get install -y --no-install-recommends
#
# `apt-get install` waits for the dpkg frontend lock itself
# (DPkg::Lock::Timeout); `apt-get update` ignores that option for the lists
# lock (apt 2.6), so it is retried here while its error is the lock's.
# APT_LOCK_TIMEOUT (seconds, default 600) bounds both waits.

APT_LOCK_TIMEOUT="${APT_LOCK_TIMEOUT:-600}"

_apt_sudo() {
  if [ "$(id -u)" -ne 0 ]; then
    sudo "$@"
  else
    "$@"
  fi
}

apt_update() {
  local deadline=$((SECONDS + APT_LOCK_TIMEOUT)) err
  err="$(mktemp)"
  until _apt_sudo apt-get -o DPkg::Lock::Timeout="$APT_LOCK_TIMEOUT" -qq update 2>"$err"; do
    if ! grep -q "Could not get lock" "$err" || [ "$SECONDS" -ge "$deadline" ]; then
      cat "$err" >&2
      rm -f "$err"
      return 1
    fi
    echo "apt: another package manager holds the apt lists lock; waiting" >&2
    sleep 5
  done
  rm -f "$err"
}

apt_install() {
  _apt_sudo env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout="$APT_LOCK_TIMEOUT" install -y -qq --no-install-recommends "$@"
}
