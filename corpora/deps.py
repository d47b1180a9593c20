"""Debian packages the corpora need: a check that fails with the `apt-get install` line to run.

A package counts as installed when a file it ships exists (a probe), which is faster than asking
dpkg and works the same inside containers whose dpkg database was trimmed.
"""

from __future__ import annotations

import pathlib
from typing import Mapping

# Debian package -> a file that package installs.
PROBES: Mapping[str, str] = {
    "sox": "/usr/bin/sox",
    "flite": "/usr/bin/flite",
    "espeak-ng": "/usr/bin/espeak-ng",
    "festival": "/usr/bin/festival",
    "festvox-kallpc16k": "/usr/share/festival/voices/english/kal_diphone",
    "festvox-kdlpc16k": "/usr/share/festival/voices/english/ked_diphone",
    "festvox-us-slt-hts": "/usr/share/festival/voices/us/cmu_us_slt_arctic_hts",
    "wordnet-base": "/usr/share/wordnet/data.noun",
    "fortunes": "/usr/share/games/fortunes/fortunes",
    "bible-kjv": "/usr/bin/bible",
    "asterisk-core-sounds-en": "/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz",
    "asterisk-core-sounds-en-g722": "/usr/share/asterisk/sounds/en_US_f_Allison/beep.g722",
}


class MissingPackageError(RuntimeError):
    """Raised when Debian packages are missing; the message holds the command that installs them."""


def install_command(packages: list[str]) -> str:
    """The shell line that installs `packages`."""
    return "sudo apt-get install -y --no-install-recommends " + " ".join(packages)


def missing(*packages: str, probes: Mapping[str, str] = PROBES) -> list[str]:
    """Those of `packages` whose probe file is absent, in the order given.

    Raises:
      KeyError: for a package this module has no probe for.
    """
    unknown = [p for p in packages if p not in probes]
    if unknown:
        raise KeyError(f"no probe file known for Debian package(s) {unknown}; known: {sorted(probes)}")
    return [p for p in packages if not pathlib.Path(probes[p]).exists()]


def require(*packages: str, probes: Mapping[str, str] = PROBES) -> None:
    """Returns if every package is installed; else raises `MissingPackageError` naming the fix."""
    absent = missing(*packages, probes=probes)
    if absent:
        raise MissingPackageError(
            f"missing Debian package(s) {', '.join(absent)}; install them with:\n  {install_command(absent)}"
        )
