"""The reference server's inference engine: one small interface, llama.cpp behind it.

`load_engine` loads a GGUF model and returns an `Engine`. The HTTP layer builds
`SamplingParams` from a request, renders or tokenizes the prompt, and hands the generation to
`reference.scheduler`, which submits it to the engine and steps the engine on the model's own
thread (`Engine.submit`, `Engine.step`: every running generation of the model decoded together).

The interface (`Engine`, `SamplingParams`, the error types) imports without llama-cpp-python;
its one implementation (`load_engine`, `LlamaEngine`, `CHAT_FORMATS`) is imported, and with it
llama.cpp, when one of those names is first used.
"""

import os
from typing import TYPE_CHECKING, Any

# llama.cpp's CPU backend computes on OpenMP threads that meet at a barrier after every
# operation, and libgomp makes a waiting thread spin 300,000 times before it sleeps. On cores
# shared with other work (a CI runner, the server beside its test suite) a spinning thread keeps
# the one it waits for off the CPU. Measured with SmolLM2 on 2 threads and 2 cores: idle, 125
# tokens/s whatever the setting except OMP_WAIT_POLICY=PASSIVE (55-77: it sleeps at every
# barrier); beside two busy processes, 0.6 tokens/s by default, 26-32 passive, 10-50 with a
# spin count of 1000. libgomp reads these once, when llama.cpp's library loads, so they are set
# before the first `import llama_cpp`; explicit settings win. They are set here, in the
# package's own module, because the only modules that import llama_cpp (`_llama`, `_bindings`)
# are in this package: Python runs this file before any of them, whoever imports them first.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")

from reference.engine import _base
from reference.engine._base import *  # noqa: F403  (the interface, re-exported whole)

if TYPE_CHECKING:
    from reference.engine._llama import CHAT_FORMATS, LlamaEngine, load_engine

# The augmented form is the one type checkers follow through to the submodule's list.
__all__: list[str] = []
__all__ += _base.__all__
__all__ += ["CHAT_FORMATS", "LlamaEngine", "load_engine"]

#: Names of the llama.cpp implementation, imported on first use (`reference.engine._llama`).
_LLAMA_NAMES = frozenset({"CHAT_FORMATS", "LlamaEngine", "load_engine"})


def __getattr__(name: str) -> Any:
    if name in _LLAMA_NAMES:
        from reference.engine import _llama

        globals().update({each: getattr(_llama, each) for each in _LLAMA_NAMES})
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
