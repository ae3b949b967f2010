#!/usr/bin/python3
"""A hostile client of postecoled, with dbus-python (Debian's python3-dbus): calls a method
passing pipe ends that nobody will ever write or read where the daemon expects files.

usage: pipe_caller.py INTERFACE METHOD JSON_ARGS
In JSON_ARGS, the string "@never-written" becomes the read end of a pipe whose writer stays
silent, "@never-read" the write end of a pipe nobody reads. Exits 0 if the call succeeded,
1 with the D-Bus error name and message on stderr otherwise.
"""
import json
import os
import sys

import dbus

interface, method, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
kept = []


def convert(value):
    if value in ("@never-written", "@never-read"):
        read_end, write_end = os.pipe()
        # Keep the other end open, so that the daemon would wait rather than see EOF.
        mine, theirs = (write_end, read_end) if value == "@never-written" else (read_end, write_end)
        kept.append(mine)
        return dbus.types.UnixFd(theirs)
    if isinstance(value, list):
        return [convert(v) for v in value]
    if isinstance(value, dict):
        return {k: convert(v) for k, v in value.items()}
    return value


bus = dbus.SystemBus()
proxy = bus.get_object("org.postecole.Mail1", "/org/postecole/Mail1")
try:
    getattr(proxy, method)(*[convert(a) for a in args], dbus_interface=interface, timeout=20)
except dbus.exceptions.DBusException as e:
    print(f"{e.get_dbus_name()}: {e.get_dbus_message()}", file=sys.stderr)
    sys.exit(1)
