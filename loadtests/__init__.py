"""The Locust release gate for the chat backend (docs/loadtest.md): `python -m loadtests.run`
from the repository root. The protocol client it drives is habitto_client (stack/)."""
