"""The attribute table (``configs/attributes.yaml``): ``--attr NAME`` -> a :class:`Direction`.

A spec is one of:

* a known name or alias (``smile``, ``age``, ``eye_openness``, ... see ``vidinv directions list``),
  fetched through the model zoo;
* ``sefa:N`` (the N-th SeFa direction of the generator, all W+ layers) or ``sefa:N:A-B`` (factorised
  over and applied to W+ layers ``A..B`` inclusive);
* a path to a direction file (``.npy`` / ``.pt``; ``ffhq_pca.pt#54`` picks a GANSpace component).

Strengths (``--attr NAME=STRENGTH``, ``--strength``) must be finite numbers (``nan``/``inf`` are an
:class:`~vidinv.errors.InputError`); a strength beyond :func:`strength_limit` (the table's ``max_strength``,
10 by default: ten times the direction's strength-1 edit) only logs a warning, since the face saturates.

Importing this module is cheap (no torch): the direction code is imported when a direction is loaded.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from vidinv.errors import InputError, VidinvError

if TYPE_CHECKING:  # the direction code imports torch: loaded only when a direction is
    from vidinv.editing.directions import Direction

log = logging.getLogger(__name__)

DIRECTION_SUFFIXES = (".npy", ".pt", ".pth")
DEFAULT_MAX_STRENGTH = 10.0  # |strength| beyond this warns, unless the table says otherwise (max_strength)


@functools.lru_cache(maxsize=4)
def _load_table(path: str) -> tuple[dict, dict, float]:
    import yaml

    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise VidinvError(f"cannot read the attribute table {path}: {exc}") from None
    attrs = data.get("attributes") or {}
    for name, entry in attrs.items():
        if not isinstance(entry, dict) or "artifact" not in entry or "kind" not in entry:
            raise VidinvError(f"{path}: attribute {name!r} needs at least 'artifact' and 'kind'")
    limit = _limit(data.get("max_strength", DEFAULT_MAX_STRENGTH), f"{path}: max_strength")
    for name, entry in attrs.items():
        if "max_strength" in entry:
            _limit(entry["max_strength"], f"{path}: attribute {name!r} max_strength")
    return attrs, dict(data.get("aliases") or {}), limit


def _limit(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not math.isfinite(v) or v <= 0:
        raise VidinvError(f"{what} must be a positive number, got {value!r}")
    return v


def _table(path: str | Path | None) -> tuple[dict, dict, float]:
    if path is None:
        from vidinv.paths import config_file

        path = config_file("attributes.yaml")
    return _load_table(str(path))


def attribute_table(path: str | Path | None = None) -> tuple[dict, dict]:
    """``(attributes, aliases)`` from ``configs/attributes.yaml`` (or ``path``)."""
    attrs, aliases, _ = _table(path)
    return attrs, aliases


def strength_limit(spec: str, table: str | Path | None = None) -> float:
    """The ``|strength|`` beyond which an edit with ``spec`` is far outside its useful range.

    A table attribute's own ``max_strength``, else the table's top-level ``max_strength`` (also used for
    ``sefa:N`` and direction files), else :data:`DEFAULT_MAX_STRENGTH`. Strength 1 is each direction's
    reference edit (its ``scale``), so 10 means ten times that edit.
    """
    attrs, aliases, limit = _table(table)
    key = str(spec).strip().lower()
    entry = attrs.get(aliases.get(key, key))
    return float(entry["max_strength"]) if entry and "max_strength" in entry else limit


def parse_strength(text: Any, what: str) -> float:
    """``float(text)`` for a strength; ``nan``, ``inf`` and non-numbers are an :class:`InputError`."""
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise InputError(f"{what}: the strength must be a number, got {text!r}") from None
    if not math.isfinite(v):
        raise InputError(f"{what}: the strength must be a finite number, got {text!r}")
    return v


def known_attributes(table: str | Path | None = None) -> list[str]:
    """The attribute names of the table, in table order."""
    return list(attribute_table(table)[0])


def _unknown(spec: str, table) -> VidinvError:
    names = known_attributes(table)
    return VidinvError(f"unknown attribute {spec!r}; known: {', '.join(names)}; or sefa:N, or a direction file "
                       "(.npy/.pt) - see `vidinv directions list`")


def _require(zoo: Any, artifact: str, offline: bool | None) -> Path:
    if zoo is None:
        from vidinv.zoo import Zoo

        zoo = Zoo()
    if isinstance(zoo, Mapping):
        if artifact not in zoo:
            raise VidinvError(f"direction artifact {artifact!r} is not available (no path given for it)")
        return Path(zoo[artifact])
    return Path(zoo.require(artifact, offline=offline))


def _generator_source(generator: Any, generator_spec: Mapping | None):
    """A generator module / state_dict for SeFa, from ``generator`` or a pipeline model spec."""
    if generator is None and generator_spec is not None:
        generator = generator_spec.get("generator")
    if generator is None:
        raise VidinvError("sefa:N needs the generator's weights (pass --generator, or use a named attribute)")
    if isinstance(generator, str) and generator == "tiny":
        from vidinv.models.tiny import tiny_generator

        return tiny_generator()
    if isinstance(generator, (str, Path)):
        return _load_checkpoint(str(generator))
    return generator


@functools.lru_cache(maxsize=2)
def _load_checkpoint(path: str) -> dict:
    """The modulation weights of a generator checkpoint (only those are kept, and cached)."""
    from vidinv.editing.sefa import _modulations
    from vidinv.models.checkpoint import safe_load

    return {f"{k}.conv.modulation.weight": v for k, v in _modulations(safe_load(path)).items()}


def _sefa(spec: str, generator, generator_spec, n_latent: int | None, style_dim: int | None) -> Direction:
    from vidinv.editing.directions import layer_range

    m = re.fullmatch(r"sefa:(\d+)(?::(\d+)-(\d+))?", spec.strip().lower())
    if not m:
        raise VidinvError(f"bad SeFa spec {spec!r}: use sefa:N (N-th direction, 0-based) "
                          "or sefa:N:A-B (W+ layers A..B)")
    from vidinv.editing.sefa import sefa_directions

    idx = int(m.group(1))
    layers = None if m.group(2) is None else layer_range(int(m.group(2)), int(m.group(3)) + 1)
    src = _generator_source(generator, generator_spec)
    d = sefa_directions(src, layers=layers, k=idx + 1)[idx]
    d.name = spec
    if style_dim is not None and d.style_dim != style_dim:
        raise VidinvError(f"{spec}: the generator used for SeFa has style dim {d.style_dim}, not {style_dim}")
    if n_latent is not None and d.layers is not None and max(d.layers) >= n_latent:
        raise VidinvError(f"{spec}: layers {list(d.layers)} exceed the generator's {n_latent} W+ layers")
    return d


def attribute_artifact(spec: str, table: str | Path | None = None) -> str | None:
    """The zoo artifact behind a known attribute name or alias; None for ``sefa:N``, paths and unknown names."""
    attrs, aliases = attribute_table(table)
    key = str(spec).strip().lower()
    key = aliases.get(key, key)
    return attrs[key]["artifact"] if key in attrs else None


def resolve_attribute(spec: str, zoo: Any = None, n_latent: int | None = 18, style_dim: int | None = None,
                      generator: Any = None, generator_spec: Mapping | None = None, offline: bool | None = None,
                      table: str | Path | None = None) -> Direction:
    """Turn an ``--attr`` spec into a :class:`Direction` checked against the generator's dims.

    Args:
        spec: a known attribute name or alias, ``sefa:N[:A-B]``, or a direction file path (``PATH#K`` picks
            GANSpace component ``K``).
        zoo: a :class:`vidinv.zoo.Zoo` (default: a new one), or a mapping ``{artifact name: path}``.
        n_latent, style_dim: the generator's W+ layer count and style dim (checked; ``None`` skips).
        generator: for ``sefa:N``: a generator module, its state_dict, a checkpoint path or ``'tiny'``.
        generator_spec: a pipeline model spec (``{'generator': 'tiny'|PATH, ...}``), used when ``generator`` is None.
        offline: forbid downloads (default: ``VIDINV_OFFLINE``).
        table: another attribute table file.

    Returns:
        the direction; ``scale`` says what strength 1 stands for.

    Raises:
        VidinvError: unknown name (the message lists the known ones), dimension mismatch, missing file.

    Shape:
        vector ``[L, sd]`` (wplus) or ``[sd]``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise VidinvError("an attribute must be a non-empty name, sefa:N or a file path")
    from vidinv.editing.directions import load_direction

    spec = spec.strip()
    if spec.lower().startswith("sefa:"):
        return _sefa(spec, generator, generator_spec, n_latent, style_dim)
    attrs, aliases = attribute_table(table)
    key = spec.lower()
    key = aliases.get(key, key)
    if key in attrs:
        e = attrs[key]
        path = _require(zoo, e["artifact"], offline)
        layers = tuple(range(*e["layers"])) if e.get("layers") else None
        if e.get("n_latent") and n_latent is not None and int(e["n_latent"]) != n_latent:
            raise VidinvError(f"attribute {key!r} is a {e['n_latent']}-layer W+ direction but the generator has "
                              f"{n_latent} W+ layers (it needs the FFHQ 1024 StyleGAN2)")
        d = load_direction(path, kind=e["kind"] if e["kind"] != "pca" else None, n_latent=n_latent, style_dim=style_dim,
                           scale=float(e.get("scale", 1.0)), name=key, component=e.get("component"), layers=layers)
        d.meta.update(artifact=e["artifact"], attribute=key)
        return d
    path_part, _, comp = spec.partition("#")
    p = Path(path_part).expanduser()
    if p.is_file() or p.suffix.lower() in DIRECTION_SUFFIXES:
        if comp and not comp.isdigit():
            raise VidinvError(f"{spec}: the part after '#' must be a GANSpace component index")
        return load_direction(p, n_latent=n_latent, style_dim=style_dim, component=int(comp) if comp else None)
    raise _unknown(spec, table)


def list_attributes(zoo: Any = None, table: str | Path | None = None) -> list[dict]:
    """One row per attribute: name, kind, artifact, scale, layers, status (zoo availability), description."""
    attrs, aliases = attribute_table(table)
    if zoo is None:
        try:
            from vidinv.zoo import Zoo

            zoo = Zoo()
        except VidinvError:
            zoo = {}
    rev: dict[str, list[str]] = {}
    for a, target in aliases.items():
        rev.setdefault(target, []).append(a)
    rows = []
    for name, e in attrs.items():
        if isinstance(zoo, Mapping):
            status = "present" if e["artifact"] in zoo and Path(zoo[e["artifact"]]).is_file() else "missing"
        else:
            try:
                status = zoo.status(e["artifact"])
            except VidinvError as exc:
                status = f"unknown artifact ({exc})"
        layers = e.get("layers")
        rows.append(dict(name=name, kind=e["kind"], artifact=e["artifact"], scale=e.get("scale", 1.0),
                         layers=("all" if not layers else str(layers[0]) if layers[1] - 1 == layers[0]
                                 else f"{layers[0]}-{layers[1] - 1}"),
                         component=e.get("component"), status=status, aliases=rev.get(name, []),
                         description=e.get("description", "")))
    return rows


def parse_attr_args(items: Sequence[str], default_strength: float = 1.0,
                    table: str | Path | None = None) -> list[tuple[str, float]]:
    """``["smile", "age=-1.5"]`` -> ``[("smile", default_strength), ("age", -1.5)]``.

    The strength follows the last ``=``; a spec without one, or an existing file whose name holds
    an ``=``, gets ``default_strength``.

    Raises:
        InputError: a strength (or ``default_strength``) that is not a finite number (``nan``, ``inf``).

    A strength with ``|s| > strength_limit(name)`` logs a warning (the edit saturates the face) but is kept.
    """
    default = parse_strength(default_strength, "--strength")
    out = []
    for item in items:
        item = str(item).strip()
        if not item:
            raise VidinvError("empty --attr value")
        name, eq, value = item.rpartition("=")
        if not eq or Path(item).is_file():
            out.append((item, default))
            continue
        if not name:
            raise VidinvError(f"--attr {item}: missing attribute name before '='")
        out.append((name, parse_strength(value, f"--attr {item}")))
    for name, strength in out:
        limit = strength_limit(name, table)
        if abs(strength) > limit:
            log.warning("--attr %s: strength %g is far outside the useful range (|strength| <= %g, where 1 "
                        "is the attribute's reference edit); expect a saturated, unrecognisable face",
                        name, strength, limit)
    return out
