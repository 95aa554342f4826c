#!/usr/bin/env bash
# scripts/up and scripts/down as on a fresh machine, where /run/netns is not yet a mount point.
# Run in a mount namespace of its own (unshare --mount --propagation private): a new tmpfs on /run
# gives it a fresh machine's /run, and a directory of its own on /usr/local/bin takes the install, so
# nothing of it reaches the machine; its mounts, and so every namespace it made, go when it ends.
#   fresh-machine.sh TRELLIS_BINARY REPOSITORY
set -euo pipefail
binary=$1
repository=$2
# Namespaces of the machine (other tests', made before this one) were copied into this mount namespace
# with /run/netns: let go of them here (private, so the machine keeps them) before /run is made anew.
if mountpoint -q /run/netns; then umount -l /run/netns; fi
mount -t tmpfs -o mode=0755 trellis-fresh-run /run
bin=$(mktemp -d)
logs=$(mktemp -d)
mount --bind "$bin" /usr/local/bin

lab_pids() {
  local file
  for file in /run/trellis/lab/*.pid; do [ -f "$file" ] && echo "$(cat "$file")"; done
  return 0
}
seen_pids=()
cleanup() {
  status=$?
  for pid in "${seen_pids[@]}" $(lab_pids); do kill -9 "$pid" 2>/dev/null || true; done
  umount /usr/local/bin 2>/dev/null || true
  rm -rf "$bin" "$logs"
  exit "$status"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

# Every namespace gone, no nsfs mount left in /run/netns (hidden or not), no process of the lab left.
check_clean() {
  local left mounts pid
  left=$(ip netns list)
  [ -z "$left" ] || fail "$1 left namespaces: $(echo "$left" | tr '\n' ' ')"
  mounts=$(awk '$5 ~ "^/run/netns/" {print $5}' /proc/self/mountinfo)
  [ -z "$mounts" ] || fail "$1 left nsfs mounts: $(echo "$mounts" | tr '\n' ' ')"
  for pid in "${seen_pids[@]}"; do
    ! kill -0 "$pid" 2>/dev/null || fail "$1 left process $pid running: $(tr '\0' ' ' </proc/"$pid"/cmdline)"
  done
}

up() {
  TRELLIS_BINARY=$binary TRELLIS_CNI_DIRS="$bin/cni" "$repository/scripts/up" >"$logs/up.log" 2>&1 || { cat "$logs/up.log"; fail "scripts/up ($1) exited $?"; }
  grep -q '3 packets transmitted, 3 received' "$logs/up.log" || { cat "$logs/up.log"; fail "scripts/up ($1): no ping across hosts"; }
  # Namespaces of both kinds, Trellis's (lab hosts, routers) and iproute2's (the demo containers), interleaved.
  for name in trellis-lab-sw trellis-lab-h1 trellis-lab-h2 trellis-h1-d1 trellis-h2-d1 demo-c1 demo-c2; do
    ip netns list | grep -q "^$name\b" || fail "scripts/up ($1): no namespace $name"
  done
  for pid in $(lab_pids); do seen_pids+=("$pid"); echo "pid: $pid"; done
  [ -x /usr/local/bin/trellis-cni ] && [ -x "$bin/cni/trellis" ] || fail "scripts/up ($1) did not install the CNI plugin"
}

down() {
  "$repository/scripts/down" >"$logs/down.out" 2>"$logs/down.err" || fail "scripts/down ($1) exited $?: $(cat "$logs/down.err")"
  [ ! -s "$logs/down.err" ] || fail "scripts/down ($1) printed errors: $(cat "$logs/down.err")"
  check_clean "scripts/down ($1)"
}

! mountpoint -q /run/netns 2>/dev/null || fail "/run/netns is a mount point before anything ran"
up "first"
mountpoint -q /run/netns || fail "/run/netns is no mount point after scripts/up"
ip netns add mixed-after-up
ip netns delete mixed-after-up
down "after one up"
up "again"
up "twice in a row"
down "after two ups"

# The lab alone, with an iproute2 namespace made between two of Trellis's.
ip netns add mixed-before-lab
"$binary" lab up --hosts 1 >"$logs/lab.log" 2>&1 || { cat "$logs/lab.log"; fail "trellis lab up"; }
for pid in $(lab_pids); do seen_pids+=("$pid"); done
ip netns add mixed-in-lab
"$binary" lab down >"$logs/lab-down.out" 2>"$logs/lab-down.err" || fail "trellis lab down exited $?: $(cat "$logs/lab-down.err")"
[ ! -s "$logs/lab-down.err" ] || fail "trellis lab down printed errors: $(cat "$logs/lab-down.err")"
ip netns delete mixed-before-lab
ip netns delete mixed-in-lab
check_clean "trellis lab down"
echo "fresh machine: clean"
