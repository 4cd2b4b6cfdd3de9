#!/bin/sh
# Installs the Picket agent on this computer and activates it with the manager @MANAGER@.
# Made by that manager for one activation token (GET /agent/install.sh?token=...); it pins the
# manager's key and CA, so nothing it fetches can come from anyone else.
#
# Environment:
#   PICKET_INSTALL_ROOT  install under this directory instead of / (tests, images)
#   PICKET_NO_SYSTEMD=1  install no unit and start nothing; the agent is left activated, and
#                        "$PICKET_INSTALL_ROOT/usr/bin/picket agent --data-dir
#                        $PICKET_INSTALL_ROOT/var/lib/picket-agent" runs it
#   PICKET_AGENT_ARGS    more agent options, e.g. "--listen 0.0.0.0:4118 --hostname web1"
#
# Running it again on a computer already activated changes nothing but the binary, if the
# manager carries a different one. Needs curl 7.55 or later (key pins and headers from a file).
#
# Everything is in main(), called on the last line: a download cut short runs nothing.
set -eu

main() {

MANAGER_URL='@MANAGER_URL@'
KEY_PIN='@KEY_PIN@'
CA_SHA256='@CA_SHA256@'
AGENT_ENDPOINT='@AGENT_ENDPOINT@'
TOKEN='@TOKEN@'
BINARY='@BINARY@'
BINARY_SHA256='@BINARY_SHA256@'
ARCH='@ARCH@'
VERSION='@VERSION@'

ROOT="${PICKET_INSTALL_ROOT:-}"
BIN="$ROOT/usr/bin/picket"
DATA="$ROOT/var/lib/picket-agent"
UNIT="$ROOT/etc/systemd/system/picket-agent.service"
DEFAULTS="$ROOT/etc/default/picket-agent"
AGENT_ARGS="${PICKET_AGENT_ARGS:-}"

say() { printf 'picket-install: %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }

[ -n "$ROOT" ] || [ "$(id -u)" = 0 ] || fail "run me as root (or set PICKET_INSTALL_ROOT)"
command -v curl >/dev/null 2>&1 || fail "curl is needed"
# Checked before the activation uses the token: a host where the service could not start
# would be left activated and silent.
# (Under PICKET_INSTALL_ROOT, systemctl is whatever the caller put on the PATH for it.)
systemd=""
if [ "${PICKET_NO_SYSTEMD:-}" != 1 ]; then
    if command -v systemctl >/dev/null 2>&1 && { [ -n "$ROOT" ] || [ -d /run/systemd/system ]; }; then
        systemd="yes"
    else
        fail "systemd is not running here: set PICKET_NO_SYSTEMD=1 and run the agent yourself"
    fi
fi
command -v sha256sum >/dev/null 2>&1 || fail "sha256sum is needed"
machine="$(uname -m)"
[ "$machine" = "$ARCH" ] || fail "this computer is $machine; the manager carries the $ARCH agent only"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT INT TERM
# The token goes in a header read from a file, not in a URL other users could see in ps.
(umask 077 && printf 'X-Picket-Token: %s\n' "$TOKEN" > "$tmp/token-header")

# The binary: fetched over the pinned connection, then checked against the hash the manager
# put in this script.
have=""
installed=""
if [ -x "$BIN" ]; then
    have="$(sha256sum "$BIN" | cut -d' ' -f1)"
    installed="$("$BIN" --version 2>/dev/null | cut -d' ' -f2 || true)"
fi
# A newer picket (a package, an upgrade) is never replaced by the manager's older one.
newest="$(printf '%s\n%s\n' "$installed" "$VERSION" | sort -V | tail -n 1)"
if [ "$have" = "$BINARY_SHA256" ]; then
    say "$BIN is already this version"
elif [ -n "$installed" ] && [ "$installed" != "$VERSION" ] && [ "$newest" = "$installed" ]; then
    say "keeping $BIN $installed, newer than the manager's $VERSION"
else
    curl -fsS -k --pinnedpubkey "$KEY_PIN" --retry 3 -H @"$tmp/token-header" \
        -o "$tmp/picket" "$MANAGER_URL/agent/download/$BINARY" \
        || fail "cannot download $BINARY from $MANAGER_URL"
    got="$(sha256sum "$tmp/picket" | cut -d' ' -f1)"
    [ "$got" = "$BINARY_SHA256" ] || fail "the download's SHA-256 is $got, not $BINARY_SHA256: refused"
    mkdir -p "$(dirname "$BIN")"
    chmod 0755 "$tmp/picket"
    # A rename, so a running agent keeps its old binary until it restarts.
    mv -f "$tmp/picket" "$BIN.new" 2>/dev/null || cp "$tmp/picket" "$BIN.new"
    mv -f "$BIN.new" "$BIN"
    say "installed $BIN ($BINARY)"
fi

mkdir -p "$DATA"
chmod 0700 "$DATA"
# Activates once; on an activated computer the agent says so and the token is not used.
# shellcheck disable=SC2086 # PICKET_AGENT_ARGS is a list of options
PICKET_TOKEN="$TOKEN" "$BIN" agent --data-dir "$DATA" --manager "$AGENT_ENDPOINT" \
    --ca-sha256 "$CA_SHA256" --activate-only $AGENT_ARGS \
    || fail "activation failed (see above)"

if [ -z "$systemd" ]; then
    say "activated; no unit installed (PICKET_NO_SYSTEMD=1). Run: $BIN agent --data-dir $DATA $AGENT_ARGS"
    return 0
fi
mkdir -p "$(dirname "$UNIT")"
# The packages' unit, word for word (quoted: nothing in it is the shell's to expand).
cat > "$UNIT.new" <<'UNIT'
@UNIT@
UNIT
mv -f "$UNIT.new" "$UNIT"
# The unit reads the agent's options from here; a re-run without any keeps the file as it is.
if [ -n "$AGENT_ARGS" ]; then
    mkdir -p "$(dirname "$DEFAULTS")"
    (umask 077 && printf 'PICKET_AGENT_ARGS="%s"\n' "$AGENT_ARGS" > "$DEFAULTS")
fi
systemctl daemon-reload
systemctl enable picket-agent.service >/dev/null
systemctl restart picket-agent.service
say "picket-agent is running; it reports to $AGENT_ENDPOINT"
}

main "$@"
