#!/usr/bin/env python3
"""A stub OpenAI-compatible model server on loopback, for running a real
OpenClaw gateway without a real model: its first answer in a conversation
is one tool call (web_fetch of TOOL_URL, or exec of TOOL_COMMAND), and once
the tool's result is in the conversation it answers with plain text.

Usage: stub_model.py PORT_FILE   (binds 127.0.0.1:0, writes the port)
Environment: TOOL (web_fetch|exec), TOOL_URL, TOOL_COMMAND.
"""
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOOL = os.environ.get("TOOL", "web_fetch")
TOOL_URL = os.environ.get("TOOL_URL", "https://api.weather.example/v1/forecast?city=berlin")
TOOL_COMMAND = os.environ.get("TOOL_COMMAND", "curl -s https://api.weather.example/v1/forecast")


def answer(messages, tools):
    """The stub's turn: a tool call unless a tool already answered."""
    names = {t.get("function", {}).get("name") for t in tools or []}
    # A tool has answered since the person last spoke (a session's history holds earlier
    # turns; OpenClaw's own notices after a tool result also come as user messages).
    def text(m):
        c = m.get("content")
        return c if isinstance(c, str) else " ".join(p.get("text", "") for p in c or [] if isinstance(p, dict))
    last_user = max((i for i, m in enumerate(messages)
                     if m.get("role") == "user" and not text(m).lstrip().startswith("<<<BEGIN_OPENCLAW")),
                    default=-1)
    answered = any(m.get("role") == "tool" for m in messages[last_user + 1:])
    args = {"url": TOOL_URL} if TOOL == "web_fetch" else {"command": TOOL_COMMAND}
    name = TOOL
    if TOOL not in names and "tool_call" in names:
        # Searched tools (web_fetch among them) are called through OpenClaw's wrapper.
        name, args = "tool_call", {"id": TOOL, "args": args}
    if answered or name not in names:
        why = "done" if answered else f"no {TOOL} tool offered ({sorted(n for n in names if n)})"
        return {"role": "assistant", "content": f"stub: {why}"}, "stop"
    call = {"id": "call_stub_1", "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write("stub-model: " + fmt % args + "\n")

    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": "stub-model", "object": "model"}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        if os.environ.get("STUB_DUMP"):
            with open(os.environ["STUB_DUMP"], "a") as f:
                f.write(json.dumps(request) + "\n")
        message, finish = answer(request.get("messages", []), request.get("tools"))
        created = int(time.time())
        if not request.get("stream"):
            body = json.dumps({"id": "chatcmpl-stub", "object": "chat.completion", "created": created,
                               "model": "stub-model",
                               "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                               "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        delta = {"role": "assistant"}
        if message.get("tool_calls"):
            delta["tool_calls"] = [dict(c, index=0) for c in message["tool_calls"]]
        else:
            delta["content"] = message["content"]
        for chunk in (
            {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
             "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}},
        ):
            chunk.update({"id": "chatcmpl-stub", "object": "chat.completion.chunk",
                          "created": created, "model": "stub-model"})
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("STUB_PORT", "0"))), Handler)
    with open(sys.argv[1], "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()
