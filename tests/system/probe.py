#!/usr/bin/python3
"""Run by the system test as an ExecStartPre= of postecoled.service: a process in the daemon's
own sandbox (same user, namespaces, seccomp filter, BPF programs). Prints one "PROBE name=result"
line per attempt, the error's name or "ok", and never fails, so that the daemon still starts."""

import errno
import os
import socket


def attempt(name, action):
    try:
        action()
        result = "ok"
    except TimeoutError:
        result = "timeout"
    except OSError as e:
        result = errno.errorcode.get(e.errno, str(e.errno))
    print(f"PROBE {name}={result}", flush=True)


def write(path):
    def action():
        with open(path, "w") as f:
            f.write("probe\n")
        os.unlink(path)

    return action


def connect(host, port):
    def action():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect((host, port))

    return action


def send_udp(host, port):
    def action():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"probe", (host, port))

    return action


def bind(port):
    def action():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))

    return action


def open_socket(family, kind):
    def action():
        socket.socket(family, kind).close()

    return action


attempt("write-state-dir", write(os.path.join(os.environ["STATE_DIRECTORY"], "probe")))
# Owned by the service user, made by the test: only the sandbox can refuse this one.
attempt("write-own-dir-outside", write("/var/spool/postecole-probe/probe"))
attempt("write-etc", write("/etc/probe"))
attempt("write-usr", write("/usr/local/probe"))
attempt("read-credential", lambda: open(os.path.join(os.environ["CREDENTIALS_DIRECTORY"], "relay-password")).read())
attempt("read-password-file", lambda: open("/etc/postecole/relay-password").read())
attempt("connect-relay", connect("127.0.0.1", 2525))
attempt("connect-link-local", connect("169.254.1.1", 2525))
attempt("udp-link-local", send_udp("169.254.1.1", 9))
attempt("bind-port", bind(2600))
attempt("socket-netlink", open_socket(socket.AF_NETLINK, socket.SOCK_RAW))
attempt("socket-packet", open_socket(socket.AF_PACKET, socket.SOCK_RAW))
attempt("w+x-mmap", lambda: __import__("mmap").mmap(-1, 4096, prot=7))
