#!/usr/bin/env python3
"""Smoke test for a running order-service: the HTTP contract old clients rely on.

Usage:
  smoke-test.py BASE_URL [--api-key KEY] [--read-key KEY] [--no-expect-sample-data]
                [--environment NAME]
                [--resolve HOST:PORT:ADDRESS]

BASE_URL may carry a path prefix, e.g. a `cargo lambda watch` Function URL:
  http://127.0.0.1:9000/lambda-url/order-service-lambda

Read checks always run, with the write key or else the read key (--read-key or
$SMOKE_READ_KEY, a key with only the `read` scope) as bearer: orders are not public unless the
deployment sets PUBLIC_READS=true. When a key is given, the test also checks that a read
without one is refused. Sample-data checks (orders "1".."3") run by default and are turned
off with --no-expect-sample-data, which is what deployments backed by Postgres use. When an
API key is given (--api-key or $SMOKE_API_KEY, the latter keeps it off the command line),
the test also checks that an unauthenticated write is refused, creates one order with the
key and reads it back. Production runs without a key, so the test never writes there.

--resolve works like curl's: connections to HOST:PORT go to ADDRESS (an IP or another
name, e.g. the ALB's own DNS name) while TLS (SNI and the certificate check) and the Host
header keep using HOST. A first deploy is then tested through its load balancer at once,
without waiting for external-dns to publish HOST or for a cached negative DNS answer.

A freshly deployed target may take a while to answer: the test first waits for
GET /ready to return 200 (up to --deadline seconds), then runs each check once, retrying
only transport errors and 502/503/504 from a load balancer that is still switching over.

Exit status: 0 when every check passed, 1 otherwise (one line per failing check), 2 on
bad usage. The last line is always `smoke: N passed, M failed`.

Python 3 standard library only, so it runs anywhere a runner has python3.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

WELCOME_PREFIX = "Welcome to the Order Service API - "
RETRYABLE_STATUS = {502, 503, 504}
USER_AGENT = "order-service-smoke/1"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self):
        # Decimal keeps money exact, so 129.99 compares equal to Decimal("129.99").
        return json.loads(self.body, parse_float=Decimal)


class CheckFailed(Exception):
    """A check's expectation did not hold; the message says what was seen."""


def resolving_opener(resolve: dict[tuple[str, int], str]) -> urllib.request.OpenerDirector:
    """An opener that connects to resolve[(host, port)] instead of looking the host up.

    Only the TCP connection changes: http.client still sends Host: <host>, and for HTTPS
    wraps the socket with server_hostname=<host>, so SNI and the certificate check are
    those of the real name.
    """

    def create_connection(address, *args, **kwargs):
        host, port = address
        return socket.create_connection((resolve.get((host.lower(), port), host), port), *args, **kwargs)

    class HTTPConnection(http.client.HTTPConnection):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._create_connection = create_connection

    class HTTPSConnection(http.client.HTTPSConnection):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._create_connection = create_connection

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(HTTPConnection, req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(HTTPSConnection, req, context=self._context)

    return urllib.request.build_opener(HTTPHandler, HTTPSHandler)


def parse_resolve(value: str) -> tuple[tuple[str, int], str]:
    host, port, address = value.rsplit(":", 2) if value.count(":") >= 2 else ("", "", "")
    if not host or not port.isdigit() or not address:
        raise argparse.ArgumentTypeError(f"--resolve wants HOST:PORT:ADDRESS, got {value!r}")
    return (host.lower(), int(port)), address


@dataclass
class Client:
    base_url: str
    timeout: float
    deadline: float
    retry_pause: float = 2.0
    opener: urllib.request.OpenerDirector = field(default_factory=urllib.request.build_opener)

    def request(self, method: str, path: str, body=None, headers=None) -> Response:
        """One HTTP request; retries transport errors and gateway errors until the deadline."""
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        all_headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        while True:
            req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
            try:
                with self.opener.open(req, timeout=self.timeout) as resp:
                    result = Response(resp.status, _lower(resp.headers), resp.read())
            except urllib.error.HTTPError as err:
                result = Response(err.code, _lower(err.headers), err.read())
            except (urllib.error.URLError, OSError) as err:
                if time.monotonic() + self.retry_pause < self.deadline:
                    time.sleep(self.retry_pause)
                    continue
                raise CheckFailed(f"{method} {path}: {_reason(err)}") from err
            if result.status in RETRYABLE_STATUS and time.monotonic() + self.retry_pause < self.deadline:
                time.sleep(self.retry_pause)
                continue
            return result


def _lower(headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _reason(err: Exception) -> str:
    return str(getattr(err, "reason", err))


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def expect_status(resp: Response, want: int, what: str) -> None:
    expect(resp.status == want, f"{what}: status {resp.status}, want {want} (body: {_snippet(resp.body)})")


def expect_json(resp: Response, what: str, media_type: str = "application/json"):
    expect(
        resp.content_type.split(";")[0].strip() == media_type,
        f"{what}: content-type {resp.content_type!r}, want {media_type}",
    )
    try:
        return resp.json()
    except ValueError as err:
        raise CheckFailed(f"{what}: body is not JSON ({err}): {_snippet(resp.body)}") from err


def expect_object(value, what: str) -> dict:
    expect(isinstance(value, dict), f"{what}: body is {type(value).__name__}, want a JSON object")
    return value


def _snippet(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass
class Smoke:
    client: Client
    environment: str | None
    expect_sample_data: bool
    api_key: str | None
    read_key: str | None = None
    results: list[tuple[str, str | None]] = field(default_factory=list)

    def run(self) -> None:
        self.check("ready", self.wait_until_ready)
        self.check("GET / welcome message", self.root)
        self.check("GET /health", self.health)
        if self.api_key or self.read_key:
            self.check("GET /orders without a key is refused", self.read_without_key)
        self.check("GET /orders is a bare JSON array", self.list_orders)
        if self.expect_sample_data:
            self.check("GET /orders/1 sample order", self.sample_order)
        self.check("GET missing order is a problem+json 404", self.missing_order)
        if self.api_key:
            self.check("POST /orders without a key is refused", self.write_without_key)
            self.check("POST /orders then read it back", self.create_and_read_back)

    def check(self, name: str, fn) -> None:
        try:
            fn()
        except CheckFailed as err:
            self.results.append((name, str(err)))
            print(f"FAIL {name}: {err}", flush=True)
        else:
            self.results.append((name, None))
            print(f"ok   {name}", flush=True)

    def wait_until_ready(self) -> None:
        last = "no answer"
        while True:
            try:
                resp = self.client.request("GET", "/ready")
                if resp.status == 200:
                    return
                last = f"status {resp.status}"
            except CheckFailed as err:
                last = str(err)
            if time.monotonic() + self.client.retry_pause >= self.client.deadline:
                raise CheckFailed(f"GET /ready never returned 200 before the deadline (last: {last})")
            time.sleep(self.client.retry_pause)

    def root(self) -> None:
        resp = self.client.request("GET", "/")
        expect_status(resp, 200, "GET /")
        message = expect_object(expect_json(resp, "GET /"), "GET /").get("message", "")
        expect(
            isinstance(message, str) and message.startswith(WELCOME_PREFIX),
            f"GET /: message {message!r} does not start with {WELCOME_PREFIX!r}",
        )
        if self.environment:
            want = WELCOME_PREFIX + self.environment
            expect(message == want, f"GET /: message {message!r}, want {want!r}")

    def health(self) -> None:
        resp = self.client.request("GET", "/health")
        expect_status(resp, 200, "GET /health")
        body = expect_json(resp, "GET /health")
        expect(body == {"status": "OK"}, f"GET /health: body {body!r}, want {{'status': 'OK'}}")

    def reads(self) -> dict[str, str]:
        """Headers of a read: the write key can read too; a read-only key is enough."""
        key = self.api_key or self.read_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def read_without_key(self) -> None:
        resp = self.client.request("GET", "/orders")
        expect_status(resp, 401, "GET /orders without a key")
        expect(
            resp.headers.get("www-authenticate") == "Bearer",
            f"GET /orders without a key: WWW-Authenticate {resp.headers.get('www-authenticate')!r}, want 'Bearer'",
        )

    def list_orders(self) -> None:
        resp = self.client.request("GET", "/orders", headers=self.reads())
        expect_status(resp, 200, "GET /orders")
        body = expect_json(resp, "GET /orders")
        expect(isinstance(body, list), f"GET /orders: body is {type(body).__name__}, want a JSON array")
        expect(
            all(isinstance(o, dict) and isinstance(o.get("id"), str) for o in body),
            "GET /orders: every element must be an object with a string id",
        )
        if self.expect_sample_data:
            ids = [o["id"] for o in body]
            expect(ids[:3] == ["1", "2", "3"], f"GET /orders: first ids {ids[:3]}, want ['1', '2', '3']")

    def sample_order(self) -> None:
        resp = self.client.request("GET", "/orders/1", headers=self.reads())
        expect_status(resp, 200, "GET /orders/1")
        order = expect_object(expect_json(resp, "GET /orders/1"), "GET /orders/1")
        expect(order.get("id") == "1", f"GET /orders/1: id {order.get('id')!r}, want '1'")
        expect(
            order.get("customer_name") == "John Doe",
            f"GET /orders/1: customer_name {order.get('customer_name')!r}, want 'John Doe'",
        )
        # 29.99 + 100.00: exact decimal money, not binary floating point.
        total = order.get("total_amount")
        expect(total == Decimal("129.99"), f"GET /orders/1: total_amount {total!r}, want 129.99")

    def missing_order(self) -> None:
        path = f"/orders/smoke-missing-{uuid.uuid4().hex}"
        resp = self.client.request("GET", path, headers=self.reads())
        expect_status(resp, 404, "GET missing order")
        problem = expect_object(
            expect_json(resp, "GET missing order", media_type="application/problem+json"), "GET missing order"
        )
        expect(
            problem.get("detail") == "Order not found",
            f"GET missing order: detail {problem.get('detail')!r}, want 'Order not found'",
        )
        expect(problem.get("status") == 404, f"GET missing order: problem status {problem.get('status')!r}, want 404")

    def write_without_key(self) -> None:
        resp = self.client.request("POST", "/orders", body=new_order())
        expect_status(resp, 401, "POST /orders without a key")

    def create_and_read_back(self) -> None:
        headers = {
            "Authorization": f"Bearer {self.api_key}",
            # A retried create (after a transport error) must not make a second order.
            "Idempotency-Key": str(uuid.uuid4()),
        }
        resp = self.client.request("POST", "/orders", body=new_order(), headers=headers)
        expect_status(resp, 201, "POST /orders")
        created = expect_object(expect_json(resp, "POST /orders"), "POST /orders")
        order_id = created.get("id")
        expect(isinstance(order_id, str) and order_id != "", f"POST /orders: id {order_id!r}, want a string")
        location = resp.headers.get("location", "")
        expect(
            location.endswith(f"/orders/{order_id}"),
            f"POST /orders: Location {location!r}, want it to end with /orders/{order_id}",
        )
        expect(created.get("status") == "PENDING", f"POST /orders: status {created.get('status')!r}, want PENDING")
        expect(
            created.get("total_amount") == Decimal("20.50"),
            f"POST /orders: total_amount {created.get('total_amount')!r}, want 20.50",
        )
        # Read back by id rather than by Location: behind a path prefix (Function URL,
        # cargo lambda watch) the service does not know its public path.
        read = self.client.request("GET", f"/orders/{order_id}", headers=self.reads())
        expect_status(read, 200, f"GET /orders/{order_id}")
        fetched = expect_json(read, f"GET /orders/{order_id}")
        expect(fetched == created, f"GET /orders/{order_id}: {fetched!r} differs from the created order {created!r}")


def new_order() -> dict:
    return {
        "customer_name": "Smoke Test",
        "items": [
            {"product_id": 9001, "name": "Smoke Widget", "quantity": 2, "price": 10.25},
        ],
        "shipping_address": "1 Smoke Test Way, Nowhere, NA 00000",
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Smoke-test a running order-service.")
    parser.add_argument("base_url", help="service root, e.g. https://staging.example.com")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("SMOKE_API_KEY") or None,
        help="bearer key for the write checks (default: $SMOKE_API_KEY; none: no writes)",
    )
    parser.add_argument(
        "--read-key",
        default=os.environ.get("SMOKE_READ_KEY") or None,
        help="bearer key with the read scope only, for deployments the test must not write to "
        "(default: $SMOKE_READ_KEY)",
    )
    parser.add_argument(
        "--expect-sample-data",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="require the seeded orders 1..3 (default: on; off for Postgres-backed deployments)",
    )
    parser.add_argument("--environment", help="require the welcome message to name this environment")
    parser.add_argument(
        "--deadline", type=float, default=180.0, help="seconds to wait for the target to become ready (default 180)"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    parser.add_argument(
        "--resolve",
        type=parse_resolve,
        action="append",
        default=[],
        metavar="HOST:PORT:ADDRESS",
        help="connect to ADDRESS for HOST:PORT, keeping HOST for TLS and the Host header (like curl)",
    )
    args = parser.parse_args(argv)
    if not args.base_url.startswith(("http://", "https://")):
        parser.error("BASE_URL must start with http:// or https://")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    client = Client(
        base_url=args.base_url.rstrip("/"),
        timeout=args.timeout,
        deadline=time.monotonic() + args.deadline,
        opener=resolving_opener(dict(args.resolve)),
    )
    smoke = Smoke(client, args.environment, args.expect_sample_data, args.api_key, args.read_key)
    via = "".join(f" via {address} for {host}:{port}" for (host, port), address in args.resolve)
    print(f"smoke: testing {client.base_url}{via}", flush=True)
    smoke.run()
    failed = sum(1 for _, err in smoke.results if err)
    print(f"smoke: {len(smoke.results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
