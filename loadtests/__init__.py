"""The Locust release gate for the chat backend (docs/loadtest.md).

The shared protocol client lives in stack/habitto_client; stack/ is put on sys.path here
so that `python -m loadtests.run` works from a fresh clone without PYTHONPATH.
"""

import sys
from pathlib import Path

_STACK = str(Path(__file__).resolve().parents[1] / "stack")
if _STACK not in sys.path:
    sys.path.insert(0, _STACK)
