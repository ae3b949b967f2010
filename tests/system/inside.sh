#!/bin/bash
# Runs inside the container booted by tests/system/run (systemd is PID 1), as root: installs the
# package and proves each point under the real systemd, dbus-daemon, polkitd and journal. One
# "ok" line per proven point; the first failure stops with a "FAIL" line and what was seen.
set -euo pipefail
here=/var/tmp/system-test
relay_mail=/var/tmp/relay-mail
t0=$SECONDS

ok() { echo "ok   [$((SECONDS - t0))s] $*"; }
fail() {
    echo "FAIL [$((SECONDS - t0))s] $*" >&2
    exit 1
}
# expect WHAT COMMAND...: the command must succeed.
expect() {
    local what=$1
    shift
    "$@" || fail "$what"
}
as() {
    local user=$1
    shift
    runuser -u "$user" -- "$@"
}
# wait_for WHAT SECONDS COMMAND...: polls the command every 0.2 s.
wait_for() {
    local what=$1 seconds=$2
    shift 2
    local end=$((SECONDS + seconds))
    until "$@"; do
        [ $SECONDS -lt $end ] || fail "timed out after ${seconds}s waiting for $what"
        sleep 0.2
    done
}
is_active() { [ "$(systemctl is-active postecoled.service || true)" = active ]; }
main_pid() { systemctl show -p MainPID --value postecoled.service; }
# Accepted mail whose text contains $1, counted over the relay's files.
relay_count() { grep -lF -- "$1" "$relay_mail"/*.eml 2> /dev/null | wc -l; }
# The newest code mailed for account $1.
code_for() {
    local f
    for f in $(ls -v "$relay_mail"/*.eml | tac); do
        if grep -qF "mailctl account verify $1 " "$f"; then
            grep -o "mailctl account verify $1 [0-9]\{6\}" "$f" | head -n1 | awk '{print $NF}'
            return
        fi
    done
    return 1
}
# The queue as an administrator sees it (every message); delivered ones keep no recipients, so
# a batch is followed by its ids, kept one per line in /var/tmp/ids-<tag>.
queue_json() { as pc-admin mailctl queue list --json; }
# count_state TAG STATE[,STATE]: how many of the batch's messages are in one of those states.
count_state() {
    queue_json | python3 -c '
import json, sys
ids = set(open(sys.argv[1]).read().split())
states = sys.argv[2].split(",")
print(sum(1 for m in json.load(sys.stdin) if m["id"] in ids and m["state"] in states))' "/var/tmp/ids-$1" "$2"
}
state_is() { [ "$(count_state "$1" "$2")" = "$3" ]; }
# Every id in the queue now that was not in /var/tmp/ids-before-$1 becomes the batch $1.
batch_ids() {
    queue_json | python3 -c '
import json, sys
before = set(open(sys.argv[1]).read().split())
print("\n".join(m["id"] for m in json.load(sys.stdin) if m["id"] not in before))' "/var/tmp/ids-before-$1" > "/var/tmp/ids-$1"
    [ "$(grep -c . "/var/tmp/ids-$1")" -ge "$2" ]
}
waiting=queued,deferred,sending
configure() {
    cat > /etc/postecole/postecoled.toml << EOF
authorization = "$1"

[relay]
host = "127.0.0.1"
port = 2525
tls = "none"
username = "relay-user"
password_file = "/etc/postecole/relay-password"

[queue]
min_backoff_secs = 1
max_backoff_secs = 2
EOF
}
relay_up() {
    # A description of its own: systemd would log the command line, password included.
    systemd-run -q --unit=relay --description="test relay" --collect /usr/bin/python3 "$here/smtp_server.py" --port 2525 \
        --maildir "$relay_mail" --auth "relay-user:$relay_password" "$@"
    wait_for "the relay to listen" 20 bash -c 'exec 3<> /dev/tcp/127.0.0.1/2525' 2> /dev/null
}
relay_down() { systemctl stop relay.service; }

# Secrets the journal must never carry: the relay password, the answer, the codes, and words
# only found in message bodies.
relay_password=relay-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
answer="Le chat de la cantine s'appelle Moustache"
body_marker=corps-du-message-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
secrets=("$relay_password" "$answer" "$body_marker" "motdepasse-famille")

# --- Installation: sysusers before the bus policy is read ---------------------------------
getent passwd postecole > /dev/null && fail "postecole exists before the install"
dpkg -i "$here/postecole.deb" > /var/tmp/dpkg-install.log 2>&1 ||
    fail "dpkg -i: $(cat /var/tmp/dpkg-install.log)"
ok "installed $(dpkg-query -W -f='${Package} ${Version}' postecole) with dpkg -i"

IFS=: read -r _ _ uid _ _ home shell < <(getent passwd postecole) || fail "no user postecole"
[ "$uid" -lt 1000 ] && [ "$home" = /var/lib/postecole ] && [ "$shell" = /usr/sbin/nologin ] ||
    fail "postecole is not a system user: uid $uid home $home shell $shell"
getent group postecole-admin > /dev/null || fail "no group postecole-admin"
ok "sysusers made the system user postecole (uid $uid) and the group postecole-admin"
perm=$(stat -c '%a %U %G %s' /etc/postecole/relay-password)
[ "$perm" = "600 root root 0" ] || fail "relay-password is '$perm'"
ok "tmpfiles made /etc/postecole/relay-password: empty, 0600, root:root"

# --- D-Bus activation --------------------------------------------------------------------
is_active && fail "postecoled.service active before any call"
ok "postecoled.service inactive after the install"
list=$(mailctl account list) || fail "mailctl account list: $list"
is_active || fail "postecoled.service not active after the first call"
journalctl -b -u dbus.service -o cat | grep -q "Activating via systemd: service name='org.postecole.Mail1'" ||
    fail "dbus-daemon did not log the activation"
ok "the first mailctl call activated postecoled.service through D-Bus (pid $(main_pid), user $(stat -c %U "/proc/$(main_pid)"))"

# --- The relay password reaches the daemon as a credential -------------------------------
printf '%s' "$relay_password" > /etc/postecole/relay-password
configure group
relay_up
systemctl restart postecoled.service
out=$(mailctl relay test 2>&1) || fail "relay test with the right password: $out"
ok "relay test through AUTH (the relay requires it) with the password from the credential: $out"
as postecole cat /etc/postecole/relay-password > /dev/null 2>&1 &&
    fail "the service user can read the password file itself"
ok "the service user cannot read /etc/postecole/relay-password itself: only the credential carries it"
printf 'not-the-password' > /etc/postecole/relay-password
systemctl restart postecoled.service
out=$(mailctl relay test 2>&1) && fail "relay test passed with a wrong password: $out"
echo "$out" | grep -q 535 || fail "a wrong password should get 535 from the relay: $out"
ok "with a wrong password in the file, the relay refuses AUTH: $out"
printf '%s' "$relay_password" > /etc/postecole/relay-password
systemctl restart postecoled.service

# --- Confinement -------------------------------------------------------------------------
pid=$(main_pid)
status=$(cat "/proc/$pid/status")
for want in "NoNewPrivs:	1" "Seccomp:	2" "CapEff:	0000000000000000" "CapPrm:	0000000000000000" \
    "Uid:	$uid	$uid	$uid	$uid"; do
    grep -qF "$want" <<< "$status" || fail "/proc/$pid/status lacks '$want': $status"
done
ok "the running daemon's /proc/$pid/status: NoNewPrivs 1, Seccomp 2 (filter), CapEff and CapPrm 0, uid $uid"

# A process in the daemon's own sandbox: ExecStartPre= of the unit itself, for one start.
install -d -o postecole -g postecole /var/spool/postecole-probe
ip addr add 169.254.1.1/32 dev lo
outside=$(python3 -c '
import errno, socket
try:
    socket.create_connection(("169.254.1.1", 2525), timeout=5)
except OSError as e:
    print(errno.errorcode[e.errno])')
[ "$outside" = ECONNREFUSED ] || fail "outside the sandbox, 169.254.1.1 should refuse the connection: '$outside'"
mkdir -p /run/systemd/system/postecoled.service.d
printf '[Service]\nExecStartPre=/usr/bin/python3 /usr/local/lib/postecole-test/probe.py\n' \
    > /run/systemd/system/postecoled.service.d/probe.conf
systemctl daemon-reload
since=$(date '+%Y-%m-%d %H:%M:%S')
sleep 1
systemctl restart postecoled.service
rm -r /run/systemd/system/postecoled.service.d
systemctl daemon-reload
probe=$(journalctl -u postecoled.service --since "$since" -o cat | grep '^PROBE ' | sed 's/^PROBE //')
# IPAddressDeny= drops the packets: a TCP connection times out, a datagram is refused.
# SocketBindDeny= needs a systemd built with its BPF framework, which Debian 12's is not.
if systemctl --version | grep -q -- -BPF_FRAMEWORK; then bind=ok; else bind=EPERM; fi
for want in write-state-dir=ok write-own-dir-outside=EROFS write-etc=EROFS write-usr=EROFS \
    read-credential=ok read-password-file=EACCES connect-relay=ok connect-link-local=timeout \
    udp-link-local=EPERM bind-port=$bind socket-netlink=EAFNOSUPPORT socket-packet=EAFNOSUPPORT \
    w+x-mmap=EPERM; do
    grep -qxF "$want" <<< "$probe" || fail "in the daemon's sandbox, expected $want; got: $(echo $probe)"
done
ok "in the daemon's sandbox: $(echo $probe)"
[ $bind = ok ] && ok "not enforced: SocketBindDeny=any (this systemd is built -BPF_FRAMEWORK), the bind above succeeded"
# The daemon itself, told to keep its state outside its state directory, is refused.
install -d -o postecole -g postecole /var/spool/postecole-elsewhere
sed -i '1i state_dir = "/var/spool/postecole-elsewhere/state"' /etc/postecole/postecoled.toml
since=$(date '+%Y-%m-%d %H:%M:%S')
sleep 1
systemctl restart postecoled.service 2> /dev/null && fail "the daemon started with its state outside StateDirectory"
refusal=$(journalctl -u postecoled.service --since "$since" -o cat | grep -i 'read-only file system' | head -n1)
[ -n "$refusal" ] || fail "no 'Read-only file system' from the daemon: $(journalctl -u postecoled.service --since "$since" -o cat)"
ok "the daemon's own write outside its state directory is refused: $refusal"
sed -i 1d /etc/postecole/postecoled.toml
systemctl reset-failed postecoled.service
systemctl start postecoled.service
exposure=$(systemd-analyze security --no-pager postecoled.service | sed -n 's/.*Overall exposure level for postecoled.service: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] && awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' ||
    fail "systemd-analyze security: '$exposure'"
ok "systemd-analyze security on the running system: exposure $exposure (at most 2.0)"

# --- polkit with the real polkitd ------------------------------------------------------------
useradd -G postecole-admin pc-admin
useradd pc-staff
useradd pc-other
cat > /etc/polkit-1/rules.d/60-postecole-test.rules << 'EOF'
// postecole-admin administers; of the staff, only pc-staff may send as the establishment.
polkit.addRule(function (action, subject) {
    if (action.id == "org.postecole.mail1.administer" && subject.isInGroup("postecole-admin"))
        return polkit.Result.YES;
    if (action.id == "org.postecole.mail1.send-establishment" &&
        (subject.user == "pc-staff" || subject.isInGroup("postecole-admin")))
        return polkit.Result.YES;
});
EOF
configure polkit
systemctl restart postecoled.service
account=$(as pc-admin mailctl account create --kind establishment --label Secretariat \
    --address secretariat@ecole.test 2>&1) || fail "pc-admin creating an establishment account: $account"
code=$(code_for "$account") || fail "no code mailed for $account"
secrets+=("$code")
expect "verify" as pc-admin mailctl account verify "$account" "$code" > /dev/null 2>&1
echo "$answer" | as pc-admin mailctl account secure "$account" --question "Le chat ?" > /dev/null 2>&1 ||
    fail "secure"
as pc-admin mailctl account staff "$account" --add pc-staff > /dev/null || fail "staff --add pc-staff"
as pc-admin mailctl account staff "$account" --add pc-other > /dev/null || fail "staff --add pc-other"
systemctl is-active --quiet polkit.service || fail "polkitd is not running"
ok "polkit, administer: pc-admin (in postecole-admin, granted by the rules) created and set up establishment account $account"
out=$(as pc-staff mailctl account create --kind establishment --label X --address x@ecole.test 2>&1) &&
    fail "pc-staff created an establishment account"
grep -q NotAuthorized <<< "$out" || fail "pc-staff's refusal: $out"
ok "polkit, administer: pc-staff is refused: $out"
send() {
    as "$1" mailctl send --account "$account" --to "$2" --subject "Note" --body "$body_marker" "${@:3}"
}
out=$(send pc-staff parent-staff@famille.test --wait 2>&1) || fail "pc-staff sending: $out"
ok "polkit, send-establishment: pc-staff (granted by the rules) sent and saw it delivered"
out=$(send pc-other parent-other@famille.test 2>&1) && fail "pc-other sent with the establishment account"
grep -q NotAuthorized <<< "$out" || fail "pc-other's refusal: $out"
ok "polkit, send-establishment: pc-other, on the same staff list, is refused: $out"

# --- Durability: a restart with the relay down, a stop in the middle of delivering ----------
merge() {
    local tag=$1 csv=/var/tmp/$1.csv
    queue_json | python3 -c 'import json, sys; print("\n".join(m["id"] for m in json.load(sys.stdin)))' \
        > "/var/tmp/ids-before-$tag"
    echo "email;eleve;url;identifiant;mot_de_passe" > "$csv"
    for i in $(seq 200); do
        echo "famille-$tag-$i@ecole.test;Eleve $i;https://ent.ecole.test;eleve.$i;motdepasse-famille-$i"
    done >> "$csv"
    chmod 644 "$csv"
    as pc-admin mailctl merge --account "$account" --template identifiants --csv "$csv" --json \
        > "/var/tmp/merge-$tag.json" 2>&1 &
    local client=$!
    wait_for "200 messages of $tag queued" 60 batch_ids "$tag" 200
    # Interrupting the client is safe: the queue keeps going. mailctl itself, not only the
    # runuser above it: a follower left calling would start the daemon again by bus activation
    # while a later step stops it.
    local p
    for p in /proc/[0-9]*; do
        if [ "$(awk '/^PPid:/ { print $2 }' "$p/status" 2> /dev/null)" = "$client" ]; then
            kill "${p#/proc/}" 2> /dev/null || true
        fi
    done
    kill $client 2> /dev/null || true
    wait $client 2> /dev/null || true
}
# Every family of batch $1 at the relay (at least once) and every message delivered.
all_delivered() {
    state_is "$1" delivered 200 || return 1
    local families
    families=$(grep -h '^X-Envelope-To:' "$relay_mail"/*.eml | grep -o "famille-$1-[0-9]*@" | sort -u | wc -l)
    [ "$families" = 200 ] || fail "all 200 delivered, but $families families of $1 at the relay"
}
relay_down
merge down
[ "$(relay_count famille-down-)" = 0 ] || fail "mail went out with the relay down"
ok "merge of 200 messages with the relay down: $(count_state down $waiting) waiting in the queue"
before=$(main_pid)
systemctl restart postecoled.service
[ "$(main_pid)" != "$before" ] || fail "the daemon did not restart"
state_is down $waiting 200 || fail "after the restart, $(count_state down $waiting) of 200 waiting"
ok "systemctl restart postecoled with the relay down: the 200 still waiting"
relay_up
wait_for "the 200 messages after the relay came back" 180 all_delivered down
ok "relay back: all 200 delivered, every family at the relay"

relay_down
relay_up --delay 0.1
merge mid
wait_for "delivery to start" 60 eval '[ "$(relay_count famille-mid-)" -ge 10 ]'
systemctl stop postecoled.service
halfway=$(relay_count famille-mid-)
[ "$halfway" -lt 200 ] || fail "all 200 were delivered before the stop"
ok "systemctl stop in the middle of delivering: $halfway of 200 at the relay"
systemctl start postecoled.service
wait_for "the 200 messages after the start" 180 all_delivered mid
total=$(relay_count famille-mid-)
ok "systemctl start: all 200 delivered ($((total - 200)) sent twice: those being sent at the stop)"

# --- Upgrade with mail queued --------------------------------------------------------------
relay_down
for i in 1 2 3; do
    send pc-staff "upgrade-$i@famille.test" || fail "queueing before the upgrade"
done > /var/tmp/ids-upgrade
accounts_before=$(as pc-admin mailctl account list --json)
archive_before=$(echo "$answer" | as pc-admin mailctl archive list "$account" --json) || fail "archive list"
state_is upgrade $waiting 3 || fail "3 messages should be waiting: $(as pc-admin mailctl queue list)"
pid_before=$(main_pid)
dpkg -i "$here/postecole-next.deb" > /var/tmp/dpkg-upgrade.log 2>&1 ||
    fail "upgrade: $(cat /var/tmp/dpkg-upgrade.log)"
is_active && [ "$(main_pid)" != "$pid_before" ] || fail "postinst did not restart the running daemon"
[ "$(as pc-admin mailctl account list --json)" = "$accounts_before" ] || fail "accounts changed by the upgrade"
[ "$(echo "$answer" | as pc-admin mailctl archive list "$account" --json)" = "$archive_before" ] ||
    fail "archive changed by the upgrade"
state_is upgrade $waiting 3 || fail "queue changed by the upgrade: $(as pc-admin mailctl queue list)"
ok "upgrade to $(dpkg-query -W -f='${Version}' postecole) with 3 messages queued: daemon restarted, accounts, archive ($(python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' <<< "$archive_before") messages) and queue kept"
relay_up
wait_for "the 3 queued messages after the upgrade" 60 state_is upgrade delivered 3
ok "the 3 messages queued before the upgrade delivered after it"

# --- The journal ---------------------------------------------------------------------------
journalctl -b -o json > /var/tmp/journal.json
printf '%s\n' "${secrets[@]}" > /var/tmp/secrets
summary=$(python3 - /var/tmp/journal.json /var/tmp/secrets 2>&1 << 'EOF'
import json, re, sys
entries = [json.loads(line) for line in open(sys.argv[1])]
secrets = [s for s in open(sys.argv[2]).read().split("\n") if s]
# tracing's entries carry TARGET; the rest is what the daemon printed before its log was set up
# (a refused configuration, as in the confinement check above).
ours = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "postecoled" and "TARGET" in e]
printed = sum(1 for e in entries if e.get("SYSLOG_IDENTIFIER") == "postecoled" and "TARGET" not in e)
if not ours:
    sys.exit("no structured entry from postecoled")
plain = {"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "TARGET", "CODE_FILE", "CODE_LINE"}
fields = sorted({k for e in ours for k in e if k[0] != "_" and k not in plain})
if not fields:
    sys.exit("no structured field beyond the message")
# Every field a program wrote (not the journal's own: cursors, timestamps, ids).
for e in entries:
    for key, value in e.items():
        if key.startswith("_"):
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        for secret in secrets:
            pattern = re.escape(secret)
            if secret.isdigit():
                pattern = r"(?<![0-9])" + pattern + r"(?![0-9])"
            if re.search(pattern, text):
                sys.exit(f"the journal holds a secret in {key} of {e.get('SYSLOG_IDENTIFIER')}: {secret[:4]}…")
levels = sorted({e["PRIORITY"] for e in ours})
print(f"{len(ours)} structured entries from postecoled (and {printed} printed), priorities {levels}, fields {fields}; "
      f"{len(entries)} entries of the boot searched for {len(secrets)} secrets")
EOF
) || fail "journal: $summary"
ok "journal: $summary (relay password, answer, codes, message bodies, merged passwords: none found)"
journalctl -b -o cat | grep -F 'Unknown username' && fail "the journal has 'Unknown username'"
ok "no 'Unknown username' in the journal (dbus-daemon read the policy with the user made)"
failed=$(systemctl --failed --plain --no-legend)
[ -z "$failed" ] || fail "failed units: $failed"
ok "no failed unit"

# --- Purge ---------------------------------------------------------------------------------
apt-get purge -y -qq postecole > /var/tmp/purge.log 2>&1 || fail "apt purge: $(cat /var/tmp/purge.log)"
dpkg-query -W -f='${Status}' postecole 2> /dev/null | grep -q . && fail "dpkg still knows postecole"
for path in /usr/libexec/postecoled /usr/bin/mailctl /usr/lib/systemd/system/postecoled.service \
    /usr/share/dbus-1/system.d/org.postecole.Mail1.conf \
    /usr/share/dbus-1/system-services/org.postecole.Mail1.service /etc/postecole; do
    [ -e "$path" ] && fail "$path left after purge"
done
is_active && fail "postecoled still running after purge"
out=$(busctl call org.postecole.Mail1 /org/postecole/Mail1 org.freedesktop.DBus.Peer Ping 2>&1) &&
    fail "the name still answers after purge"
[ -d /var/lib/postecole ] || fail "the state was removed by purge"
failed=$(systemctl --failed --plain --no-legend)
[ -z "$failed" ] || fail "failed units after purge: $failed"
ok "apt purge: programs, unit, bus files and /etc/postecole (with the password) removed, service stopped, name gone ($out); /var/lib/postecole and the user kept, as documented"
