"""A service calling an API with the worker's token, through requests (README, "Example").
While `make demo` runs: /usr/bin/python3 consumers/python/examples/requests_example.py"""

import os

import redis
import requests

from token_lifecycle import RequestsBearerAuth, TokenReader, TokenUnavailableError

reader = TokenReader(redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")), cache=True)  # one per process
session = requests.Session()
session.auth = RequestsBearerAuth(reader, os.environ.get("CLIENT_ID", "orders-service"))
try:
    print(session.get(os.environ.get("API_URL", "http://127.0.0.1:8180/api/resource"), timeout=30).json())
except TokenUnavailableError as error:
    print(f"No token yet for {error.client_id}: is it registered (tokenctl status)?")
finally:
    reader.close()
