#!/bin/sh
# Try postecole on this machine with no mail server and without installing anything:
# builds the binaries, starts a private D-Bus bus and postecoled with a temporary state
# directory (mail goes to .eml files), walks through setting up an establishment address
# and a personal one, and leaves the daemon running for you to try mailctl by hand.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --quiet
bin="$root/target/debug"

work=$(mktemp -d /tmp/postecole-demo.XXXXXX)
chmod 755 "$work"
# The French catalogue, for LANG=fr_FR.UTF-8 (gettext's msgfmt; skipped without it).
mkdir -p "$work/locale/fr/LC_MESSAGES"
msgfmt -o "$work/locale/fr/LC_MESSAGES/postecole.mo" po/fr.po 2> /dev/null || true
# mailctl finds it there: `LANG=fr_FR.UTF-8 ./demo/try.sh` walks through in French.
POSTECOLE_LOCALEDIR=$work/locale
export POSTECOLE_LOCALEDIR
user=$(id -un)
group=$(id -gn)

cat > "$work/bus.conf" <<XML
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$work/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow own="org.postecole.Mail1"/>
  </policy>
</busconfig>
XML
dbus-daemon --config-file="$work/bus.conf" --nofork --print-address > "$work/bus.address" 2> /dev/null &
bus_pid=$!
while [ ! -s "$work/bus.address" ]; do sleep 0.05; done
DBUS_SYSTEM_BUS_ADDRESS=$(head -n1 "$work/bus.address")
export DBUS_SYSTEM_BUS_ADDRESS

# You administer this trial: your own primary group is the admin group.
cat > "$work/postecoled.toml" <<TOML
state_dir = "$work/state"
admin_group = "$group"
TOML
"$bin/postecoled" --config "$work/postecoled.toml" > /dev/null 2> "$work/postecoled.log" &
daemon_pid=$!
i=0
until "$bin/mailctl" account list > /dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then cat "$work/postecoled.log"; exit 1; fi
    sleep 0.1
done

# Prints a command as it can be pasted back into a shell (each argument quoted when it needs
# it), then runs it with this build's mailctl.
quote() {
    case "$1" in
        *[!A-Za-z0-9_./:@=,+-]* | "") printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
        *) printf '%s' "$1" ;;
    esac
}
say() {
    {
        printf '\n\033[1m$'
        for arg in "$@"; do printf ' %s' "$(quote "$arg")"; done
        printf '\033[0m\n'
    } >&2
}
mailctl() {
    say mailctl "$@"
    "$bin/mailctl" "$@"
}
# `echo ANSWER | mailctl …`: the answer on standard input, as a script gives it.
answer() {
    text=$1
    shift
    {
        printf '\n\033[1m$ echo %s |' "$(quote "$text")"
        for arg in mailctl "$@"; do printf ' %s' "$(quote "$arg")"; done
        printf '\033[0m\n'
    } >&2
    echo "$text" | "$bin/mailctl" "$@"
}
code_for() {
    # The code as written in the newest mail: "mailctl account verify ID CODE".
    grep -h "mailctl account verify $1 " "$work"/state/local-mail/*.eml | tail -n1 | awk '{print $5}' | tr -d '\r'
}

shared=$(mailctl account create --kind establishment --label "Secrétariat" --address secretariat@ecole.fr)
echo "$shared"
echo "(the code went to $work/state/local-mail/)"
code=$(code_for "$shared")
mailctl account verify "$shared" "$code"
answer 'Clermont-Ferrand' account secure "$shared" --question 'Ville de naissance de la directrice ?'
mailctl account staff "$shared" --add "$user"

mine=$(mailctl account create --kind personal --label "Mme Martin" --address martin@ecole.fr)
echo "$mine"
code=$(code_for "$mine")
wrong=000000; [ "$code" != "$wrong" ] || wrong=111111
echo "(a wrong code is refused, with what to do and exit status 65)"
mailctl account verify "$mine" $wrong || echo "exit status $?"
mailctl account verify "$mine" "$code"
answer 'le chat Minouche' account secure "$mine" --question 'Mon premier chat ?'
mailctl account default martin@ecole.fr
mailctl account list

# A report (bilan) with a PDF attached, followed until delivered.
printf '%%PDF-1.4\n%% Bilan du 1er trimestre\n%%%%EOF\n' > "$work/bilan-lea.pdf"
mailctl send --account secretariat@ecole.fr --to famille.durand@example.org \
    --subject "Bilan du 1er trimestre" --body "Bonjour, veuillez trouver ci-joint le bilan de Léa." \
    --attach "$work/bilan-lea.pdf" --wait
mailctl queue list --account secretariat@ecole.fr

cat <<EOF2

postecoled is still running (pid $daemon_pid) on a private bus (pid $bus_pid).
Try it by hand:

  export DBUS_SYSTEM_BUS_ADDRESS='$DBUS_SYSTEM_BUS_ADDRESS'
  export PATH="$bin:\$PATH"
  mailctl account show secretariat@ecole.fr
  mailctl send --account secretariat@ecole.fr --to parent@example.org --subject Absence --body 'Merci de justifier…' --wait
  mailctl queue list --state delivered --since 1h
  LANG=fr_FR.UTF-8 mailctl queue list
  mailctl account create --kind personal --label 'M. Durand' --address durand@ecole.fr
  ls $work/state/local-mail/
  busctl --address="\$DBUS_SYSTEM_BUS_ADDRESS" introspect org.postecole.Mail1 /org/postecole/Mail1
  gdbus call --address "\$DBUS_SYSTEM_BUS_ADDRESS" --dest org.postecole.Mail1 \\
      --object-path /org/postecole/Mail1 --method org.postecole.Mail1.Accounts.ListAccounts

The daemon's log is $work/postecoled.log. Stop everything with:

  kill $daemon_pid $bus_pid; rm -rf $work
EOF2
