#!/bin/sh
# Try postecole on this machine with no mail server and without installing anything:
# builds the binaries, starts a private D-Bus bus and postecoled with a temporary state
# directory (mail goes to .eml files), walks through setting up an establishment address
# and a personal one, and leaves the daemon running for you to try mailctl by hand.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --quiet --workspace
bin="$root/target/debug"

work=$(mktemp -d /tmp/postecole-demo.XXXXXX)
chmod 755 "$work"
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

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
code_for() {
    # The code as written in the newest mail: "mailctl account verify ID CODE".
    grep -h "mailctl account verify $1 " "$work"/state/local-mail/*.eml | tail -n1 | awk '{print $5}'
}

say mailctl account create --kind establishment --label "Secrétariat" --address secretariat@ecole.fr
shared=$("$bin/mailctl" account create --kind establishment --label "Secrétariat" --address secretariat@ecole.fr)
echo "$shared"
echo "(the code went to $work/state/local-mail/)"
code=$(code_for "$shared")
say mailctl account verify "$shared" "$code"
"$bin/mailctl" account verify "$shared" "$code"
say "echo 'Clermont-Ferrand' | mailctl account secure $shared --question 'Ville de naissance de la directrice ?'"
echo 'Clermont-Ferrand' | "$bin/mailctl" account secure "$shared" --question 'Ville de naissance de la directrice ?'
say mailctl account staff "$shared" --add "$user"
"$bin/mailctl" account staff "$shared" --add "$user"

say mailctl account create --kind personal --label "Mme Martin" --address martin@ecole.fr
mine=$("$bin/mailctl" account create --kind personal --label "Mme Martin" --address martin@ecole.fr)
echo "$mine"
code=$(code_for "$mine")
wrong=000000; [ "$code" != "$wrong" ] || wrong=111111
say mailctl account verify "$mine" $wrong "   # a wrong code is refused"
"$bin/mailctl" account verify "$mine" $wrong || true
say mailctl account verify "$mine" "$code"
"$bin/mailctl" account verify "$mine" "$code"
say "echo 'le chat Minouche' | mailctl account secure $mine --question 'Mon premier chat ?'"
echo 'le chat Minouche' | "$bin/mailctl" account secure "$mine" --question 'Mon premier chat ?'
say mailctl account list
"$bin/mailctl" account list

# A report (bilan) with a PDF attached, followed until delivered.
printf '%%PDF-1.4\n%% Bilan du 1er trimestre\n%%%%EOF\n' > "$work/bilan-lea.pdf"
say mailctl send --account "$shared" --to famille.durand@example.org --subject "Bilan du 1er trimestre" --body "Bonjour, veuillez trouver ci-joint le bilan de Léa." --attach "$work/bilan-lea.pdf" --wait
"$bin/mailctl" send --account "$shared" --to famille.durand@example.org --subject "Bilan du 1er trimestre" \
    --body "Bonjour, veuillez trouver ci-joint le bilan de Léa." --attach "$work/bilan-lea.pdf" --wait
say mailctl queue list
"$bin/mailctl" queue list

cat <<EOF2

postecoled is still running (pid $daemon_pid) on a private bus (pid $bus_pid).
Try it by hand:

  export DBUS_SYSTEM_BUS_ADDRESS='$DBUS_SYSTEM_BUS_ADDRESS'
  export PATH="$bin:\$PATH"
  mailctl account show $shared
  mailctl send --account $shared --to parent@example.org --subject Absence --body 'Merci de justifier…' --wait
  mailctl queue list
  mailctl account create --kind personal --label 'M. Durand' --address durand@ecole.fr
  ls $work/state/local-mail/
  busctl --address="\$DBUS_SYSTEM_BUS_ADDRESS" introspect org.postecole.Mail1 /org/postecole/Mail1
  gdbus call --address "\$DBUS_SYSTEM_BUS_ADDRESS" --dest org.postecole.Mail1 \\
      --object-path /org/postecole/Mail1 --method org.postecole.Mail1.Accounts.ListAccounts

The daemon's log is $work/postecoled.log. Stop everything with:

  kill $daemon_pid $bus_pid; rm -rf $work
EOF2
