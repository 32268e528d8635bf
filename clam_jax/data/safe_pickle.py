"""Reading pickles from outside without running them: only numpy arrays, numpy scalars and plain containers.

BridgeData's robot service pickles its replies and CALVIN pickles its language
annotations into a .npy file; `RestrictedUnpickler` admits the globals those
need (looked up in a fixed table, never imported by name) and refuses every
other, so a crafted payload cannot run code.
"""
import io
import pickle

import numpy as np


def _allowed_globals() -> dict:
    multiarray, numeric = np._core.multiarray, np._core.numeric
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("builtins", "set"): set, ("builtins", "frozenset"): frozenset}
    for module in ("numpy._core", "numpy.core"):  # numpy >= 2 and numpy 1 pickles
        allowed[f"{module}.multiarray", "_reconstruct"] = multiarray._reconstruct
        allowed[f"{module}.multiarray", "scalar"] = multiarray.scalar
        allowed[f"{module}.numeric", "_frombuffer"] = numeric._frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, numpy scalars, dicts, lists, tuples, sets, strings and numbers, and nothing else."""

    _ALLOWED = _allowed_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays and plain "
                                         "containers are accepted") from None


def restricted_loads(data: bytes):
    """The object pickled in `data`; `pickle.UnpicklingError` if it names anything but arrays and containers."""
    return RestrictedUnpickler(io.BytesIO(data)).load()


def load_object_npy(path):
    """The object array a `.npy` file holds (`np.save` of a dict, list, ...), unpickled by `RestrictedUnpickler`."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read_header:
            raise ValueError(f"{path} is a .npy file of format version {version}, which is not supported")
        _, _, dtype = read_header[version](f)
        if not dtype.hasobject:
            raise ValueError(f"{path} holds a plain {dtype} array, not pickled objects")
        return RestrictedUnpickler(f).load()
