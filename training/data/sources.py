"""Audio source lists: the held-out evaluation sources and the disjoint training sources (Debian 12 packages)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

CONTENT_TYPES = ("speech", "vocals", "guitar", "drums", "music")
DRYNESS_LEVELS = ("dry", "mostly-dry", "stem", "produced")
ASSEMBLY_MODES = ("window", "concat", "loop")


@dataclass(frozen=True)
class Source:
    """One group of audio files inside one Debian package.

    Attributes:
        package: Debian 12 (bookworm) binary package name.
        content_type: One of ``CONTENT_TYPES``.
        patterns: fnmatch patterns of audio paths inside the unpacked package (``*`` crosses ``/``).
            A pattern ``ARCHIVE.pk3!INNER`` matches ``INNER`` inside the zip archive ``ARCHIVE.pk3``.
        license: Licence of these files, as read from the package's ``/usr/share/doc/PKG/copyright``.
        dryness: One of ``DRYNESS_LEVELS``: "dry" (close-miked, no added effects), "mostly-dry" (light
            processing baked in), "stem" (an isolated instrument with its tone baked in, no mix bus),
            "produced" (a finished mix).
        note: What the files are and why that dryness.
        assembly: How clips are cut: "window" (excerpts of long files), "concat" (short files of one
            folder joined in name order), "loop" (a short loop repeated).
        quick: Part of the ``--quick`` subset.
        max_clips_per_file: Cap on window clips per file (window assembly only).
    """

    package: str
    content_type: str
    patterns: tuple[str, ...]
    license: str
    dryness: str
    note: str
    assembly: str = "window"
    quick: bool = False
    max_clips_per_file: int = 12

    def __post_init__(self) -> None:
        for field, value, valid in (("content_type", self.content_type, CONTENT_TYPES),
                                    ("dryness", self.dryness, DRYNESS_LEVELS),
                                    ("assembly", self.assembly, ASSEMBLY_MODES)):
            if value not in valid:
                raise ValueError(f"source {self.package}: {field} {value!r} is not one of {', '.join(valid)}")

    def matches(self, path: str) -> bool:
        """Whether a package-relative path (``ARCHIVE!INNER`` for archive members) belongs to this source."""
        return any(fnmatch.fnmatchcase(path, p) for p in self.patterns)


_FILLETS = "usr/share/games/fillets-ng/sound/*/cs/*.ogg"
_SECTOID = "usr/share/games/fretsonfire/data/songs/sectoid/*"
_MULDJORD = "usr/share/games/fretsonfire/data/songs/muldjord/*"
_SONIC_PI = "usr/share/sonic-pi/samples/"

EVAL_SOURCES: tuple[Source, ...] = (
    # speech
    Source("fillets-ng-data-cs", "speech", (_FILLETS,), "GPL-2+", "dry",
           "acted Czech dialogue lines (studio voice recordings, 22.05/44.1 kHz mono), no reverb",
           assembly="concat", quick=True),
    Source("klettres-data", "speech", ("usr/share/klettres/*/alpha/*.ogg", "usr/share/klettres/*/syllab/*.ogg"),
           "GPL-2+", "dry", "spoken letters and syllables in many languages (44.1 kHz), close-miked",
           assembly="concat"),
    # vocals / singing
    Source("hedgewars-data", "vocals", ("usr/share/games/hedgewars/Data/Sounds/voices/Singer/*.ogg",),
           "GPL-2 / CC-BY-SA-3.0 (per file, see the package's copyright file)", "mostly-dry",
           "the 'Singer' voice pack: short sung phrases, game-mastered (some compression baked in)",
           assembly="concat"),
    # guitar
    Source("fretsonfire-songs-sectoid", "guitar", (_SECTOID + "/guitar.ogg",), "GPL-2+", "stem",
           "isolated electric-guitar stems of 4 songs (amp tone baked in, no mix processing); long silences",
           quick=True, max_clips_per_file=40),
    Source("hydrogen-drumkits-effects", "guitar",
           ("usr/share/hydrogen/data/drumkits/belofilms_GuitarStrums/*.flac",), "CC-BY-3.0 (Gabriel Verdugo Soto)",
           "dry", "294 close-miked acoustic-guitar strums (96 kHz), chords up/down, joined in name order",
           assembly="concat"),
    # drums
    Source("sonic-pi-samples", "drums",
           tuple(_SONIC_PI + f"loop_{n}.flac" for n in ("amen", "amen_full", "breakbeat", "compus", "garzul",
                                                         "industrial", "mika", "safari", "tabla", "perc1",
                                                         "perc2", "mehackit1", "mehackit2")),
           "CC0 / CC-BY-SA-4.0 (per file, see the package's copyright file)", "produced",
           "short drum and percussion loops (44.1 kHz), looped to clip length; loops carry their own mix",
           assembly="loop", quick=True),
    # full music mixes
    Source("singularity-music", "music", ("usr/share/games/singularity/music/*.ogg",), "CC-BY-SA-3.0",
           "produced", "electronic/orchestral game soundtrack, 48 kHz stereo", quick=True),
    Source("fretsonfire-songs-sectoid", "music", (_SECTOID + "/song.ogg",), "GPL-2+", "produced",
           "rock backing mixes (the songs without their lead guitar)", quick=True),
    Source("hyperrogue-music", "music", ("usr/share/hyperrogue/music/*.ogg",), "CC-BY-SA-3.0 / GPL-2+",
           "produced", "game soundtrack (ambient/orchestral)"),
    Source("nexuiz-music", "music", ("usr/share/games/nexuiz/data/music.pk3!sound/cdtracks/*.ogg",), "GPL-2+",
           "produced", "electronic game soundtrack inside a zip archive (music.pk3)"),
    Source("lincity-ng-data", "music", ("usr/share/games/lincity-ng/music/default/*.ogg",), "GPL-2+",
           "produced", "three produced tracks (blues, ambient)"),
)

# The encoder's training corpus: packages disjoint from EVAL_SOURCES (asserted by tests/test_data_sources.py).
TRAIN_SOURCES: tuple[Source, ...] = (
    Source("warzone2100-music", "music", ("usr/share/games/warzone2100/music/*",), "GPL-2+ / CC-BY-SA",
           "produced", "game soundtrack, 48 kHz Opus"),
    Source("ufoai-music", "music", ("usr/share/games/ufoai/base/0music.pk3!music/*.ogg",), "GPL-2+ / CC-BY-SA",
           "produced", "game soundtrack inside 0music.pk3"),
    Source("planetblupi-music-ogg", "music", ("usr/share/*.ogg",), "GPL-3+", "produced", "game soundtrack"),
    Source("wesnoth-1.16-music", "music", ("usr/share/games/wesnoth/*/data/core/music/*.ogg",), "GPL-2+",
           "produced", "orchestral game soundtrack"),
    Source("supertux-data", "music", ("usr/share/games/supertux2/music/*.ogg",), "GPL-3+ / CC-BY-SA",
           "produced", "game soundtrack"),
    Source("colobot-common-sounds", "music", ("usr/share/games/colobot/music/*.ogg",), "GPL-3+", "produced",
           "game soundtrack"),
    Source("fretsonfire-songs-muldjord", "guitar", (_MULDJORD + "/guitar.ogg",), "GPL-2+", "stem",
           "isolated electric-guitar stems of 4 songs", quick=True),
    Source("fretsonfire-songs-muldjord", "music", (_MULDJORD + "/song.ogg",), "GPL-2+", "produced",
           "metal backing mixes (without lead guitar)", quick=True),
    Source("tuxpaint-stamps-default", "speech", ("usr/share/tuxpaint/stamps/*.ogg",), "GPL-2+", "dry",
           "short spoken words in ~13 languages (drop byte-identical duplicates)", assembly="concat"),
    Source("hydrogen-drumkits", "drums", ("usr/share/hydrogen/data/drumkits/*.flac",
                                          "usr/share/hydrogen/data/drumkits/*.wav"), "GPL-2+ / CC-BY-SA",
           "dry", "multi-velocity one-shots of 16 kits (sequence grooves from them)", assembly="concat"),
)


def sources(which: str) -> tuple[Source, ...]:
    """The evaluation or training source list.

    Args:
        which: "eval" or "train".

    Raises:
        ValueError: any other value.
    """
    if which == "eval":
        return EVAL_SOURCES
    if which == "train":
        return TRAIN_SOURCES
    raise ValueError(f"unknown source list {which!r}; valid: eval, train")


def packages(source_list: tuple[Source, ...], quick: bool = False) -> list[str]:
    """Distinct package names of a source list, in list order (only the quick subset if ``quick``)."""
    out: list[str] = []
    for s in source_list:
        if (s.quick or not quick) and s.package not in out:
            out.append(s.package)
    return out
