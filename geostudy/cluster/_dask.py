"""dask.distributed, imported on demand: it is an optional extra, and a missing install is a
one-line StudyError that names the extra."""

from __future__ import annotations

from types import ModuleType

from ..errors import StudyError

INSTALL_HINT = 'pip install "gpt2-geometry[cluster]"'


def distributed() -> ModuleType:
    """The ``distributed`` module, or a StudyError saying how to install it."""
    try:
        import distributed as dd
    except ImportError as err:
        raise StudyError(f"the cluster needs Dask distributed, which is not installed ({err}); install it with {INSTALL_HINT}.") from None
    return dd
