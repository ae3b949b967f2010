#!/usr/bin/env python3
"""A real SMTP server for postecole's integration tests, built on aiosmtpd.

Each accepted message is written to MAILDIR as <n>.eml (the exact DATA bytes).
Fault injection: if the file REPLY_FILE exists and is not empty, its first line is sent as the
reply to DATA instead of accepting (e.g. "451 4.3.0 Try again later" or "550 5.1.1 No such user").
--delay makes each DATA take that long (a relay slow enough to stop the daemon mid-delivery).
Prints "READY <port>" on stdout once it listens.
"""

import argparse
import asyncio
import os
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, maildir, reply_file, delay):
        self.maildir = maildir
        self.delay = delay
        self.reply_file = reply_file
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.reply_file and os.path.exists(self.reply_file):
            with open(self.reply_file) as f:
                reply = f.readline().strip()
            if reply:
                return reply
        with self.lock:
            self.count += 1
            n = self.count
        tmp = os.path.join(self.maildir, f".{n}.tmp")
        with open(tmp, "wb") as f:
            header = "X-Envelope-From: {}\r\nX-Envelope-To: {}\r\n".format(
                envelope.mail_from, ",".join(envelope.rcpt_tos)
            )
            f.write(header.encode())
            f.write(envelope.original_content)
        os.rename(tmp, os.path.join(self.maildir, f"{n}.eml"))
        return "250 2.0.0 Message accepted"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--reply-file")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before answering DATA")
    p.add_argument("--cert", help="PEM certificate: enables STARTTLS (or implicit TLS with --tls)")
    p.add_argument("--key")
    p.add_argument("--tls", action="store_true", help="implicit TLS instead of STARTTLS")
    p.add_argument("--auth", help="user:password required before MAIL FROM")
    p.add_argument(
        "--no-8bitmime", action="store_true", help="do not announce 8BITMIME (an old relay)"
    )
    args = p.parse_args()

    os.makedirs(args.maildir, exist_ok=True)
    handler = Handler(args.maildir, args.reply_file, args.delay)
    kwargs = {}
    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    if context and not args.tls:
        kwargs["tls_context"] = context
        kwargs["require_starttls"] = True
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user
                and auth_data.password.decode() == password
            )
            # handled=False: aiosmtpd then answers 535 itself.
            return AuthResult(success=ok, handled=False)

        kwargs["authenticator"] = authenticator
        kwargs["auth_required"] = True
        # aiosmtpd only knows of STARTTLS: with implicit TLS the session is already encrypted,
        # and without TLS the test wants AUTH over plain text.
        kwargs["auth_require_tls"] = context is not None and not args.tls
    if args.no_8bitmime:
        # aiosmtpd announces 8BITMIME only when it hands over undecoded bytes.
        kwargs["decode_data"] = True
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=args.port,
        ssl_context=context if args.tls else None,
        server_hostname="localhost",
        **kwargs,
    )
    controller.start()
    print(f"READY {args.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
