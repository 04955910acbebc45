#!/usr/bin/env python3
"""Scripted fake of OpenAI's chat completions API for the rlmd-vs-rlms benchmark.

POST <prefix>/v1/chat/completions: turn = assistant messages in the request + 1.
Turns 1..N-1 answer with a ```repl block that sets and prints x; turn N ends the run:
  - default: the `answer` dict (rlmd, rlms >= 0.1.2),
  - path prefix /legacy (e.g. base URL http://host:port/legacy/v1): FINAL(done) (rlms <= 0.1.1).
Requests without a system message (sub-calls) get a plain "ok".
GET /stats: every request's receive and send time (time.perf_counter, seconds); POST /reset clears them.
"""
import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER_DICT = "```repl\nanswer['content'] = 'done'\nanswer['ready'] = True\n```"
LEGACY = "FINAL(done)"

records, lock = [], threading.Lock()


def reply_for(messages, legacy, n):
    if not any(m.get("role") == "system" for m in messages):
        return False, 0, "ok"
    turn = sum(m.get("role") == "assistant" for m in messages) + 1
    if turn < n:
        return True, turn, f"```repl\nx = {turn}\nprint(x)\n```"
    return True, turn, LEGACY if legacy else ANSWER_DICT


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real APIs do
    disable_nagle_algorithm = True  # else headers and body as two segments cost ~40 ms (delayed ACK)

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self):
        if self.path != "/stats":
            return self.send_json(404, {"error": {"message": "not found"}})
        with lock:
            self.send_json(200, {"requests": list(records)})

    def do_POST(self):
        received = time.perf_counter()
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/reset":
            with lock:
                records.clear()
            return self.send_json(200, {"ok": True})
        if not self.path.endswith("/chat/completions"):
            return self.send_json(404, {"error": {"message": "not found"}})
        req = json.loads(body)
        root, turn, text = reply_for(req["messages"], self.path.startswith("/legacy/"), self.server.n)
        time.sleep(self.server.latency)
        self.send_json(200, {
            "id": f"chatcmpl-fake-{turn}", "object": "chat.completion", "created": int(time.time()),
            "model": req.get("model", "fake"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
        })
        with lock:
            records.append({"received": received, "sent": time.perf_counter(), "root": root, "turn": turn})

    def log_message(self, *args):
        pass


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--latency-ms", type=float, default=0)
    p.add_argument("--iterations", type=int, default=30, help="N: the turn that finishes the run")
    a = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.latency, server.n = a.latency_ms / 1000, a.iterations
    server.serve_forever()


if __name__ == "__main__":
    main()
