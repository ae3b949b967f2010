#!/usr/bin/env python3
"""A provider in a box for postecole's OAuth2 tests: an OAuth2 server (HTTPS) and an SMTP relay
(aiosmtpd, STARTTLS) whose AUTH XOAUTH2 accepts only access tokens that server issued.

OAuth2 (RFC 6749, RFC 8628), at https://127.0.0.1:<oauth port>/:
  POST /devicecode   device authorization: device_code, user_code, verification_uri, interval 1
  POST /token        device_code grant: authorization_pending until approved (the second poll
                     gets slow_down), then tokens; refresh_token grant: a new access token and a
                     NEW refresh token, the old one void from then on (rotation); invalid_grant
                     for a void refresh token or when the control says so;
                     client_credentials grant: for the client secret given with --client-secret.

The test steers it with CONTROL_FILE (JSON, read at each request):
  approve           the device login is approved (tokens at the next poll)
  access_ttl        lifetime of new access tokens, seconds (default 3600)
  refresh           "ok" (default) or "invalid_grant"
  revoke            a number: when it grows, every access token issued so far is refused
  auth_failure      how a refused token is answered: "challenge" (334 base64 JSON, then
                    535 5.7.8, as Google), "5.7.3" (535 5.7.3, as Microsoft), "5.5.127"
                    (501 5.5.127 token will expire soon)
  expire_soon_once  a number: when it grows, the next AUTH with a valid token gets 501 5.5.127
  rate              [n, seconds]: DATA beyond n accepted messages in any `seconds` gets
                    "450 4.7.0 rate limit exceeded, try again later"
  close_after_data  the relay closes the session after each message (every message then
                    authenticates afresh, as after an idle time-out)

What happened is appended to EVENTS_FILE, one JSON object a line (never a token):
  {"ev": "poll", "t": <time>, "answer": ...}, {"ev": "refresh", "ok": ...},
  {"ev": "auth", "ok": ..., "why": ...}, {"ev": "data", "ok": ...}
Every token issued is appended to ISSUED_FILE (for the tests' leak checks).
Accepted messages go to MAILDIR as <n>.eml. Prints "READY <smtp port> <oauth port>".
"""

import argparse
import asyncio
import base64
import http.server
import json
import os
import secrets
import signal
import ssl
import threading
import time
import urllib.parse

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Provider:
    def __init__(self, control_file, events_file, issued_file, client_secret):
        self.issued_file = issued_file
        self.lock = threading.Lock()
        self.control_file = control_file
        self.events_file = events_file
        self.client_secret = client_secret
        self.devices = {}  # device_code -> {"polls": n}
        self.access = {}  # token -> {"expires": t, "issued": seq}
        self.refresh = set()
        self.revoked_upto = -1
        self.seen_revoke = 0
        self.seen_expire_soon = 0
        self.seq = 0
        self.accepted = []  # times of accepted DATA

    def control(self):
        try:
            with open(self.control_file) as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def event(self, **fields):
        fields["t"] = time.time()
        with open(self.events_file, "a") as f:
            f.write(json.dumps(fields) + "\n")

    def issue(self, with_refresh):
        c = self.control()
        self.seq += 1
        access = "at-" + secrets.token_urlsafe(24)
        ttl = int(c.get("access_ttl", 3600))
        self.access[access] = {"expires": time.time() + ttl, "seq": self.seq}
        body = {"token_type": "Bearer", "access_token": access, "expires_in": ttl}
        if with_refresh:
            refresh = "rt-" + secrets.token_urlsafe(24)
            self.refresh.add(refresh)
            body["refresh_token"] = refresh
        with open(self.issued_file, "a") as f:
            f.write(access + "\n" + body.get("refresh_token", access) + "\n")
        return body

    def token_valid(self, token):
        c = self.control()
        with self.lock:
            revoke = int(c.get("revoke", 0))
            if revoke > self.seen_revoke:
                self.seen_revoke = revoke
                self.revoked_upto = self.seq
            info = self.access.get(token)
            if info is None:
                return False, "unknown token"
            if info["seq"] <= self.revoked_upto:
                return False, "revoked token"
            if info["expires"] <= time.time():
                return False, "expired token"
            soon = int(c.get("expire_soon_once", 0))
            if soon > self.seen_expire_soon:
                self.seen_expire_soon = soon
                return False, "expire soon"
            return True, "ok"

    # OAuth2 endpoints: (status, JSON body)
    def devicecode(self, form, port):
        code = secrets.token_urlsafe(16)
        with self.lock:
            self.devices[code] = {"polls": 0}
        self.event(ev="devicecode", scope=form.get("scope", ""))
        return 200, {
            "device_code": code,
            "user_code": "PEC-" + secrets.token_hex(3).upper(),
            "verification_uri": f"https://127.0.0.1:{port}/device",
            "expires_in": 900,
            "interval": 1,
            "message": "To sign in, open the page and enter the code.",
        }

    def token(self, form):
        grant = form.get("grant_type", "")
        c = self.control()
        with self.lock:
            if grant == "urn:ietf:params:oauth:grant-type:device_code":
                device = self.devices.get(form.get("device_code", ""))
                if device is None:
                    answer = (400, {"error": "invalid_grant"})
                else:
                    device["polls"] += 1
                    if device["polls"] == 2:
                        answer = (400, {"error": "slow_down"})
                    elif c.get("approve"):
                        del self.devices[form["device_code"]]
                        answer = (200, self.issue(True))
                    else:
                        answer = (400, {"error": "authorization_pending"})
                self.event(ev="poll", answer=answer[1].get("error", "tokens"))
                return answer
            if grant == "refresh_token":
                old = form.get("refresh_token", "")
                if c.get("refresh") == "invalid_grant" or old not in self.refresh:
                    why = "void refresh token" if old not in self.refresh else "control"
                    self.event(ev="refresh", ok=False, why=why)
                    return 400, {
                        "error": "invalid_grant",
                        "error_description": "AADSTS700082: The refresh token has expired.",
                    }
                self.refresh.discard(old)
                self.event(ev="refresh", ok=True)
                return 200, self.issue(True)
            if grant == "client_credentials":
                ok = form.get("client_secret") == self.client_secret
                self.event(ev="client_credentials", ok=ok)
                if not ok:
                    return 401, {"error": "invalid_client"}
                return 200, self.issue(False)
        return 400, {"error": "unsupported_grant_type"}

    # SMTP
    async def auth_XOAUTH2(self, server, args):
        if len(args) < 2:
            return AuthResult(success=False, handled=False, message="501 5.5.2 no initial response")
        try:
            fields = base64.b64decode(args[1]).decode().split("\x01")
            user = fields[0].removeprefix("user=")
            token = fields[1].removeprefix("auth=Bearer ")
        except Exception:
            return AuthResult(success=False, handled=False, message="501 5.5.2 bad XOAUTH2")
        ok, why = self.token_valid(token)
        self.event(ev="auth", ok=ok, why=why, user=user)
        if ok:
            return AuthResult(success=True)
        if why == "expire soon":
            return AuthResult(success=False, handled=False, message="501 5.5.127 Token will expire soon")
        failure = self.control().get("auth_failure", "challenge")
        if failure == "5.7.3":
            return AuthResult(success=False, handled=False, message="535 5.7.3 Authentication unsuccessful")
        if failure == "5.5.127":
            return AuthResult(success=False, handled=False, message="501 5.5.127 Token will expire soon")
        challenge = json.dumps(
            {"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"}
        )
        await server.push("334 " + base64.b64encode(challenge.encode()).decode())
        answer = await server._reader.readline()
        self.event(ev="challenge_answer", empty=answer.strip() == b"")
        return AuthResult(
            success=False, handled=False, message="535 5.7.8 Username and Password not accepted"
        )

    async def handle_DATA(self, server, session, envelope):
        c = self.control()
        rate = c.get("rate")
        now = time.time()
        with self.lock:
            if rate:
                n, window = rate
                self.accepted = [t for t in self.accepted if t > now - window]
                if len(self.accepted) >= n:
                    self.event(ev="data", ok=False)
                    return "450 4.7.0 rate limit exceeded, try again later"
            self.accepted.append(now)
            self.seq_mail = getattr(self, "seq_mail", 0) + 1
            n = self.seq_mail
        tmp = os.path.join(self.maildir, f".{n}.tmp")
        with open(tmp, "wb") as f:
            f.write(envelope.original_content)
        os.rename(tmp, os.path.join(self.maildir, f"{n}.eml"))
        self.event(ev="data", ok=True)
        if c.get("close_after_data"):
            asyncio.get_running_loop().call_soon(server.transport.close)
        return "250 2.0.0 Message accepted"


def oauth_handler(provider, port_box):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            if self.path == "/devicecode":
                status, body = provider.devicecode(form, port_box[0])
            elif self.path == "/token":
                status, body = provider.token(form)
            else:
                status, body = 404, {"error": "not_found"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--smtp-port", type=int, required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--control", required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--issued", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--client-secret", default="")
    args = p.parse_args()

    os.makedirs(args.maildir, exist_ok=True)
    provider = Provider(args.control, args.events, args.issued, args.client_secret)
    provider.maildir = args.maildir

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)

    port_box = [0]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), oauth_handler(provider, port_box))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    port_box[0] = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    controller = Controller(
        provider,
        hostname="127.0.0.1",
        port=args.smtp_port,
        server_hostname="localhost",
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        auth_exclude_mechanism=["LOGIN", "PLAIN"],
    )
    controller.start()
    print(f"READY {args.smtp_port} {port_box[0]}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    httpd.shutdown()


if __name__ == "__main__":
    main()
