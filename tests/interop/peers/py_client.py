"""Python `websockets` client for wse's interop tests: runs the interop cases against a server that
echoes data messages and honours `close:<code>:<reason>`, and prints one JSON object of results.

Usage: /usr/bin/python3 py_client.py ws://127.0.0.1:PORT/ <compression:on|off>
"""
import asyncio
import json
import os
import sys

import websockets

SIZES = [0, 125, 126, 65535, 65536, 16 * 1024 * 1024]


async def run(url, compression):
    results = {}
    comp = "deflate" if compression else None
    async with websockets.connect(url, compression=comp, max_size=None, ping_interval=None) as ws:
        ext = ws.response_headers.get("Sec-WebSocket-Extensions", "") or ""
        results["compression"] = ("permessage-deflate" in ext) == compression
        for size in SIZES:
            data = os.urandom(size)
            await ws.send(data)
            got = await ws.recv()
            results[f"binary {size}"] = isinstance(got, bytes) and got == data
            text = ("é" * (size // 2)) + ("a" * (size % 2))
            await ws.send(text)
            got = await ws.recv()
            results[f"text {size}"] = isinstance(got, str) and got == text
        await ws.send(["frag", "mented ", "text"])
        got = await ws.recv()
        results["fragmented (client sends)"] = got == "fragmented text"
        await ws.send("frag:")
        results["fragmented (server sends)"] = (await ws.recv()) == "fragmented text"
        await ws.send("ping:")
        results["ping (server pings)"] = (await ws.recv()) == "pinged"
        pong = await ws.ping(b"py-ping")
        await asyncio.wait_for(pong, 5)
        results["ping (client pings)"] = True
        await ws.close(4001, "bye from python")
        results["close from client"] = ws.close_code == 4001
    async with websockets.connect(url, compression=comp, max_size=None, ping_interval=None) as ws:
        await ws.send("close:4002:bye from server")
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed:
            pass
        await ws.wait_closed()
        results["close from server"] = ws.close_code == 4002 and ws.close_reason == "bye from server"
    return results


def main():
    url = sys.argv[1]
    compression = sys.argv[2:3] == ["on"]
    try:
        results = asyncio.run(asyncio.wait_for(run(url, compression), 60))
    except Exception as e:  # report, never hang
        results = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(results), flush=True)


main()
