"""What every trained estimator shares: a small base class and ONE file format.

A trained estimator (an NPE :class:`~probinfer.AmortizedPosterior`, a PFN, a Distribution
Transformer…) is weights plus a little configuration; the model it was trained for is code and is
given again when the file is read. Every kind writes the same guarded, versioned file — one
msgpack map, written atomically:

==============  ===============================================================================
``format``      ``"probinfer.estimator"`` (:data:`FORMAT`): what marks the file as ours
``version``     the file format's version (:data:`VERSION`); a newer one asks for an upgrade
``kind``        which family's estimator it holds (``"npe"``, ``"pfn"``, ``"dt"``)
``probinfer``   the package version that wrote it
``sites``       ``{"latent": {site: shape}, "observed": {site: shape}}`` of the model it was
                trained on (checked when it is read back), or None (a PFN has no model)
``meta``        a JSON string: settings, diagnostics, network configuration…
``arrays``      a pytree (nested dicts) of NumPy arrays: weights, standardisations, loss curves
==============  ===============================================================================

:func:`load` (``pi.load``) reads any of them; each family also keeps its own ``load`` with the kind
fixed. A file that is missing, truncated, damaged or foreign, of a newer format version, of
another kind or of another model is answered with one sentence naming the file (a
:class:`~probinfer.errors.DataError`). Files written before this format (no header) are
recognised by the migration functions the families register (:func:`register`), so old files
keep loading. The core knows no family: each registers its kind when it is imported, and
``pi.load`` imports the families first.

>>> post.save("npe.msgpack")                                   # doctest: +SKIP
>>> same = pi.load("npe.msgpack", model)                       # doctest: +SKIP
>>> pfn = pi.load("pfn.msgpack")                               # a PFN needs no model  # doctest: +SKIP
"""

import json
import os

import numpy as np

from probinfer._utils import atomic_write_bytes
from probinfer.errors import DataError, ProbinferError

__all__ = ["FORMAT", "VERSION", "Estimator", "write", "read", "load", "register", "check_sites"]

FORMAT = "probinfer.estimator"
VERSION = 1

# kind -> (loader, migrate). loader(path, header, arrays, model, **kwargs) -> estimator;
# migrate(payload) -> (meta, arrays, sites) for a legacy file of that kind, None otherwise.
_REGISTRY = {}


def register(kind, loader, migrate=None):
    """Make ``kind``'s files readable by :func:`load`.

    Args:
        kind: the name written into the file's ``kind`` field.
        loader: ``loader(path, header, arrays, model, **kwargs) -> estimator``; ``header`` is
            :func:`read`'s (``meta`` already decoded), ``arrays`` the file's array pytree.
        migrate: for files written before this format: ``migrate(payload)`` gets the decoded
            msgpack map of a file without a header and returns ``(meta, arrays, sites)`` when it
            is that kind's old format, None when it is not.
    """
    _REGISTRY[str(kind)] = (loader, migrate)


def kinds():
    """The registered kinds."""
    return sorted(_REGISTRY)


def site_shapes(target):
    """``{"latent": {site: shape}, "observed": {site: shape}}`` of a Target (shapes as lists)."""
    return {
        "latent": {k: list(v.shape) for k, v in target.latent_sites.items()},
        "observed": {k: list(v) for k, v in target.observed_shapes.items()},
    }


def write(path, kind, *, meta, arrays, target=None):
    """Write one estimator file to ``path`` atomically; returns the path (a str).

    ``meta``: JSON-able settings (values JSON cannot hold are written as their ``repr``);
    ``arrays``: a pytree of arrays (nested dicts); ``target``: the Target it was trained on, whose
    latent and observed site shapes are written and checked on reading (None: no model).
    """
    import flax.serialization
    import jax

    import probinfer

    path = os.fspath(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": str(kind),
        "probinfer": probinfer.__version__,
        "sites": None if target is None else site_shapes(target),
        "meta": json.dumps(meta, default=_jsonable),
        "arrays": jax.tree.map(np.asarray, arrays),
    }
    atomic_write_bytes(path, flax.serialization.msgpack_serialize(payload))
    return path


def read(path, kind=None, target=None):
    """The header and arrays of the estimator file at ``path``: ``(header, arrays)``.

    ``header``: ``{"format", "version", "kind", "probinfer", "sites", "meta"}`` with ``meta``
    decoded (a dict); a file of an earlier format is converted by its kind's migration (its
    ``version`` is 0). ``kind``: the kind the file must hold (None: any); ``target``: a Target
    whose sites must match the file's. Every failure is one :class:`DataError` sentence.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        what = f"{kind} estimator" if kind else "estimator"
        raise DataError(f"no saved {what} at '{path}': the file does not exist.")
    payload = _decode(path)
    if payload.get("format") == FORMAT:
        header, arrays = _header(path, payload)
    else:
        header, arrays = _migrate(path, payload, kind)
    if kind is not None and header["kind"] != kind:
        raise DataError(
            f"'{path}' holds an estimator of kind {header['kind']}, not {kind}; load it with "
            "pi.load."
        )
    if target is not None:
        check_sites(path, header, target)
    return header, arrays


def check_sites(path, header, target):
    """Raise one :class:`DataError` sentence when ``target``'s latent or observed sites differ
    from those the file at ``path`` was trained on (naming the sites and their shapes)."""
    saved = header.get("sites")
    if saved is None:
        return
    now = site_shapes(target)
    differences = []
    for group in ("latent", "observed"):
        file_sites, model_sites = saved[group], now[group]
        for site in sorted(set(file_sites) | set(model_sites)):
            in_file, in_model = file_sites.get(site), model_sites.get(site)
            if in_file == in_model:
                continue
            differences.append(
                f"{group} site '{site}' is {_shape(in_model)} in the model but "
                f"{_shape(in_file)} in the file"
            )
    if differences:
        raise DataError(
            f"'{path}' was trained on a model with latent sites {saved['latent']} and observed "
            f"sites {saved['observed']}, not on '{target.name}': " + "; ".join(differences) + "."
        )


def load(path, model=None, *, kind=None, **kwargs):
    """The trained estimator saved at ``path``, whatever its kind (``pi.load``).

    Args:
        path: a file written by an estimator's ``save`` (any format version this one reads).
        model: the model function, Target, zoo Example or name it was trained on (checked
            against the file's sites); None for estimators without a model (a PFN).
        kind: the kind the file must hold (None: any).
        **kwargs: the kind's own loading options (``model_kwargs=``, ``embedding=``,
            ``prior=``…, as its family's ``load`` takes them).
    """
    header, arrays = read(path, kind)
    kind = header["kind"]
    if kind not in _REGISTRY:
        _discover()
    if kind not in _REGISTRY:
        raise DataError(
            f"'{os.fspath(path)}' holds an estimator of kind {kind}, which this probinfer cannot "
            f"read (it reads {kinds()}); upgrade probinfer or import the family that wrote it."
        )
    loader, _ = _REGISTRY[kind]
    try:
        return loader(os.fspath(path), header, arrays, model, **kwargs)
    except KeyError as error:  # a field the kind's loader needs is not in the file
        raise DataError(
            f"'{os.fspath(path)}' is a damaged {kind} estimator file: it lacks the field "
            f"{error}; save the estimator again."
        ) from None


class Estimator:
    """The base of every trained estimator: one file format and one vocabulary.

    A subclass sets ``kind`` (its name in files and :func:`register`) and implements
    ``_meta()`` (JSON-able configuration) and ``_arrays()`` (a pytree of arrays); ``save`` does the
    rest. It keeps ``settings`` (what it was trained with) and ``diagnostics`` (loss curves,
    epochs…) as dicts, and answers with the calling convention's names where they apply:

    * ``sample(key, x, n)`` — ``n`` posterior draws ``{site: (n, *shape)}`` for data set ``x``;
    * ``log_prob(theta, x)`` — log q(θ | x);
    * ``posterior(x, *, key, n=1000)`` — a :class:`~probinfer.Posterior` of ``n`` draws.

    An estimator whose inputs are not one data set says so in its own signature (a
    Distribution Transformer also takes the prior; a PFN answers ``predict`` instead).
    """

    kind = None
    settings: dict
    diagnostics: dict

    def _meta(self):
        raise NotImplementedError(f"{type(self).__name__} does not say what it saves")

    def _arrays(self):
        raise NotImplementedError(f"{type(self).__name__} does not say what it saves")

    def save(self, path):
        """Write this estimator to ``path`` atomically in the one estimator format; ``pi.load``
        (or the family's ``load``) reads it back. Returns the path."""
        return write(
            path,
            self.kind,
            meta=self._meta(),
            arrays=self._arrays(),
            target=getattr(self, "target", None),
        )

    def sample(self, key, x, n):
        """``n`` posterior draws for data set ``x``."""
        raise NotImplementedError(f"{type(self).__name__} has no sample(key, x, n)")

    def log_prob(self, theta, x):
        """log q(θ | x)."""
        raise NotImplementedError(f"{type(self).__name__} has no log_prob(theta, x)")

    def posterior(self, x, *, key, n=1000):
        """A :class:`~probinfer.Posterior` of ``n`` fresh draws for data set ``x`` (one chain:
        each site ``(1, n, *shape)``), labelled with the estimator's kind, settings and
        diagnostics."""
        from probinfer.posterior import Posterior

        draws = self.sample(key, x, n)
        return Posterior(
            {k: v[None] for k, v in draws.items()},
            method=self.kind,
            settings=self.settings,
            diagnostics=self.diagnostics,
        )


# -- reading ---------------------------------------------------------------------------------------


def _decode(path):
    import flax.serialization

    with open(path, "rb") as handle:
        data = handle.read()
    try:
        payload = flax.serialization.msgpack_restore(data)
    except Exception as error:  # msgpack and flax raise many types for damaged bytes
        raise DataError(
            f"'{path}' is not a readable probinfer estimator file: it is truncated, damaged or "
            f"of another format ({type(error).__name__}{_first_line(error)}); save it again."
        ) from None
    if not isinstance(payload, dict):
        raise DataError(
            f"'{path}' is not a probinfer estimator file: it holds a {type(payload).__name__}, "
            "not a saved estimator."
        )
    return payload


def _header(path, payload):
    version = payload.get("version")
    if not isinstance(version, int) or version < 1:
        raise DataError(
            f"'{path}' is a damaged probinfer estimator file: its version is {version!r}."
        )
    if version > VERSION:
        raise DataError(
            f"'{path}' was written by probinfer {payload.get('probinfer', '?')} in estimator "
            f"format version {version}, and this probinfer reads up to version {VERSION}: "
            "upgrade probinfer."
        )
    try:
        meta = json.loads(payload["meta"])
        header = {
            "format": FORMAT,
            "version": version,
            "kind": str(payload["kind"]),
            "probinfer": str(payload.get("probinfer", "?")),
            "sites": payload.get("sites"),
            "meta": meta,
        }
        arrays = payload["arrays"]
        if not isinstance(meta, dict) or not isinstance(arrays, dict):
            raise TypeError("meta or arrays is not a map")
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(
            f"'{path}' is a damaged probinfer estimator file ({type(error).__name__}"
            f"{_first_line(error)}); save the estimator again."
        ) from None
    return header, arrays


def _migrate(path, payload, kind):
    """A file without a header: the first registered migration that recognises it (the asked
    kind's first), after importing the families if none of those registered does."""
    for attempt in range(2):
        order = sorted(_REGISTRY, key=lambda k: k != kind)
        for name in order:
            migrate = _REGISTRY[name][1]
            if migrate is None:
                continue
            try:
                converted = migrate(payload)
            except ProbinferError:
                raise
            except Exception as error:
                raise DataError(
                    f"'{path}' is a damaged {name} estimator file of an earlier format "
                    f"({type(error).__name__}{_first_line(error)}); save the estimator again."
                ) from None
            if converted is not None:
                meta, arrays, sites = converted
                header = {
                    "format": FORMAT,
                    "version": 0,
                    "kind": name,
                    "probinfer": "< 0.2",
                    "sites": sites,
                    "meta": meta,
                }
                return header, arrays
        if attempt == 0:
            _discover()
    raise DataError(
        f"'{path}' is not a probinfer estimator file: it has no '{FORMAT}' header and no earlier "
        "format recognises it."
    )


def _discover():
    """Import the families that write estimators (each registers its kind); the top-level
    package knows them by name, so the core imports none."""
    import probinfer

    probinfer._import_estimator_families()


# -- small helpers ---------------------------------------------------------------------------------


def _shape(shape):
    return "absent" if shape is None else str(tuple(shape))


def _first_line(error):
    text = str(error).strip().splitlines()
    return f": {text[0][:120]}" if text and text[0] else ""


def _jsonable(value):
    if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
        return np.asarray(value).tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return repr(value)
