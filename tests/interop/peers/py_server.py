"""Python `websockets` echo server for wse's interop tests.

Usage: /usr/bin/python3 py_server.py <compression:on|off>
Prints `PORT <n>` once listening, `CLOSED <code> <reason>` for every connection that ends.
Echoes every data message with its type; the text command `close:<code>:<reason>` makes the server
start the close handshake with that code and reason, `frag:` answers "fragmented text" in three
fragments, `ping:` pings the client and answers "pinged" once the pong came. Stops when stdin closes.
"""
import asyncio
import sys

import websockets


async def handler(ws, path=None):
    try:
        async for message in ws:
            if isinstance(message, str) and message.startswith("close:"):
                _, code, reason = message.split(":", 2)
                await ws.close(int(code), reason)
                break
            if message == "frag:":
                await ws.send(["frag", "mented ", "text"])
            elif message == "ping:":
                await asyncio.wait_for(await ws.ping(b"py-server-ping"), 5)
                await ws.send("pinged")
            else:
                await ws.send(message)
    except websockets.ConnectionClosed:
        pass
    await ws.wait_closed()
    print(f"CLOSED {ws.close_code} {ws.close_reason}", flush=True)


async def main():
    compression = "deflate" if sys.argv[1:2] == ["on"] else None
    async with websockets.serve(
        handler, "127.0.0.1", 0, compression=compression, max_size=None, ping_interval=None
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)


asyncio.run(main())
