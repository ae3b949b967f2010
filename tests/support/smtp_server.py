#!/usr/bin/env python3
"""A real SMTP server for postecole's integration tests, built on aiosmtpd.

Each accepted message is written to MAILDIR as <n>.eml (the exact DATA bytes).
Fault injection: if the file REPLY_FILE exists and is not empty, its first line is sent as the
reply to DATA instead of accepting (e.g. "451 4.3.0 Try again later" or "550 5.1.1 No such user").
--delay makes each DATA take that long (a relay slow enough to stop the daemon mid-delivery).

What a relay may offer or impose, for the pipelined client:
  --pipelining          announce PIPELINING (aiosmtpd reads commands as a stream: it copes)
  --chunking            announce CHUNKING and take BDAT (RFC 3030)
  --rcpt-file FILE      lines "address reply": RCPT TO that address gets that reply
  --max-per-connection N  MAIL after N messages on one connection: "421 4.7.0 too many
                        messages", and the connection is closed
  --close-after N       the connection is closed after every N messages, with no word
  --reads-file FILE     every read from a client, as it arrived (one JSON line each:
                        {"conn": n, "data": text}): what came in one segment
Prints "READY <port>" on stdout once it listens.
"""

import argparse
import asyncio
import itertools
import json
import os
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, syntax

CONNECTIONS = itertools.count(1)


class Relay(SMTP):
    """aiosmtpd's session, with BDAT, reads recorded and a message count per connection."""

    reads_file = None
    chunking = False

    def connection_made(self, transport):
        if not hasattr(self, "conn"):
            self.conn = next(CONNECTIONS)
            self.messages = 0
            # Transactions whose end (DATA's final dot, BDAT LAST) was answered: a read that
            # brings a MAIL before the previous one's answer shows transactions pipelined.
            self.answered = 0
        super().connection_made(transport)

    def data_received(self, data):
        if self.reads_file:
            with open(self.reads_file, "a") as f:
                line = {"conn": self.conn, "answered": self.answered, "data": data.decode("latin-1")}
                f.write(json.dumps(line) + "\n")
        super().data_received(data)

    @syntax("BDAT size [LAST]")
    async def smtp_BDAT(self, arg):
        words = (arg or "").split()
        if not self.chunking or not words or not words[0].isdigit():
            await self.push("500 Error: command not recognized")
            return
        size = int(words[0])
        last = len(words) > 1 and words[1].upper() == "LAST"
        # The chunk is read whatever the answer (RFC 3030 2).
        chunk = await self._reader.readexactly(size)
        if not self.envelope.rcpt_tos:
            await self.push("554 5.5.1 Error: no valid recipients")
            self._set_post_data_state()
            self.answered += last
            return
        self.envelope.chunks = getattr(self.envelope, "chunks", b"") + chunk
        if not last:
            await self.push(f"250 2.0.0 {size} octets received")
            return
        self.envelope.original_content = self.envelope.content = self.envelope.chunks
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)
        self.answered += 1


class Handler:
    def __init__(self, maildir, reply_file, delay, args):
        self.maildir = maildir
        self.delay = delay
        self.reply_file = reply_file
        self.rcpt_file = args.rcpt_file
        self.delay_file = args.delay_file
        self.pipelining = args.pipelining
        self.chunking = args.chunking
        self.max_per_connection = args.max_per_connection
        self.close_after = args.close_after
        self.count = 0
        self.lock = threading.Lock()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        extra = []
        if self.pipelining:
            extra.append("250-PIPELINING")
        if self.chunking:
            extra.append("250-CHUNKING")
        return responses[:1] + extra + responses[1:]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.max_per_connection and server.messages >= self.max_per_connection:
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.7.0 too many messages on this connection"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_file and os.path.exists(self.rcpt_file):
            with open(self.rcpt_file) as f:
                for line in f:
                    who, _, reply = line.strip().partition(" ")
                    if who.lower() == address.lower() and reply:
                        return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        status = await self.take(envelope)
        if not getattr(envelope, "chunks", None):
            server.answered += 1
        if status.startswith("250"):
            server.messages += 1
            if self.close_after and server.messages % self.close_after == 0:
                asyncio.get_running_loop().call_soon(server.transport.close)
        return status

    async def take(self, envelope):
        delay = self.delay
        if self.delay_file and os.path.exists(self.delay_file):
            with open(self.delay_file) as f:
                delay = float(f.read().strip() or 0)
        if delay:
            await asyncio.sleep(delay)
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


class RelayController(Controller):
    def factory(self):
        return Relay(self.handler, **self.SMTP_kwargs)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--reply-file")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before answering DATA")
    p.add_argument("--delay-file", help="a file whose number, when present, replaces --delay")
    p.add_argument("--cert", help="PEM certificate: enables STARTTLS (or implicit TLS with --tls)")
    p.add_argument("--key")
    p.add_argument("--tls", action="store_true", help="implicit TLS instead of STARTTLS")
    p.add_argument("--auth", help="user:password required before MAIL FROM")
    p.add_argument(
        "--no-8bitmime", action="store_true", help="do not announce 8BITMIME (an old relay)"
    )
    p.add_argument("--pipelining", action="store_true")
    p.add_argument("--chunking", action="store_true")
    p.add_argument("--rcpt-file")
    p.add_argument("--max-per-connection", type=int, default=0)
    p.add_argument("--close-after", type=int, default=0)
    p.add_argument("--reads-file")
    args = p.parse_args()

    os.makedirs(args.maildir, exist_ok=True)
    handler = Handler(args.maildir, args.reply_file, args.delay, args)
    Relay.reads_file = args.reads_file
    Relay.chunking = args.chunking
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
    controller = RelayController(
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
