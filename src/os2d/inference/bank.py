"""Class banks: class features computed once and reused across scenes, catalogs and workers.

A bank holds K *entries* (one per class image, and per augmented copy of it) of
``len(names)`` classes. Every per-entry tensor has K rows: ``features`` ``Tensor[K, C, g, g]``
(L2-normalised class features resampled to the head's grid) and the ``extras`` (for example
``templates`` ``Tensor[K, C, 5, 5]`` for the fast mode, colour signatures, calibration statistics).

Features may live in memory (:class:`TensorStore`) or be read on demand from a catalog on disk
(:mod:`os2d.catalog`), so that detection over a catalog needs memory for one chunk of classes,
not for all of them: consumers ask :meth:`ClassBank.entry_features` for the entries they need.

A bank is only valid for the model and class-image settings it was prepared with; its
:class:`BankKey` records them, and :meth:`BankKey.check` refuses a mismatch with a clear error.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Protocol, Sequence, Tuple

import torch

from os2d.errors import InvalidInputError


@dataclass(frozen=True)
class BankKey:
    """What class features depend on: the model and the class-image preprocessing."""

    model_identity: str
    class_size: int
    interpolation: str
    augment: Tuple[str, ...] = ()
    trim: bool = False  # class images' uniform margins cut away (os2d.data.trim)

    def to_dict(self) -> dict:
        blob = asdict(self)
        blob["augment"] = list(self.augment)
        return blob

    @classmethod
    def from_dict(cls, blob: dict) -> "BankKey":
        return cls(model_identity=str(blob["model_identity"]), class_size=int(blob["class_size"]),
                   interpolation=str(blob["interpolation"]), augment=tuple(blob.get("augment", ())),
                   trim=bool(blob.get("trim", False)))

    def check(self, other: "BankKey", *, what: str = "class bank") -> None:
        """Raise :class:`InvalidInputError` naming every field where ``other`` differs from ``self``."""
        diffs = [f"{name}: {getattr(other, name)!r} (expected {getattr(self, name)!r})"
                 for name in ("model_identity", "class_size", "interpolation", "augment", "trim")
                 if getattr(self, name) != getattr(other, name)]
        if diffs:
            raise InvalidInputError(f"{what} was prepared with other settings than this detector's: "
                                    + "; ".join(diffs))


class FeatureStore(Protocol):
    """Where entry features come from: ``get(Tensor[k] int64) -> Tensor[k, C, g, g]``."""

    def __len__(self) -> int: ...

    def get(self, index: torch.Tensor) -> torch.Tensor: ...


class TensorStore:
    """Features held in memory: ``Tensor[K, C, g, g]``."""

    def __init__(self, features: torch.Tensor) -> None:
        if features.dim() != 4:
            raise InvalidInputError(f"class features must be Tensor[K, C, g, g], got shape {tuple(features.shape)}")
        self.features = features

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def get(self, index: torch.Tensor) -> torch.Tensor:
        return self.features.index_select(0, index.to(self.features.device))


class _SubsetStore:
    """Entries ``index`` of another store (selection of classes without copying features)."""

    def __init__(self, base: FeatureStore, index: torch.Tensor) -> None:
        self.base, self.index = base, index

    def __len__(self) -> int:
        return int(self.index.numel())

    def get(self, index: torch.Tensor) -> torch.Tensor:
        return self.base.get(self.index[index])


class _ConcatStore:
    """Several stores one after another."""

    def __init__(self, stores: Sequence[FeatureStore]) -> None:
        self.stores = list(stores)
        sizes = torch.tensor([len(s) for s in self.stores], dtype=torch.int64)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.int64), sizes.cumsum(0)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def get(self, index: torch.Tensor) -> torch.Tensor:
        which = torch.bucketize(index, self.offsets[1:], right=True)
        parts = []
        for s in which.unique().tolist():
            mask = which == s
            parts.append((mask.nonzero().squeeze(1), self.stores[s].get(index[mask] - self.offsets[s])))
        out = torch.empty((index.numel(),) + tuple(parts[0][1].shape[1:]), dtype=parts[0][1].dtype)
        for positions, feats in parts:
            out[positions] = feats
        return out


@dataclass
class ClassBank:
    """Class features of ``len(names)`` classes in K entries.

    Attributes:
        names: class names; a detection's label indexes into it.
        entry_labels: ``Tensor[K]`` int64, the class of each entry.
        store: where ``Tensor[K, C, g, g]`` entry features come from (see :meth:`entry_features`).
        key: the model and class-image settings the features were computed with.
        extras: per-entry tensors ``Tensor[K, ...]`` (``templates``, ``colors``, ``calibration``...).
        raw_features: per entry ``Tensor[C, hc, wc]`` unresampled features (only kept for the
            aspect-ratio sliding-window baseline; never stored in catalogs).
    """

    names: List[str]
    entry_labels: torch.Tensor
    store: FeatureStore
    key: BankKey
    extras: Dict[str, torch.Tensor] = field(default_factory=dict)
    raw_features: Optional[List[torch.Tensor]] = None

    def __post_init__(self) -> None:
        k = len(self.store)
        if self.entry_labels.shape != (k,):
            raise InvalidInputError(f"{k} class entries but entry_labels of shape {tuple(self.entry_labels.shape)}")
        for name, tensor in self.extras.items():
            if tensor.shape[0] != k:
                raise InvalidInputError(f"extra {name!r} has {tensor.shape[0]} rows for {k} class entries")
        if len(set(self.names)) != len(self.names):
            raise InvalidInputError(f"class names must be unique, got {self.names}")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_entries(self) -> int:
        return len(self.store)

    @property
    def features(self) -> torch.Tensor:
        """All entry features ``Tensor[K, C, g, g]`` (loads everything: prefer :meth:`entry_features`)."""
        return self.entry_features(torch.arange(self.num_entries))

    def entry_features(self, index: torch.Tensor) -> torch.Tensor:
        """Features of the entries ``index`` (``Tensor[k]`` int64): ``Tensor[k, C, g, g]``."""
        return self.store.get(index)

    def entries_of(self, label: int) -> torch.Tensor:
        """Entry indices of class ``label``: ``Tensor[n]`` int64."""
        return (self.entry_labels == label).nonzero().squeeze(1)

    def select(self, names: Sequence[str]) -> "ClassBank":
        """The bank restricted to ``names`` (in that order); unknown names are an error naming them."""
        index = {n: i for i, n in enumerate(self.names)}
        unknown = [n for n in names if n not in index]
        if unknown:
            raise InvalidInputError(f"unknown classes {unknown}; known: {self.names[:20]}"
                                    + (" ..." if len(self.names) > 20 else ""))
        parts = [self.entries_of(index[n]) for n in names]
        entries = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)
        labels = torch.cat([torch.full((len(p),), i, dtype=torch.int64) for i, p in enumerate(parts)]) \
            if parts else torch.zeros(0, dtype=torch.int64)
        raw = None if self.raw_features is None else [self.raw_features[i] for i in entries.tolist()]
        return ClassBank(names=list(names), entry_labels=labels, store=_SubsetStore(self.store, entries),
                         key=self.key, extras={k: v[entries] for k, v in self.extras.items()}, raw_features=raw)

    @staticmethod
    def concat(banks: Sequence["ClassBank"]) -> "ClassBank":
        """Banks with the same key and disjoint class names, one after another."""
        if not banks:
            raise InvalidInputError("no class banks to concatenate")
        key = banks[0].key
        for bank in banks[1:]:
            key.check(bank.key)
        extra_names = set(banks[0].extras)
        if any(set(b.extras) != extra_names for b in banks):
            raise InvalidInputError("class banks to concatenate carry different extras")
        names, labels = [], []
        for bank in banks:
            labels.append(bank.entry_labels + len(names))
            names.extend(bank.names)
        raw = None if any(b.raw_features is None for b in banks) else [r for b in banks for r in b.raw_features]
        return ClassBank(names=names, entry_labels=torch.cat(labels), store=_ConcatStore([b.store for b in banks]),
                         key=key, extras={k: torch.cat([b.extras[k] for b in banks]) for k in extra_names},
                         raw_features=raw)

    def class_state(self, name: str) -> Dict[str, torch.Tensor]:
        """All tensors of class ``name`` (``features`` and every extra), for storing it on disk."""
        if name not in self.names:
            raise InvalidInputError(f"unknown class {name!r}")
        entries = self.entries_of(self.names.index(name))
        state = {"features": self.entry_features(entries).contiguous()}
        state.update({k: v[entries].contiguous() for k, v in self.extras.items()})
        return state

    @classmethod
    def from_class_states(cls, items: Sequence[Tuple[str, Dict[str, torch.Tensor]]], *, key: BankKey) -> "ClassBank":
        """The inverse of :meth:`class_state` over several classes: ``[(name, state), ...]``."""
        if not items:
            raise InvalidInputError("no classes given")
        extra_names = sorted(set(items[0][1]) - {"features"})
        for name, state in items:
            if "features" not in state or sorted(set(state) - {"features"}) != extra_names:
                raise InvalidInputError(f"stored class {name!r} does not hold the expected tensors "
                                        f"(features + {extra_names}), got {sorted(state)}")
        feats = torch.cat([state["features"] for _, state in items])
        labels = torch.cat([torch.full((state["features"].shape[0],), i, dtype=torch.int64)
                            for i, (_, state) in enumerate(items)])
        extras = {k: torch.cat([state[k] for _, state in items]) for k in extra_names}
        return cls(names=[n for n, _ in items], entry_labels=labels, store=TensorStore(feats), key=key,
                   extras=extras)
