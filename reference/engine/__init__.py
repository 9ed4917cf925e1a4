"""The reference server's inference engine: one small interface, llama.cpp behind it.

`load_engine` loads a GGUF model and returns an `Engine`. The HTTP layer builds
`SamplingParams` from a request, renders or tokenizes the prompt, and iterates
`Engine.generate` (through `reference.scheduler`, which keeps it off the event loop).
"""

import os

# llama.cpp's CPU backend computes on OpenMP threads that meet at a barrier after every
# operation, and libgomp makes a waiting thread spin 300,000 times before it sleeps. On cores
# shared with other work (a CI runner, the server beside its test suite) a spinning thread keeps
# the one it waits for off the CPU. Measured with SmolLM2 on 2 threads and 2 cores: idle, 125
# tokens/s whatever the setting except OMP_WAIT_POLICY=PASSIVE (55-77: it sleeps at every
# barrier); beside two busy processes, 0.6 tokens/s by default, 26-32 passive, 10-50 with a
# spin count of 1000. libgomp reads these once, when llama.cpp's library loads, so they are set
# before the first `import llama_cpp`; explicit settings win.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")

from reference.engine import _base, _llama
from reference.engine._base import *  # noqa: F403  (the interface, re-exported whole)
from reference.engine._llama import *  # noqa: F403  (its one implementation)

# The augmented form is the one type checkers follow through to the submodules' lists.
__all__: list[str] = []
__all__ += _base.__all__
__all__ += _llama.__all__
