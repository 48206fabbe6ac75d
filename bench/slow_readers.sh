#!/usr/bin/env bash
# Large answers and slow readers (a measurement, not a test), over 500 orders of the largest
# size (about 15 MB of JSON in all; a page stops at PAGE_MAX_BYTES): the bytes on the wire of
# the largest page (GET /orders?limit=500) without and with gzip, the peak RSS while 24 clients
# read that page at once, then 24 clients that ask for it and never read it.
#
#   bench/slow_readers.sh [SECONDS]      (default 60; BENCH_BINARY=PATH measures that build)
#
# Prints the page's size, the peak RSS (VmHWM) of the 24 readers, the service's RSS before the
# stall and its peak (VmHWM) during it, how many stalled
# connections the service closed within SECONDS, and whether a fresh client was served
# meanwhile (GET /health once a second), each against its target, PASS or MISS. The service
# runs with its defaults (WRITE_TIMEOUT_MS, MAX_CONNECTIONS, …) unless the caller's
# environment names them. Exits 0 whenever the bench itself ran, MISS or not.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
seconds="${1:-60}"
binary=$(release_binary)
port=$(free_port)
limits=()
for var in WRITE_TIMEOUT_MS MAX_CONNECTIONS MAX_REQUEST_HEAD_BYTES MAX_IN_FLIGHT_REQUESTS PAGE_MAX_BYTES; do
  [ -n "${!var:-}" ] && limits+=("$var=${!var}")
done
python3 - "$binary" "$port" "$seconds" "${limits[@]}" <<'PY'
import gzip, http.client, json, socket, subprocess, sys, threading, time

binary, port, seconds, limits = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
env = {"PATH": "/usr/bin:/bin", "ENVIRONMENT": "local", "STORE": "memory", "SEED_SAMPLE_DATA": "false",
       "HOST": "127.0.0.1", "PORT": str(port), "ENABLE_METRICS": "false", "LOG_LEVEL": "warn",
       "SHUTDOWN_DRAIN_SECONDS": "0"}
env.update(dict(v.split("=", 1) for v in limits))
proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def status_kib(field):
    with open(f"/proc/{proc.pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0

def answer(sock):
    """Reads one Content-Length response; returns (status line, body bytes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("closed")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return head.split(b"\r\n")[0].decode(), body

try:
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"GET /ready HTTP/1.1\r\nHost: b\r\n\r\n")
                if s.recv(16).startswith(b"HTTP/1.1 200"):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit("service not ready within 10 s")
        time.sleep(0.05)

    # 500 orders of the largest size the service accepts.
    with socket.create_connection(("127.0.0.1", port)) as s:
        for n in range(500):
            items = [{"product_id": i + 1, "name": f"{n:06}" + "x" * 194, "quantity": 10000, "price": 999999.99}
                     for i in range(100)]
            body = json.dumps({"customer_name": "n" * 200, "shipping_address": "a" * 500, "items": items}).encode()
            s.sendall(b"POST /orders HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
            status, _ = answer(s)
            assert status.startswith("HTTP/1.1 201"), status
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /orders?limit=500 HTTP/1.1\r\nHost: b\r\n\r\n")
        _, page = answer(s)

    def fetch(headers):
        """GET /orders?limit=500 read to the end; returns (bytes on the wire, body decoded)."""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/orders?limit=500", headers=headers)
        response = conn.getresponse()
        wire = response.read()
        conn.close()
        gzipped = response.getheader("Content-Encoding") == "gzip"
        return len(wire), gzip.decompress(wire) if gzipped else wire

    plain_bytes, _ = fetch({})
    gzip_bytes, unzipped = fetch({"Accept-Encoding": "gzip"})
    assert unzipped == page, "the gzip answer decodes to another page"
    orders_on_page = len(json.loads(page))

    # 24 clients read the largest page at once, five times over; VmHWM is reset first
    # (clear_refs 5), so the peak is theirs.
    with open(f"/proc/{proc.pid}/clear_refs", "w") as f:
        f.write("5")
    def reader():
        for _ in range(5):
            fetch({})
    readers = [threading.Thread(target=reader) for _ in range(24)]
    for r in readers:
        r.start()
    for r in readers:
        r.join()
    readers_peak = status_kib("VmHWM")

    before = status_kib("VmRSS")
    with open(f"/proc/{proc.pid}/clear_refs", "w") as f:
        f.write("5")

    stalled = []
    for _ in range(24):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /orders?limit=500 HTTP/1.1\r\nHost: b\r\n\r\n")
        stalled.append(s)

    started, fresh_ok, fresh_total, fresh_worst = time.monotonic(), 0, 0, 0.0
    while time.monotonic() - started < seconds:
        t = time.monotonic()
        fresh_total += 1
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.settimeout(5)
                s.sendall(b"GET /health HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                if s.recv(16).startswith(b"HTTP/1.1 200"):
                    fresh_ok += 1
        except OSError:
            pass
        fresh_worst = max(fresh_worst, time.monotonic() - t)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))
    peak = status_kib("VmHWM")

    # What a stalled client can still read: the rest of what the kernel buffered, then EOF if
    # the service closed the connection, or the whole answer if it did not.
    closed = delivered = 0
    for s in stalled:
        s.settimeout(2)
        received = 0
        try:
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    closed += received < len(page)
                    break
                received += len(chunk)
        except socket.timeout:
            # Still open: fine when the whole answer was written (the kernel holds it, the
            # service holds nothing, and the connection is an idle keep-alive one).
            delivered += received >= len(page)
        except OSError:
            closed += 1
        s.close()

    mib = lambda kib: kib / 1024
    verdict = lambda ok: "PASS" if ok else "MISS"
    print(f"largest page: GET /orders?limit=500 answers {orders_on_page} orders, {plain_bytes / 1e6:.2f} MB; "
          f"with gzip {gzip_bytes / 1e6:.3f} MB on the wire; settings: {' '.join(limits) or 'defaults'}")
    print(f"peak RSS (VmHWM) with 24 clients reading that page at once: {mib(readers_peak):.0f} MiB")
    print(f"RSS before the stall: {mib(before):.0f} MiB")
    print(f"peak RSS (VmHWM) with 24 stalled readers: {mib(peak):.0f} MiB (target <= 128 MiB) {verdict(mib(peak) <= 128)}")
    print(f"stalled connections closed by the service within {seconds:.0f} s: {closed}/24, "
          f"and {delivered}/24 whose whole answer the service had already written "
          f"{verdict(closed + delivered == 24)}")
    print(f"fresh client served meanwhile: {fresh_ok}/{fresh_total}, slowest {fresh_worst * 1000:.0f} ms "
          f"{verdict(fresh_ok == fresh_total)}")
finally:
    proc.terminate()
    proc.wait(timeout=10)
PY
