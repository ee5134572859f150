#!/bin/sh
# The Debian package as an operator meets it (tests/packaging/CMakeLists.txt).
#   package_test.sh build    BUILD_DIR   cpack: BUILD_DIR/package/gatehouse_*.deb
#   package_test.sh contents BUILD_DIR   what it holds, its Depends, the manual pages
#   package_test.sh install  BUILD_DIR   dpkg -i, run it as the service user, purge
set -eu

step=$1
build=$(cd "$2" && pwd)
out="$build/package"

fail() {
  echo "package_test $step: FAIL: $*" >&2
  exit 1
}

deb() {
  set -- "$out"/gatehouse_*.deb
  [ -f "$1" ] || fail "no package in $out (package_build first)"
  echo "$1"
}

case "$step" in
build)
  rm -rf "$out"
  mkdir -p "$out"
  cpack --config "$build/CPackConfig.cmake" -B "$out" >"$out/cpack.log" 2>&1 ||
    { cat "$out/cpack.log"; fail "cpack failed"; }
  echo "built $(deb)"
  ;;

contents)
  package=$(deb)
  listing=$(dpkg-deb -c "$package" | awk '{print $6}' | sed 's|^\./|/|')
  for path in /usr/sbin/gatehouse /usr/sbin/gatehousectl \
    /usr/libexec/gatehouse/gatehouse-frontend /usr/libexec/gatehouse/gatehouse-worker \
    /usr/libexec/gatehouse/gatehouse-bridge \
    /usr/bin/gatehouse-client /usr/bin/gatehouse-bench /usr/bin/gatehouse-conformance \
    /usr/bin/gatehouse-demo-game \
    /etc/gatehouse/main.conf \
    /usr/lib/systemd/system/gatehouse@.service /usr/lib/sysusers.d/gatehouse.conf \
    /usr/share/man/man8/gatehouse.8.gz /usr/share/man/man5/gatehouse.conf.5.gz \
    /usr/share/doc/gatehouse/README.md /usr/share/doc/gatehouse/docs/metrics.md \
    /usr/share/gatehouse/monitoring/gatehouse-dashboard.json \
    /usr/share/gatehouse/monitoring/gatehouse-alerts.yml; do
    printf '%s\n' "$listing" | grep -qx "$path" || fail "$path is not in the package"
  done
  # Nothing of the build tree or /usr/local leaks in.
  if printf '%s\n' "$listing" | grep -E '^/usr/local|/build/|\.a$|/include/'; then
    fail "the package holds files that are not for an installed system"
  fi
  control=$(dpkg-deb -f "$package")
  printf '%s\n' "$control" | grep -q '^Depends:.*libgrpc++' ||
    fail "Depends does not name gRPC's runtime (dpkg-shlibdeps): $control"
  printf '%s\n' "$control" | grep -q '^Version: ' || fail "no Version"
  dpkg-deb --ctrl-tarfile "$package" | tar -t | grep -qx './conffiles' ||
    fail "main.conf is not a conffile"
  dpkg-deb -I "$package" conffiles | grep -qx /etc/gatehouse/main.conf ||
    fail "conffiles does not name /etc/gatehouse/main.conf"
  # The unit starts the installed binary with the installed config.
  dpkg-deb --fsys-tarfile "$package" | tar -xO ./usr/lib/systemd/system/gatehouse@.service |
    grep -qx 'ExecStart=/usr/sbin/gatehouse --config /etc/gatehouse/%i.conf --instance %i' ||
    fail "the unit's ExecStart does not name /usr/sbin/gatehouse and /etc/gatehouse"
  dpkg-deb --fsys-tarfile "$package" | tar -xO ./usr/lib/systemd/system/gatehouse@.service |
    grep -qx 'ExecReload=/usr/sbin/gatehousectl --instance %i reload' ||
    fail "the unit's ExecReload is not the installed gatehousectl's reload"
  # The manual pages render without a warning.
  for page in usr/share/man/man8/gatehouse.8.gz usr/share/man/man5/gatehouse.conf.5.gz; do
    warnings=$(dpkg-deb --fsys-tarfile "$package" | tar -xO "./$page" | gunzip |
      groff -man -ww -z 2>&1)
    [ -z "$warnings" ] || fail "$page: $warnings"
  done
  echo "contents ok: $(printf '%s\n' "$listing" | wc -l) entries"
  ;;

install)
  package=$(deb)
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo -n true 2>/dev/null || fail "installs a package: run as root, or with sudo without a password"
    sudo="sudo -n"
  fi
  if dpkg-query -W -f='${Status}' gatehouse 2>/dev/null | grep -q "install ok installed"; then
    fail "a gatehouse package is installed on this machine already; this test installs and purges its own"
  fi
  work=$(mktemp -d)
  game_pid=""
  gateway_pid=""
  cleanup() {
    [ -z "$gateway_pid" ] || $sudo kill -9 "$gateway_pid" 2>/dev/null || true
    [ -z "$game_pid" ] || kill "$game_pid" 2>/dev/null || true
    $sudo dpkg --purge gatehouse >/dev/null 2>&1 || true
    $sudo rm -f /dev/shm/gatehouse-package-test-$$
    rm -rf "$work"
  }
  trap cleanup EXIT

  $sudo dpkg -i "$package" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -i"; }
  getent passwd gatehouse >/dev/null || fail "postinst did not create the gatehouse user"
  for f in /etc/gatehouse/login-token.key /etc/gatehouse/login-token.pub \
    /etc/gatehouse/gateway.key /etc/gatehouse/gateway.key.pub; do
    $sudo test -f "$f" || fail "postinst did not make $f"
  done
  [ "$($sudo stat -c '%U %a' /etc/gatehouse/gateway.key)" = "gatehouse 600" ] ||
    fail "gateway.key is not the gatehouse user's alone: $($sudo stat -c '%U %a' /etc/gatehouse/gateway.key)"
  [ "$($sudo stat -c '%a' /etc/gatehouse/login-token.key)" = "600" ] ||
    fail "login-token.key is readable by others"
  /usr/sbin/gatehouse --version | grep -q '^gatehouse [0-9]' || fail "--version"
  man -w gatehouse.conf >/dev/null 2>&1 || man -w 5 gatehouse.conf >/dev/null ||
    fail "man gatehouse.conf finds no page"

  # The installed configuration checks clean as the service user reads it.
  $sudo runuser -u gatehouse -- /usr/sbin/gatehouse --config /etc/gatehouse/main.conf --check \
    >"$work/check.log" 2>&1 || { cat "$work/check.log"; fail "gatehouse --check of main.conf"; }

  # Serve from the installed files, as the service user, with main.conf and
  # only the addresses overridden (free ports): the demo game, a token
  # minted with the installed key, the installed client pinning the
  # installed gateway key.
  /usr/bin/gatehouse-demo-game --listen 127.0.0.1:0 >"$work/game.log" 2>&1 &
  game_pid=$!
  i=0
  until game=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$work/game.log") && [ -n "$game" ]; do
    i=$((i + 1)); [ $i -lt 300 ] || fail "demo game did not start: $(cat "$work/game.log")"; sleep 0.1
  done
  # listen and backend are repeatable (flags add to the file's): the copy
  # changes the addresses only.
  sed -e 's/^listen = [^ ]*/listen = 127.0.0.1:0/' -e "s/^backend = [^ ]*/backend = $game/" \
    -e 's/^metrics-listen = [^ ]*/metrics-listen = 127.0.0.1:0/' \
    /etc/gatehouse/main.conf >"$work/test.conf"
  chmod 0777 "$work"
  chmod 0644 "$work/test.conf"
  # setpriv execs the gateway itself (runuser would stay as its parent and
  # report the SIGTERM below as its own status).
  $sudo setpriv --reuid=gatehouse --regid=gatehouse --init-groups \
    /usr/sbin/gatehouse --config "$work/test.conf" \
    --instance package-test-$$ --workers 1 --ready-file "$work/ready" \
    --admin-socket "$work/admin.sock" >"$work/gateway.log" 2>&1 &
  gateway_pid=$!
  i=0
  until [ -s "$work/ready" ]; do
    i=$((i + 1)); [ $i -lt 600 ] || fail "installed gateway not ready: $(cat "$work/gateway.log")"
    kill -0 "$gateway_pid" 2>/dev/null || fail "installed gateway exited: $(cat "$work/gateway.log")"
    sleep 0.1
  done
  port=$(sed -n 's/^listen=.*:\([0-9]*\)$/\1/p' "$work/ready")
  token=$($sudo /usr/sbin/gatehouse token --key /etc/gatehouse/login-token.key --uid 4242)
  /usr/bin/gatehouse-client --modern --gateway-key /etc/gatehouse/gateway.key.pub \
    --token "$token" --echo "from the package" "127.0.0.1:$port" >"$work/client.log" 2>&1 ||
    { cat "$work/client.log" "$work/gateway.log"; fail "client login and echo through the installed gateway"; }
  grep -q "from the package" "$work/client.log" || fail "no echo: $(cat "$work/client.log")"
  # The installed gatehousectl, as the service user (outside systemd the
  # socket is where --admin-socket says: /run/gatehouse is root's).
  [ "$($sudo stat -c '%U %a' "$work/admin.sock")" = "gatehouse 600" ] ||
    fail "the admin socket is not the gatehouse user's alone"
  $sudo setpriv --reuid=gatehouse --regid=gatehouse --init-groups \
    /usr/sbin/gatehousectl --socket "$work/admin.sock" status >"$work/ctl.log" 2>&1 ||
    { cat "$work/ctl.log"; fail "gatehousectl status against the installed gateway"; }
  grep -qx 'state: serving' "$work/ctl.log" || fail "gatehousectl status: $(cat "$work/ctl.log")"
  $sudo kill -TERM "$gateway_pid"
  rc=0
  wait "$gateway_pid" || rc=$?
  [ "$rc" -eq 0 ] || fail "the gateway did not drain and exit 0 (status $rc): $(tail -20 "$work/gateway.log")"
  gateway_pid=""

  $sudo dpkg --purge gatehouse >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "dpkg --purge"; }
  for path in /usr/sbin/gatehouse /usr/libexec/gatehouse /etc/gatehouse \
    /usr/lib/systemd/system/gatehouse@.service; do
    [ ! -e "$path" ] || fail "$path is left after the purge"
  done
  echo "install ok: installed, served a login and echo as the gatehouse user, purged"
  ;;

*)
  fail "unknown step $step"
  ;;
esac
