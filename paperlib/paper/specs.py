"""Shared spec builders of the paper layer: the paper's variants and the networks that train them (docs/protocol.md
§4, §6, §7).

:func:`qat_variants` / :func:`noisy_variants` are the variants of Fig. 2 / Table I and of Fig. 3;
:func:`clean_specs` (trained without noise, swept over the profile's sigma grid) and :func:`noisy_specs` (one
network per training sigma, evaluated at that sigma) turn them into run specs. :func:`network_seeds` is the one
place where "0 seeds" means the profile's number. Each figure's module (:mod:`~paperlib.paper.fig2` ...) builds its
``specs(profile, seeds)`` from these.
"""
from __future__ import annotations

from .. import guards
from ..runs.experiment import RunSpec
from ..runs.profile import Profile
from ..runs.summary import Variant


def network_seeds(profile: Profile, arch: str, seeds: int = 0) -> range:
    """The seeds of ``arch``'s networks per variant: ``0 .. seeds-1``, or the profile's number when ``seeds`` is 0
    (a notebook's ``seeds`` parameter, kept on its :class:`~paperlib.paper.Session`)."""
    guards.seeds(seeds)
    return range(seeds if seeds > 0 else profile.for_arch(arch).seeds)


def qat_variants(profile: Profile, arch: str) -> list[Variant]:
    """fp32, then per bit width of the profile: dynamic scaling and the arch's constant scales (Fig. 2, Table I)."""
    return [(None, None)] + [(b, s) for b in profile.bits for s in (None, *profile.scales(arch))]


def noisy_variants(profile: Profile) -> list[Variant]:
    """fp32, then per bit width of ``noisy_bits``: dynamic scaling and the constant ``noisy_scale`` (Fig. 3)."""
    return [(None, None)] + [(b, s) for b in profile.noisy_bits for s in (None, profile.noisy_scale)]


def clean_specs(profile: Profile, arch: str, variants: list[Variant], seeds: int = 0) -> list[RunSpec]:
    """Networks trained without noise, swept over the profile's sigma grid (:func:`network_seeds` per variant)."""
    return [profile.spec(arch, bits=b, scale=s, seed=k) for b, s in variants
            for k in network_seeds(profile, arch, seeds)]


def noisy_specs(profile: Profile, arch: str, variants: list[Variant], seeds: int = 0) -> list[RunSpec]:
    """Noisy training (docs/protocol.md §6): one network per training sigma of ``profile.noisy_sigmas()``,
    evaluated at the same sigma only, as in the paper's Fig. 3 (:func:`network_seeds` per variant and sigma)."""
    return [
        profile.spec(arch, bits=b, scale=s, sigma_train=sig, sigmas=(sig,), seed=k)
        for b, s in variants
        for sig in profile.noisy_sigmas()
        for k in network_seeds(profile, arch, seeds)
    ]
