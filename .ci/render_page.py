"""Open a page in headless Chromium and wait, in real time, until it shows every expected text.

    render_page.py URL DOM_OUT EXPECTED_FILE TIMEOUT_S -- CHROMIUM_ARGS...

Chromium is driven over its DevTools pipe (file descriptors 3 and 4), so nothing beyond the
browser and the standard library is needed. The page's text is read every half second until
it contains each line of EXPECTED_FILE or TIMEOUT_S passes; then the DOM is written to DOM_OUT
and the browser is closed cleanly (which also finishes a `--log-net-log` file). Exits 0 either
way: the caller checks DOM_OUT and says what is missing.

Waiting on what the reader would see replaces `--dump-dom` with a virtual-time budget, which
could dump the page before the script ran: virtual time runs ahead while the browser does
work it does not count as loading, such as reading a Blob, and on a busy machine that work
took longer than the budget allowed.
"""

import fcntl
import json
import os
import subprocess
import sys
import time


# The page's text without its scripts and styles (which hold the document's own data).
PAGE_TEXT = r"""(() => {
  if (!document.body) return "";
  const page = document.body.cloneNode(true);
  page.querySelectorAll("script, style").forEach((element) => element.remove());
  return page.textContent.replace(/\s+/g, " ");
})()"""


def above_stdio(fd):
    """The same pipe end on a descriptor numbered 10 or more."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class DevTools:
    """Commands and answers over Chromium's remote-debugging pipe: JSON, NUL-separated."""

    def __init__(self, args):
        # Chromium reads commands on fd 3 and writes answers on fd 4. The pipes are first moved
        # above them, so placing their ends on 3 and 4 never overwrites another end.
        to_browser, self._send_fd = (above_stdio(fd) for fd in os.pipe())
        self._recv_fd, from_browser = (above_stdio(fd) for fd in os.pipe())
        os.dup2(to_browser, 3)
        os.dup2(from_browser, 4)
        self.process = subprocess.Popen(
            args + ["--remote-debugging-pipe"], pass_fds=(3, 4), stdout=subprocess.DEVNULL
        )
        for fd in (3, 4, to_browser, from_browser):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0

    def call(self, method, session=None, **params):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._send_fd, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._receive()
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]

    def _receive(self):
        while b"\0" not in self._buffer:
            chunk = os.read(self._recv_fd, 65536)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)


def main():
    url, dom_out, expected_file, timeout = sys.argv[1:5]
    chromium_args = sys.argv[sys.argv.index("--") + 1 :]
    expected = [line for line in open(expected_file, encoding="utf-8").read().splitlines() if line]

    browser = DevTools(chromium_args + ["about:blank"])
    try:
        target = browser.call("Target.createTarget", url=url)["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

        def evaluate(expression):
            result = browser.call("Runtime.evaluate", session, expression=expression, returnByValue=True)
            return result["result"].get("value") or ""

        deadline = time.monotonic() + float(timeout)
        waited = time.monotonic()
        while True:
            text = evaluate(PAGE_TEXT)
            if all(words in text for words in expected) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        print(f"page checked after {time.monotonic() - waited:.1f} s")
        with open(dom_out, "w", encoding="utf-8") as out:
            out.write(evaluate("document.documentElement.outerHTML"))
        browser.call("Browser.close")
    finally:
        try:
            browser.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            browser.process.kill()


if __name__ == "__main__":
    main()
