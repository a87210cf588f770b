"""Python `websockets` client for the server's client tests. Against the test server's app
protocol (echo; `sub <topic>` answered by `subscribed <topic>`) it echoes a text and a binary
message, subscribes to "news", waits for one publish (the test sends it once it sees the
subscription), closes with 1000, and prints what it saw as one JSON object on stdout.

Usage: /usr/bin/python3 py_pubsub.py ws://127.0.0.1:PORT/
"""
import asyncio
import json
import sys

import websockets


async def run(url):
    seen = {}
    async with websockets.connect(url, ping_interval=None) as ws:
        await ws.send("héllo from python")
        seen["echo_text"] = await ws.recv()
        await ws.send(bytes([0, 1, 2, 255]))
        got = await ws.recv()
        seen["echo_binary"] = list(got) if isinstance(got, bytes) else repr(got)
        await ws.send("sub news")
        seen["subscribed"] = await ws.recv()
        seen["published"] = await ws.recv()
        await ws.close(1000, "bye from python")
        seen["close_code"] = ws.close_code
    return seen


def main():
    try:
        seen = asyncio.run(asyncio.wait_for(run(sys.argv[1]), 20))
    except Exception as e:  # report, never hang
        seen = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(seen), flush=True)


main()
