#!/usr/bin/env python3
"""A WebSocket client for the README walkthrough: connects, sends each line typed on stdin as a
text message, and prints every message it receives, until Ctrl-C.

Run: python3 examples/client.py ws://127.0.0.1:8080/prod?user=alice
Needs: pip install websockets
"""
import asyncio
import sys

import websockets


async def main(url: str) -> None:
    async with websockets.connect(url) as ws:
        print(f"connected to {url}; type a line to send it, Ctrl-C to quit", flush=True)

        async def reader():
            async for message in ws:
                print(f"< {message}", flush=True)

        async def writer():
            loop = asyncio.get_running_loop()
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line:
                    break
                await ws.send(line.rstrip("\n"))

        await asyncio.gather(reader(), writer())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8080/prod"))
