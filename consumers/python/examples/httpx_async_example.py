"""A service calling an API with the worker's token, through httpx.AsyncClient (README, "Example").
While `make demo` runs: /usr/bin/python3 consumers/python/examples/httpx_async_example.py"""

import asyncio
import os

import httpx
import redis.asyncio

from token_lifecycle import AsyncHttpxBearerAuth, AsyncTokenReader


async def main() -> None:
    async with AsyncTokenReader(redis.asyncio.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")), cache=True) as reader:
        auth = AsyncHttpxBearerAuth(reader, os.environ.get("CLIENT_ID", "orders-service"))
        async with httpx.AsyncClient(auth=auth, timeout=30) as client:
            response = await client.get(os.environ.get("API_URL", "http://127.0.0.1:8180/api/resource"))
            print(response.json())


asyncio.run(main())
