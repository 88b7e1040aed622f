"""A REST client of the gateway that survives the faults the harness injects.

Each thread keeps one keep-alive connection. A call is retried with the SAME request
(so the same Idempotency-Key) on a network error (connection refused while the
gateway is down, a reset while it dies), on 500/502/503/504 (a service or database
is down behind it) and on 429 (after Retry-After); a 401 logs the user in again. It
gives up only at its deadline, and the caller records that as a failure.
"""

import http.client
import json
import random
import threading
import time
import urllib.parse

RETRY_STATUSES = (500, 502, 503, 504)


class GiveUp(RuntimeError):
    """A call did not get a final answer before its deadline."""


class Stats:
    """Retry counters by cause, shared by every thread."""

    def __init__(self):
        self._mu = threading.Lock()
        self.counts = {}

    def add(self, what, n=1):
        with self._mu:
            self.counts[what] = self.counts.get(what, 0) + n

    def snapshot(self):
        with self._mu:
            return dict(self.counts)


class Gateway:
    """The gateway's base URL and per-thread connections."""

    def __init__(self, url, stats, timeout=15.0):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.timeout = timeout
        self.stats = stats
        self._local = threading.local()

    def _conn(self):
        c = getattr(self._local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.conn = c
        return c

    def _drop(self):
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    def once(self, method, path, body=None, headers=None):
        """One HTTP exchange: (status, headers, parsed JSON body or None). Network
        errors raise OSError or http.client.HTTPException."""
        h = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        c = self._conn()
        try:
            c.request(method, "/api/v1" + path, body=data, headers=h)
            r = c.getresponse()
            raw = r.read()
        except (OSError, http.client.HTTPException):
            self._drop()
            raise
        if r.getheader("Connection", "").lower() == "close":
            self._drop()
        doc = None
        if raw:
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = {"raw": raw[:200].decode(errors="replace")}
        return r.status, r.headers, doc

    def call(self, method, path, body=None, headers=None, deadline=None, on_401=None,
             with_headers=False):
        """once() until a final answer, (status, doc), or (status, response headers,
        doc) with_headers: retries network errors, 5xx and 429 with backoff; on 401
        calls on_401() (which must return fresh headers to merge) and retries. Raises
        GiveUp at the deadline (time.monotonic() value)."""
        attempt = 0
        headers = dict(headers or {})
        while True:
            try:
                status, rh, doc = self.once(method, path, body, headers)
            except (OSError, http.client.HTTPException) as e:
                cause, status, wait = f"network:{type(e).__name__}", None, None
            else:
                if status == 401 and on_401 is not None:
                    headers.update(on_401())
                    cause, wait = "http_401", 0.0
                elif status == 429:
                    cause, wait = "http_429", _retry_after(rh)
                elif status in RETRY_STATUSES:
                    cause, wait = f"http_{status}", None
                else:
                    return (status, rh, doc) if with_headers else (status, doc)
            self.stats.add(cause)
            if deadline is not None and time.monotonic() >= deadline:
                raise GiveUp(f"{method} {path}: still {cause} at the deadline after "
                             f"{attempt + 1} attempts")
            if wait is None:
                wait = min(2.0, 0.05 * (2 ** min(attempt, 6))) * random.uniform(0.5, 1.0)
            time.sleep(wait)
            attempt += 1


def _retry_after(headers):
    try:
        return min(10.0, max(0.1, float(headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


class User:
    """One account's credentials and current access token, shared by the threads
    that act as this user. Logging in again after a 401 happens once per expired
    token, not once per thread."""

    def __init__(self, gw, email, password, display_name):
        self.gw = gw
        self.email, self.password, self.display_name = email, password, display_name
        self.id = None
        self.token = None
        self._mu = threading.Lock()

    def register(self, deadline):
        status, doc = self.gw.call("POST", "/auth/register",
                                   {"email": self.email, "password": self.password,
                                    "display_name": self.display_name}, deadline=deadline)
        # 409: an earlier attempt whose answer was lost did register it.
        if status not in (201, 409):
            raise RuntimeError(f"register {self.email}: {status} {doc}")

    def login(self, deadline=None, stale=None):
        """Logs in unless another thread already replaced the stale token."""
        with self._mu:
            if stale is not None and self.token != stale:
                return self.token
            deadline = deadline or time.monotonic() + 120
            status, doc = self.gw.call("POST", "/auth/login",
                                       {"email": self.email, "password": self.password},
                                       deadline=deadline)
            if status != 200 or not doc or "access_token" not in doc:
                raise RuntimeError(f"login {self.email}: {status} {doc}")
            self.token = doc["access_token"]
            return self.token

    def call(self, method, path, body=None, headers=None, deadline=None, with_headers=False):
        token = self.token
        h = dict(headers or {})
        h["Authorization"] = f"Bearer {token}"

        def relogin():
            nonlocal token
            token = self.login(stale=token)
            return {"Authorization": f"Bearer {token}"}

        return self.gw.call(method, path, body, h, deadline=deadline, on_401=relogin,
                            with_headers=with_headers)
