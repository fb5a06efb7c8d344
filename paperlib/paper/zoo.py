"""Build the zoo (:mod:`paperlib.zoo`) from a result cache: the networks behind a profile's committed figures.

    python -m paperlib.paper.zoo --profile quick --notebooks 01 03 --archs lenet5 \\
        [--results results] [--data data] [--release-dir dist/zoo] [--repository-limit-mb 1]

For every spec that the notebooks sweep at the profile (the same specs as ``make export``), the cached network made
by this checkout's code is written as ``<name>.safetensors`` with its manifest entry (spec, key, clean accuracy,
``sigma_mid`` with its calibrated error, code fingerprint, revision, size, sha256). Nothing is trained: a spec
missing from the cache, or cached by other code, is reported, and its manifest entry, if it has one, is kept as it
is (a build without the cache loses nothing). Networks at chance (clean accuracy at most ``--min-accuracy``:
collapsed or diverged) are left out, and counted. Files up to ``--repository-limit-mb`` go into
``paperlib/zoo/weights`` (shipped with the package), larger ones into ``--release-dir`` as release assets to upload
beside the manifest (docs/zoo.md). The manifest keeps other profiles' entries; this profile's rebuilt ones are
replaced, and shipped files no entry names any more are removed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path

from ..atomic import write_atomic
from ..data import load_cifar10
from ..runs.cache import read_record, results_root
from ..runs.experiment import run
from ..runs.fingerprint import current_codes
from ..runs.profile import load_profile
from ..runs.spec import RunSpec
from ..runs.summary import variant_name
from ..zoo import FORMAT, MANIFEST
from .transfer import specs_for


def zoo_name(profile: str, spec: RunSpec) -> str:
    """``<profile>/<arch>-<variant>[-noisy<sigma>]-seed<n>``, e.g. ``quick/lenet5-8bit-s8-seed0``."""
    variant = variant_name(spec.bits, spec.scale).replace("-bit", "bit").replace(" s=", "-s").replace(" ", "-")
    noisy = f"-noisy{spec.sigma_train:.3g}" if spec.sigma_train > 0 else ""
    other = "" if (spec.sigma_theta == 0 and spec.train_noise_kind == "additive") else f"-{spec.train_key()[:6]}"
    return f"{profile}/{spec.arch}-{variant}{noisy}{other}-seed{spec.seed}"


def _state_bytes(model) -> bytes:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return save(state)  # deterministic: the same weights give the same bytes (sorted header)


def build(profile_name: str, notebooks: list[str], archs: list[str] | None, results_dir: str | None,
          data_root: str | None, release_dir: Path | None, repository_limit_mb: float, min_accuracy: float,
          manifest_path: Path = MANIFEST) -> dict:
    """Write the zoo files and manifest for ``profile_name``; returns ``{"added": [names written], "skipped":
    {why: [names]}}``. An entry of the manifest whose network this cache does not hold (made by this code) is kept
    as it is, so a build on a machine without the cache loses nothing."""
    profile = load_profile(profile_name)
    specs = [s for s in specs_for(profile, notebooks) if archs is None or s.arch in archs]
    data = load_cifar10(data_root)
    root, codes = results_root(results_dir), current_codes()
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        manifest = {"format": FORMAT, "base_url": None, "networks": {}}
    networks = {n: e for n, e in manifest["networks"].items() if e["profile"] != profile.name}
    before = {n: e for n, e in manifest["networks"].items() if e["profile"] == profile.name}
    weights_dir = manifest_path.parent / "weights"
    def complete(s: RunSpec) -> RunSpec:
        return replace(s, dataset=data.source, data_digest=data.content_digest())

    keys_of = {nb: {complete(s).train_key() for s in specs_for(profile, [nb])} for nb in notebooks}
    skipped: dict[str, list[str]] = {"not cached by this code": [], "kept as they were (not cached by this code)": [],
                                     "at chance": []}
    written = []
    for spec in specs:
        full = complete(spec)
        record = read_record(root, root / "runs" / full.train_key())
        name = zoo_name(profile.name, full)
        if record is None or (record.get("fingerprint") or {}).get("code") not in codes:
            if name in before:  # nothing is lost: a zoo entry stays until this code has the network to replace it
                networks[name] = before[name]
                skipped["kept as they were (not cached by this code)"].append(name)
            else:
                skipped["not cached by this code"].append(name)
            continue
        result = run(full, results_dir=root, data=data, progress=False)
        if result.diverged or result.accuracy <= min_accuracy:
            skipped["at chance"].append(name)
            continue
        blob = _state_bytes(result.load_model("cpu"))
        file = name.replace("/", "-") + ".safetensors"
        where = "repository" if len(blob) <= repository_limit_mb * 2**20 else "release"
        if where == "release" and release_dir is None:
            raise ValueError(f"{name} ({len(blob) / 2**20:.1f} MiB) is over the repository limit of "
                             f"{repository_limit_mb} MiB: give --release-dir for its release asset")
        dest = (weights_dir if where == "repository" else release_dir) / file
        write_atomic(dest, lambda f, b=blob: f.write(b))
        fit = result.midpoint
        networks[name] = {
            "file": file, "where": where, "size": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
            "spec": full.to_dict(), "key": result.key, "profile": profile.name,
            "figures": [nb for nb in notebooks if result.key in keys_of[nb]],
            "clean_accuracy": result.accuracy,
            "sigma_mid": fit.sigma_mid if fit.ok else None, "sigma_mid_err": fit.sigma_mid_err if fit.ok else None,
            "code": result.code, "revision": result.revision,
        }
        written.append(name)
        print(f"  {name}: {result.accuracy:.1%} clean, {len(blob) / 2**20:.2f} MiB ({where})")
    manifest = {"format": FORMAT, "base_url": manifest.get("base_url"),
                "networks": dict(sorted(networks.items()))}
    text = json.dumps(manifest, indent=1, sort_keys=False) + "\n"
    write_atomic(manifest_path, lambda f: f.write(text.encode()))
    named = {e["file"] for e in networks.values() if e["where"] == "repository"}
    for stale in weights_dir.glob("*.safetensors"):
        if stale.name not in named:
            stale.unlink()
    return {"added": sorted(written), "skipped": skipped}


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m paperlib.paper.zoo", description=__doc__.splitlines()[0])
    p.add_argument("--profile", required=True, help="the profile whose committed figures the networks are behind")
    p.add_argument("--notebooks", nargs="+", default=["01", "03"], help="main-job notebook names (default: 01 03)")
    p.add_argument("--archs", nargs="*", default=None, help="only these architectures (default: all)")
    p.add_argument("--results", default=None, help="the result cache (default: $PAPERLIB_RESULTS or results)")
    p.add_argument("--data", default=None, help="CIFAR-10 (default: $PAPERLIB_DATA or data)")
    p.add_argument("--release-dir", type=Path, default=None, help="where files over the limit go (release assets)")
    p.add_argument("--repository-limit-mb", type=float, default=1.0, help="largest file shipped in the repository")
    p.add_argument("--min-accuracy", type=float, default=0.2, help="leave out networks at or below this accuracy")
    args = p.parse_args(argv)
    out = build(args.profile, args.notebooks, args.archs, args.results, args.data, args.release_dir,
                args.repository_limit_mb, args.min_accuracy)
    nets = json.loads(MANIFEST.read_text())["networks"]
    sizes = sum(nets[n]["size"] for n in out["added"] if nets[n]["where"] == "repository")
    print(f"zoo: {len(out['added'])} network(s) of {args.profile}, {sizes / 2**20:.1f} MiB shipped; "
          + "; ".join(f"{len(v)} {k}" for k, v in out["skipped"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
