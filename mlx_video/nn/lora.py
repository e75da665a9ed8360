"""LoRA files: load them, resolve their keys to a model's parameters, merge them into the weights.

Formats understood (per key, so one file may mix them):

* kohya / musubi-tuner: ``lora_unet_<module, '.' -> '_'>.lora_down.weight`` / ``.lora_up.weight``
  / ``.alpha``;
* diffusers / PEFT: ``[prefix.]<module>.lora_A.weight`` / ``.lora_B.weight`` (``.alpha`` optional);
* original-key: ``[prefix.]<module>.lora_down.weight`` / ``.lora_up.weight`` (``.alpha`` optional);
* our own layer names: ``<layer>.lora_A`` / ``.lora_B`` (:data:`OWN_NAMES`, a converted LTX-2 distilled LoRA);
* full-tensor diffs (lightx2v / ComfyUI, in the few-step distillation LoRAs): ``<module>.diff`` added to
  ``<module>.weight`` (norm scales, ``head.head``), ``<module>.diff_b`` to ``<module>.bias``, ``<module>.diff_m``
  to ``<module>.modulation`` (lightx2v ``lora_loader.py``), each times the file's strength (no alpha).

``<module>`` may be in any naming a family's own ``sanitize`` knows; the family says which in a
:class:`LoraKeyMap` kept beside its ``sanitize`` (``mlx_video.wan.transformer.lora_key_map``,
``mlx_video.ltx2.transformer.lora_key_map``), with the prefixes files put in front
(``diffusion_model.``, ``transformer.``, ...). Resolution runs that ``sanitize`` on the module's
weight name, so LoRA names follow exactly the checkpoint key maps; this module knows no family.

Merge (:func:`merge_loras`, the one merge path): ``W = base + sum_i strength_i * scale_i * B_i @ A_i``
with ``scale = alpha / rank`` (1 without alpha; always 1 for LTX-2, whose reference
``ltx_core.loader.fuse_loras`` ignores alpha), computed in float32 and cast back to the weight's dtype,
one layer at a time. A quantized layer is dequantized, merged and re-quantized with its own bits /
group size / mode, alone. The merge never changes the weights it is given: each layer gets new arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from ..io.weights import WeightsError, load_safetensors

_ROLES = {
    ".lora_down.weight": "down",
    ".lora_A.weight": "down",
    ".lora_A": "down",
    ".lora_up.weight": "up",
    ".lora_B.weight": "up",
    ".lora_B": "up",
    ".alpha": "alpha",
}
_KOHYA = "lora_unet_"
_SKIP = object()  # a module the family's sanitize drops: the reference never uses it
_PLACEHOLDER = mx.zeros((1,))  # stands for a weight when only its key is mapped
_MAX_LIST = 40  # keys named in one error message


@dataclass(frozen=True)
class LoraKeyMap:
    """How one family's LoRA module names resolve to its MLX parameter names.

    sanitize: the family's checkpoint map ``sanitize(weights, layout) -> {our name: array}``.
    layouts: ``{layout: prefix}`` tried in order, one layout per file; ``prefix`` is put in front of
        a module name (after ``strip``) so that ``sanitize`` sees that layout's own checkpoint key.
    strip: prefixes LoRA files may put in front of module names (names are tried with and without
        them; in kohya names the same prefixes with '.' -> '_').
    use_alpha: scale by ``alpha / rank`` when a module has ``.alpha`` (False: ignore alpha).
    """

    sanitize: Callable[[Mapping[str, mx.array], str], dict]
    layouts: Mapping[str, str]
    strip: tuple[str, ...] = ()
    use_alpha: bool = True


OWN_NAMES = LoraKeyMap(lambda weights, layout: dict(weights), {"mlx_video": ""}, use_alpha=False)
"""A LoRA stored in the model's own layer names: ``{layer}.lora_A`` [r, in] / ``{layer}.lora_B`` [out, r]
(e.g. a converted LTX-2 folder's distilled LoRA), no alpha scaling."""


# ----------------------------------------------------------------------------- files


def load_lora(path: str | Path) -> dict[str, mx.array]:
    """Read a LoRA file: ``.safetensors``, or a torch ``.pth`` / ``.pt`` / ``.ckpt`` / ``.bin`` zip
    checkpoint (read without torch). Returns ``{key: mx.array}`` as stored (dtypes kept).
    Raises WeightsError for a missing, unreadable, empty or non-tensor file or an unknown extension."""
    from ..io.torch_pickle import load_pth

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"LoRA file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        weights = load_safetensors(path)
    elif suffix in (".pth", ".pt", ".ckpt", ".bin"):
        weights = load_pth(path)
    else:
        raise WeightsError(f"{path}: unknown LoRA file type {suffix!r} (expected .safetensors or .pth)")
    bad = [k for k, v in weights.items() if not isinstance(v, mx.array)]
    if not weights or bad:
        why = f"non-tensor entries: {bad[:8]}" if bad else "empty"
        raise WeightsError(f"{path}: not a flat LoRA state dict ({why})")
    return weights


def parse_lora_spec(spec: str) -> tuple[Path, float]:
    """``PATH[:STRENGTH]`` (the CLI's ``--lora`` value) -> (path, strength); strength 1.0 if absent.

    A spec that names an existing file is a path even if it contains ':'. Raises ValueError for a
    strength that is not a finite number, WeightsError (a ValueError) when the file does not exist.
    """
    if Path(spec).is_file():
        return Path(spec), 1.0
    path, sep, s = spec.rpartition(":")
    if not sep:
        raise WeightsError(f"LoRA file not found: {spec}")
    try:
        strength = float(s)
    except ValueError:
        raise ValueError(
            f"LoRA spec {spec!r}: no such file, and {s!r} is not a strength "
            "(expected PATH[:STRENGTH], e.g. style.safetensors:0.8)"
        ) from None
    if not math.isfinite(strength):
        raise ValueError(f"LoRA spec {spec!r}: strength must be a finite number, got {s!r}")
    if not path or not Path(path).is_file():
        raise WeightsError(f"LoRA file not found: {path or spec!r}")
    return Path(path), strength


# ----------------------------------------------------------------------------- key resolution


def _entries(weights: Mapping[str, mx.array], what: str) -> dict[str, dict]:
    """Group keys by LoRA module name: {name: {"down", "up", ["alpha"], "keys"}}."""
    out, bad = {}, []
    for key, w in weights.items():
        suffix = next((suf for suf in _ROLES if key.endswith(suf)), None)
        if suffix is None:
            bad.append(key)
            continue
        role = _ROLES[suffix]
        e = out.setdefault(key[: -len(suffix)], {"keys": []})
        e["keys"].append(key)
        if role in e:  # e.g. both lora_A and lora_down for one module
            bad.append(key)
        e[role] = w
    if bad:
        raise WeightsError(f"{what}: keys that are not LoRA down/up/alpha weights ({len(bad)}): {_names(bad)}")
    if not out:
        raise WeightsError(f"{what}: no LoRA keys")
    half = [k for e in out.values() if "down" not in e or "up" not in e for k in e["keys"]]
    if half:
        raise WeightsError(f"{what}: LoRA modules without both down (A) and up (B) weights: {_names(half)}")
    return out


def _names(keys: Sequence[str]) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - _MAX_LIST} more)" if len(keys) > _MAX_LIST else ""
    return ", ".join(keys[:_MAX_LIST]) + more


def _kohya_candidates(name: str) -> list[str]:
    """Dotted names a kohya name may stand for: each '_' is '.' or '_', except '.' after a number
    (``blocks_0_ffn_0`` -> ``blocks.0.ffn.0``; diffusers' ``linear_1`` keeps its '_')."""
    tokens = name.split("_")
    out = [tokens[0]]
    for prev, tok in zip(tokens, tokens[1:]):
        seps = "." if prev.isdigit() else "._"
        out = [c + s + tok for c in out for s in seps]
        if len(out) > 4096:
            raise WeightsError(f"kohya LoRA name {name!r} is too ambiguous to resolve")
    return out


def _resolve(name: str, km: LoraKeyMap, layout: str, params: set):
    """Our module path for LoRA module ``name`` under ``layout``; None if none; _SKIP if dropped."""
    kohya = name.startswith(_KOHYA)
    base = name[len(_KOHYA) :] if kohya else name
    strip = [p.replace(".", "_") if kohya else p for p in km.strip]
    bases = [base] + [base[len(p) :] for p in strip if base.startswith(p)]
    cands = [c for b in bases for c in (_kohya_candidates(b) if kohya else [b])]
    hits, dropped = set(), False
    for cand in cands:
        mapped = km.sanitize({km.layouts[layout] + cand + ".weight": _PLACEHOLDER}, layout)
        if not mapped:
            dropped = True
        for k in mapped:
            if k in params and k.endswith(".weight"):
                hits.add(k[: -len(".weight")])
    if len(hits) > 1:
        raise WeightsError(f"LoRA module {name!r} is ambiguous: {sorted(hits)}")
    return hits.pop() if hits else (_SKIP if dropped else None)


def _best_layout(key_map: LoraKeyMap, names, resolve) -> tuple[dict, list]:
    """``({name: resolve(name, layout)}, unresolved names)`` under the first of ``key_map.layouts`` that resolves
    every name, else under the one that leaves the fewest unresolved."""
    best = None
    for layout in key_map.layouts:
        found = {n: resolve(n, layout) for n in names}
        missing = [n for n, t in found.items() if t is None]
        if best is None or len(missing) < len(best[1]):
            best = (found, missing)
        if not missing:
            break
    return best


def resolve_lora(
    model: nn.Module, weights: Mapping[str, mx.array], key_map: LoraKeyMap, what: str = "LoRA"
) -> dict[str, tuple[mx.array, mx.array, float]]:
    """Map a LoRA state dict onto ``model``: ``{our module path: (up B [out, r], down A [r, in],
    scale)}`` with ``scale = alpha / r`` (1 without alpha or when ``key_map.use_alpha`` is False).

    All modules of one file must resolve under one of ``key_map.layouts`` (tried in order); modules
    the family's sanitize drops (never used by the reference model) are skipped. Raises WeightsError
    naming the keys that match no weight of ``model``, non-LoRA keys, modules missing a down or up
    weight, and two LoRA modules naming one weight.
    """
    entries = _entries(weights, what)
    params = {k for k, _ in tree_flatten(model.parameters())}
    found, missing = _best_layout(key_map, entries, lambda name, layout: _resolve(name, key_map, layout, params))
    if missing:
        keys = [k for n in missing for k in entries[n]["keys"]]
        raise WeightsError(
            f"{what}: {len(missing)} LoRA modules match no weight of the model "
            f"(tried layouts {list(key_map.layouts)}): {_names(keys)}"
        )
    out, source = {}, {}
    for name, target in found.items():
        if target is _SKIP:
            continue
        if target in out:
            raise WeightsError(f"{what}: LoRA modules {source[target]!r} and {name!r} both target {target}")
        e = entries[name]
        rank = e["down"].shape[0]
        alpha = e.get("alpha")
        scale = float(alpha.item()) / rank if alpha is not None and key_map.use_alpha else 1.0
        out[target], source[target] = (e["up"], e["down"], scale), name
    return out


# ----------------------------------------------------------------------------- merge


# ----------------------------------------------------------------------------- full-tensor diffs

_DIFFS = {".diff_b": ".bias", ".diff_m": ".modulation", ".diff": ".weight"}


def split_diffs(weights: Mapping[str, mx.array]) -> tuple[dict, dict]:
    """(the LoRA down/up/alpha keys, the full-tensor ``.diff`` / ``.diff_b`` / ``.diff_m`` keys) of a file."""
    diffs = {k: v for k, v in weights.items() if k.endswith(tuple(_DIFFS))}
    return {k: v for k, v in weights.items() if k not in diffs}, diffs


def _resolve_diff(key: str, w: mx.array, km: LoraKeyMap, layout: str, params: set):
    """(our parameter name, the tensor in our layout) for diff ``key``; None if none; _SKIP if dropped."""
    suffix = next(s for s in _DIFFS if key.endswith(s))
    name = key[: -len(suffix)]
    kohya = name.startswith(_KOHYA)
    base = name[len(_KOHYA) :] if kohya else name
    strip = [p.replace(".", "_") if kohya else p for p in km.strip]
    bases = [base] + [base[len(p) :] for p in strip if base.startswith(p)]
    hits, dropped = {}, False
    for cand in (c for b in bases for c in (_kohya_candidates(b) if kohya else [b])):
        mapped = km.sanitize({km.layouts[layout] + cand + _DIFFS[suffix]: w}, layout)
        dropped = dropped or not mapped
        hits.update({k: v for k, v in mapped.items() if k in params})
    if len(hits) > 1:
        raise WeightsError(f"LoRA diff {key!r} is ambiguous: {sorted(hits)}")
    return next(iter(hits.items())) if hits else (_SKIP if dropped else None)


def resolve_diffs(
    model: nn.Module, diffs: Mapping[str, mx.array], key_map: LoraKeyMap, what: str = "LoRA"
) -> dict[str, mx.array]:
    """Map full-tensor diff keys (``split_diffs``) onto ``model``: ``{our parameter name: delta}``, under the first
    layout of ``key_map`` where every key resolves. Raises WeightsError naming the keys that match no parameter
    and the deltas whose shape is not the parameter's (a quantized linear weight: its dense (out, in))."""
    if not diffs:
        return {}
    params = dict(tree_flatten(model.parameters()))
    names = set(params)
    found, missing = _best_layout(key_map, diffs, lambda k, layout: _resolve_diff(k, diffs[k], key_map, layout, names))
    if missing:
        raise WeightsError(
            f"{what}: {len(missing)} diff keys match no parameter of the model "
            f"(tried layouts {list(key_map.layouts)}): {_names(missing)}"
        )
    out = {}
    for key, hit in found.items():
        if hit is _SKIP:
            continue
        target, delta = hit
        parent, _, leaf = target.rpartition(".")
        layer = _module_at(model, parent) if parent else model
        shape = (
            _linear_shape(layer)
            if leaf == "weight" and isinstance(layer, nn.QuantizedLinear)
            else tuple(params[target].shape)
        )
        if tuple(delta.shape) != shape:
            raise WeightsError(f"{what}: diff {key} has shape {tuple(delta.shape)}, the parameter {target} {shape}")
        out[target] = delta
    return out


# ----------------------------------------------------------------------------- merge


def _module_at(model: nn.Module, path: str) -> nn.Module:
    m = model
    for p in path.split("."):
        m = m[int(p)] if isinstance(m, (list, tuple)) else m[p]
    return m


def _linear_shape(layer: nn.Module) -> tuple[int, int]:
    """(out, in) of a Linear or QuantizedLinear (packed uint32 rows hold 32 // bits values)."""
    out, cols = layer.weight.shape
    return (out, cols * 32 // layer.bits) if isinstance(layer, nn.QuantizedLinear) else (out, cols)


_QUANT_PARTS = ("weight", "scales", "biases")


def _parts(layer: nn.Module) -> tuple[str, ...]:
    """The parameters a merge rewrites: weight (dense), or weight, scales[, biases] (quantized)."""
    if isinstance(layer, nn.QuantizedLinear):
        return tuple(p for p in _QUANT_PARTS if layer.get(p) is not None)
    return ("weight",)


def _merged_layer(layer: nn.Module, base: dict[str, mx.array], delta: mx.array | None) -> dict[str, mx.array]:
    """New parameters for ``layer``: its unmerged ``base`` parameters (same names as :func:`_parts`)
    plus the float32 ``delta`` [out, in] (None: the base itself, exactly), in the layer's dtypes."""
    if delta is None:
        return {p: base[p].astype(layer[p].dtype) for p in base}
    f32 = mx.float32
    if isinstance(layer, nn.QuantizedLinear):
        mode = getattr(layer, "mode", "affine")
        w = mx.dequantize(
            base["weight"], base["scales"], base.get("biases"), layer.group_size, layer.bits, mode=mode, dtype=f32
        )
        q = mx.quantize(w + delta, layer.group_size, layer.bits, mode=mode)
        out = {"weight": q[0], "scales": q[1].astype(layer.scales.dtype)}
        if "biases" in base:
            out["biases"] = q[2].astype(layer.biases.dtype)
        return out
    return {"weight": (base["weight"].astype(f32) + delta).astype(layer.weight.dtype)}


@dataclass
class _MergePlan:
    """What a merge adds, resolved and checked: per linear layer its LoRA terms ``[(up, down, coefficient)]``
    and full-tensor diff terms ``[(diff, strength)]``, per other parameter (bias, norm scale, modulation) its diff
    terms ``[(diff, strength)]``; all in the model's flat names. Only the LoRAs' own arrays are held: every sum is
    built when asked for (:meth:`delta`, :meth:`dense_delta`), so a streamed merge's hook holding this plan keeps
    no computed delta alive between block reads."""

    layers: dict
    extra: dict
    dense: dict

    @property
    def targets(self) -> list[str]:
        return list(self.layers) + [t for t in self.extra if t not in self.layers]

    def delta(self, target: str, fetch: Callable[[mx.array], mx.array] | None = None) -> mx.array | None:
        """The float32 [out, in] delta of linear layer ``target`` (lazy), None when every strength is zero.
        ``fetch``: maps each LoRA up / down array to the one to use (:class:`_Reread`); default: itself."""
        f = fetch or (lambda a: a)
        terms = [t for t in self.layers.get(target, []) if t[2] != 0.0]
        delta = (
            sum(c * (f(up).astype(mx.float32) @ f(down).astype(mx.float32)) for up, down, c in terms) if terms else None
        )
        if target in self.extra:
            diff = _diff_sum(self.extra[target], f)
            delta = diff if delta is None else delta + diff
        return delta

    def dense_delta(self, key: str, fetch: Callable[[mx.array], mx.array] | None = None) -> mx.array | None:
        """The float32 delta of parameter ``key`` (lazy), None when every strength is zero; ``fetch`` as
        :meth:`delta`."""
        terms = [(d, st) for d, st in self.dense[key] if st != 0.0]
        return _diff_sum(terms, fetch or (lambda a: a)) if terms else None


def _diff_sum(terms, fetch) -> mx.array:
    return sum(st * fetch(d).astype(mx.float32) for d, st in terms)


def _plan(model: nn.Module, loras, key_map: LoraKeyMap) -> _MergePlan:
    """Resolve and check every LoRA of ``loras`` against ``model`` (see :func:`merge_loras`); reads shapes only."""
    plan: dict[str, list] = {}
    diff_plan: dict[str, list] = {}
    for i, (weights, strength) in enumerate(loras):
        what = f"LoRA #{i + 1}"
        if not math.isfinite(float(strength)):
            raise ValueError(f"{what}: strength must be finite, got {strength}")
        weights, diffs = split_diffs(weights)
        for target, delta in resolve_diffs(model, diffs, key_map, what).items():
            diff_plan.setdefault(target, []).append((delta, float(strength)))
        resolved = resolve_lora(model, weights, key_map, what) if weights or not diffs else {}
        for target, (up, down, scale) in resolved.items():
            _check_layer(model, target, up, down, what)
            plan.setdefault(target, []).append((up, down, float(strength) * scale))
    extra, dense = {}, {}  # diffs on linear weights join the layer's LoRA delta (one re-quantization)
    for target, terms in diff_plan.items():
        parent, _, leaf = target.rpartition(".")
        if leaf == "weight" and isinstance(_module_at(model, parent), (nn.Linear, nn.QuantizedLinear)):
            terms = [(d, st) for d, st in terms if st != 0.0]
            if terms:
                extra[parent] = terms
        else:
            dense[target] = terms
    return _MergePlan(plan, extra, dense)


def _plus(base: mx.array, delta: mx.array | None, dtype: mx.Dtype) -> mx.array:
    """``base + delta`` computed in float32, in ``dtype`` (None: ``base`` in ``dtype``)."""
    return base.astype(dtype) if delta is None else (base.astype(mx.float32) + delta).astype(dtype)


def _streamed_blocks(model: nn.Module) -> dict[str, int]:
    """``{module path + ".": block index}`` of the blocks ``model.block_weights`` streams
    (:class:`mlx_video.nn.blockwise.BlockWeights` with a source); {} when it streams none."""
    bw = getattr(model, "block_weights", None)
    if bw is None or not bw.streaming:
        return {}
    index = {id(b): i for i, b in enumerate(bw.blocks)}
    return {f"{path}.": index[id(m)] for path, m in model.named_modules() if id(m) in index}


def _block_of(key: str, prefixes: Mapping[str, int]) -> str | None:
    return next((p for p in prefixes if key.startswith(p)), None)


class _Reread:
    """For a merge into streamed blocks: each LoRA up / down array of a LoRA given as a zero-argument callable
    (re-reading its file lazily, e.g. ``lambda: load_safetensors(f)``) swapped, at each block read, for a fresh
    unevaluated copy of the same tensor, so the LoRA's tensors are read with the block and let go with it instead
    of staying resident once evaluated. One call of the callable serves a whole pass over the blocks (a tensor is
    handed out once per call, as :class:`mlx_video.nn.blockwise.SafetensorsBlocks`). Arrays of LoRAs given as
    mappings are returned as they are."""

    def __init__(self, given, loaded):
        self.loaders, self.keys, self.cache = {}, {}, {}
        self.held = []  # the first read's (unevaluated) arrays stay referenced: their ids stay theirs
        for j, ((src, _), (w, _)) in enumerate(zip(given, loaded)):
            if callable(src):
                self.loaders[j] = src
                self.held.append(w)
                self.keys.update({id(v): (j, k) for k, v in w.items()})

    def __call__(self, a: mx.array) -> mx.array:
        hit = self.keys.get(id(a))
        if hit is None:
            return a
        j, key = hit
        fresh = self.cache.get(j)
        if fresh is None or key not in fresh:
            fresh = self.cache[j] = dict(self.loaders[j]())
        return fresh.pop(key)


def _block_hook(plan: _MergePlan, blocks: Sequence[nn.Module], prefixes: Mapping[str, int], fetch=None):
    """``hook(i, weights) -> weights`` for :meth:`BlockWeights.set_hook`: block i's weights as read from its
    source plus ``plan``'s deltas for that block, computed lazily as each read is evaluated, exactly as the
    resident merge computes them (:func:`_merged_layer`, :func:`_plus`); ``fetch`` as :meth:`_MergePlan.delta`
    takes it. None when no delta touches a block."""
    per: dict[int, tuple[list, list]] = {}
    for t in plan.targets:
        if (pre := _block_of(t, prefixes)) is not None and plan.delta(t) is not None:
            per.setdefault(prefixes[pre], ([], []))[0].append(t[len(pre) :])
    for k in plan.dense:
        if (pre := _block_of(k, prefixes)) is not None and plan.dense_delta(k) is not None:
            per.setdefault(prefixes[pre], ([], []))[1].append(k[len(pre) :])
    if not per:
        return None
    names = {i: pre for pre, i in prefixes.items()}

    def hook(i: int, weights: Mapping[str, mx.array]) -> dict[str, mx.array]:
        if i not in per:
            return dict(weights)
        w, block, pre = dict(weights), blocks[i], names[i]
        layers, dense = per[i]
        for local in layers:
            layer = _module_at(block, local)
            base = {p: w[f"{local}.{p}"] for p in _parts(layer)}
            delta = plan.delta(pre + local, fetch)
            w.update({f"{local}.{p}": v for p, v in _merged_layer(layer, base, delta).items()})
        for local in dense:
            w[local] = _plus(w[local], plan.dense_delta(pre + local, fetch), _param_at(block, local).dtype)
        return w

    return hook


def merge_loras(
    model: nn.Module,
    loras: Sequence[tuple[Mapping[str, mx.array] | Callable[[], Mapping[str, mx.array]], float]],
    key_map: LoraKeyMap = OWN_NAMES,
    base: Mapping[str, mx.array] | Callable[[], Mapping[str, mx.array]] | None = None,
) -> None:
    """Set the weights of the layers the LoRAs touch to ``base + sum_i strength_i * scale_i * B_i @ A_i``.

    loras: ``[(lora state dict, strength), ...]`` (e.g. ``load_lora`` output), or with a zero-argument callable
    returning a fresh lazily read state dict in place of the dict (e.g. ``lambda: load_safetensors(f)``: nothing of
    the LoRA stays resident after the merge, and streamed blocks read its tensors with each block); key_map: the family's
    (``mlx_video.wan.transformer.lora_key_map()``, ``mlx_video.ltx2.transformer.lora_key_map()``) or
    :data:`OWN_NAMES`. base: the unmerged weights, in the model's flat parameter names
    (``"blocks.0.self_attn.q.weight"``, plus ``.scales`` / ``.biases`` for quantized layers): a mapping
    (only read), or a zero-argument callable returning a fresh one (e.g. ``lambda: load_safetensors(f)``),
    which is read one layer at a time and let go as it goes, so memory stays flat; None: the model's
    weights as they are now (a single merge right after loading).

    Idempotent: the merge never changes the weights it is given (MLX arrays are immutable; each touched
    layer gets new arrays, so whoever holds ``base`` or the model's earlier weights still holds them
    unmerged), and with the same ``base`` a second call leaves the model exactly as one call does; a
    call with other strengths replaces the earlier merge instead of adding to it. Layers no LoRA
    touches are left as they are. Each delta is built and added in float32, then cast to the layer's
    dtype (bf16 in production), one layer at a time (extra memory: one layer in float32).
    ``nn.QuantizedLinear`` layers are dequantized, merged and re-quantized with their own bits, group
    size and mode; a zero total strength puts ``base`` back exactly. Full-tensor diffs (``.diff`` /
    ``.diff_b`` / ``.diff_m``, :func:`resolve_diffs`) add ``strength * diff`` to their parameter the same way
    (a diff on a linear weight joins that layer's LoRA delta).

    Streamed blocks (``model.block_weights`` a :class:`mlx_video.nn.blockwise.BlockWeights` with a source,
    docs/streaming.md): their weights are re-read from the source at every forward, so a merge into them would
    be lost. For those blocks the merge is a hook on the BlockWeights instead: each time a block is read, its
    weights are the source's plus this merge's deltas for that block, computed lazily with the read by the same
    code as the resident merge (so bit-identical to it); ``base`` is not used for them (the source is the
    stored weights). A LoRA given as a callable is read again with each block (its tensors for that block, fresh
    and lazy, :class:`_Reread`), so it holds no memory between reads; one given as a mapping is used as it is
    (resident once first read). A later call replaces the hook; one whose strengths are all zero removes it.
    Layers outside the streamed blocks are merged in place as above.

    Everything is checked before any weight changes. Raises WeightsError for unmatched or non-LoRA
    keys (see :func:`resolve_lora`), a LoRA on a layer that is not linear (the Wan patch embedding is
    a Conv3d: no published Wan or LTX-2 LoRA format targets it), rank / shape mismatches, or a ``base``
    that lacks a touched layer's weights or holds them in another shape; ValueError for a non-finite
    strength.
    """
    loaded = [(w() if callable(w) else w, st) for w, st in loras]
    plan = _plan(model, loaded, key_map)
    streamed = _streamed_blocks(model)
    targets = [t for t in plan.targets if _block_of(t, streamed) is None]
    dense = [k for k in plan.dense if _block_of(k, streamed) is None]
    if base is None:
        source = {f"{t}.{p}": _module_at(model, t)[p] for t in targets for p in _parts(_module_at(model, t))}
        source.update({k: _param_at(model, k) for k in dense})
    else:
        fresh = base() if callable(base) else base
        source = dict(fresh)  # our own dict: entries are dropped as layers are merged
        del fresh
    bad = []
    shapes = {f"{t}.{p}": tuple(_module_at(model, t)[p].shape) for t in targets for p in _parts(_module_at(model, t))}
    shapes.update({k: tuple(_param_at(model, k).shape) for k in dense})  # shapes only: hold no old weights
    for k, shape in shapes.items():
        if k not in source or tuple(source[k].shape) != shape:
            bad.append(f"{k} ({'missing' if k not in source else tuple(source[k].shape)}, model {shape})")
    if bad:
        raise WeightsError(f"LoRA merge: base weights do not fit the model: {_names(bad)}")
    fetch = None
    if streamed:  # the hook keeps the plan: evaluate only fresh copies of a callable's arrays, never the plan's
        bw, fetch = model.block_weights, _Reread(loras, loaded)
        bw.set_hook(_block_hook(plan, bw.blocks, streamed, fetch))
    for target in targets:
        layer = _module_at(model, target)
        layer_base = {p: source.pop(f"{target}.{p}") for p in _parts(layer)}
        layer.update(_merged_layer(layer, layer_base, plan.delta(target, fetch)))
        del layer_base
        mx.eval(layer.parameters())
    for target in dense:  # bias, norm scale, modulation: base + delta
        parent, _, leaf = target.rpartition(".")
        module, old = (_module_at(model, parent) if parent else model), _param_at(model, target)
        module.update({leaf: _plus(source.pop(target), plan.dense_delta(target, fetch), old.dtype)})
        mx.eval(module[leaf])


def _check_layer(model: nn.Module, target: str, up: mx.array, down: mx.array, what: str) -> None:
    layer = _module_at(model, target)
    if not isinstance(layer, (nn.Linear, nn.QuantizedLinear)):
        raise WeightsError(
            f"{what}: LoRA on {target} ({type(layer).__name__}) is not supported: only linear layers take LoRA"
        )
    shape = _linear_shape(layer)
    if down.ndim != 2 or up.ndim != 2 or up.shape[1] != down.shape[0] or (up.shape[0], down.shape[1]) != shape:
        raise WeightsError(
            f"{what}: LoRA for {target}: up {tuple(up.shape)} @ down {tuple(down.shape)} "
            f"does not give the weight's shape {shape}"
        )


def check_lora(model: nn.Module, weights: Mapping[str, mx.array], key_map: LoraKeyMap = OWN_NAMES, what="LoRA") -> None:
    """Raise WeightsError as :func:`merge_loras` would for this LoRA on ``model`` (unmatched or non-LoRA keys,
    non-linear targets, shapes that do not fit), reading only shapes: ``model`` may be an unloaded skeleton
    (its lazy arrays are never evaluated), so a file for another model is refused before anything loads."""
    weights, diffs = split_diffs(weights)
    resolve_diffs(model, diffs, key_map, what)
    for target, (up, down, _) in (resolve_lora(model, weights, key_map, what) if weights or not diffs else {}).items():
        _check_layer(model, target, up, down, what)


def _param_at(model: nn.Module, key: str) -> mx.array:
    parent, _, leaf = key.rpartition(".")
    return (_module_at(model, parent) if parent else model)[leaf]
