"""Whether a model makes the vectors an index holds: the same weights (by fingerprint) and dimension."""
from __future__ import annotations

import hashlib
import json
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from bertkit.errors import BertkitError
from bertkit.index.store import IndexManifest

if TYPE_CHECKING:
    from bertkit.model import Model

# Per model object, its fingerprint: it hashes a megabyte of weights, so it is computed once (when an
# index or a server first meets the model) and reused by every later search.
_FINGERPRINTS: "weakref.WeakKeyDictionary[Model, str]" = weakref.WeakKeyDictionary()


def model_fingerprint(model: "Model") -> str:
    """What identifies a model's vectors wherever its folder lives: its config and the start of its weights."""
    known = _FINGERPRINTS.get(model)
    if known is not None:
        return known
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode("utf-8"))
    if model.folder is not None:
        weights = sorted(Path(model.folder).glob("*.safetensors")) + sorted(Path(model.folder).glob("*.bin"))
        if weights:
            with open(weights[0], "rb") as f:
                h.update(f.read(1 << 20))
    _FINGERPRINTS[model] = found = h.hexdigest()[:16]
    return found


def check_model(manifest: IndexManifest, model: "Model") -> None:
    """One line unless `model` makes the vectors this index holds.

    The weights decide, by fingerprint: the same weights under another name or folder are accepted, a
    model of the index's name whose weights changed since is not. An index that predates fingerprints
    is matched by name. The index's pooling and normalisation are applied to queries by the search
    itself, and its parts were checked against its manifest when it was opened (bertkit.index.store).
    """
    recorded = manifest.fingerprint
    same_name = manifest.model == str(model.source)
    if (recorded is None and same_name) or recorded == model_fingerprint(model):
        dim = int(model.config.hidden_size)
        if manifest.dim != dim:  # the same weights make vectors of their own width: only a changed manifest differs
            raise BertkitError(f"this index says it holds {manifest.dim}-dimensional vectors, but its model "
                               f"{model.source!r} makes {dim}-dimensional ones; restore the manifest or rebuild the index")
        return
    if same_name:
        raise BertkitError(f"the model {manifest.model!r} has changed since this index was built (its weights' "
                           f"fingerprint is {model_fingerprint(model)}, the index's {recorded}); rebuild the index "
                           "with it, or search with the model the index was built with")
    raise BertkitError(f"this index was built with the model {manifest.model!r}, not {model.source!r}; search it "
                       "with that model (--model), or build a new index with this one")
