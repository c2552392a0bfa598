"""Real tensor-parallel libraries as registry entries ("peers"): metadata only.

This module is imported by the verdict process, so it never imports a peer library: it names the
adapters (one short file each, imported in worker processes only), the distribution each needs,
and the known-deviations file the suite applies automatically when ``--impl`` names a peer.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from importlib import metadata
from typing import Optional

INSTALL = "pip install -e '.[peers]'"
KNOWN_DEVIATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "known_deviations.toml")


@dataclass(frozen=True)
class Peer:
    name: str
    module: str  # the adapter module, tpconform.impls.peers.<name>
    requires: str  # the top-level package the library installs ("" when torch alone suffices)
    distribution: str  # what pip installs (pinned in pyproject.toml's ``peers`` extra)
    install: str = INSTALL  # the command that installs it
    series: str = ""  # the release series the adapter needs ("5."), where an older one installs the same package


PEERS: tuple[Peer, ...] = (
    Peer("dtensor", "tpconform.impls.peers.dtensor", "", "torch"),
    Peer("fairscale", "tpconform.impls.peers.fairscale", "fairscale", "fairscale==0.4.13"),
    Peer("megatron", "tpconform.impls.peers.megatron", "megatron", "megatron-core==0.16.1"),
    Peer("deepspeed", "tpconform.impls.peers.deepspeed", "deepspeed", "deepspeed==0.19.8",
         "DS_BUILD_OPS=0 pip install --no-deps deepspeed==0.19.8 && "
         "pip install hjson ninja py-cpuinfo pydantic msgpack psutil einops"),
    Peer("colossalai", "tpconform.impls.peers.colossalai", "colossalai", "colossalai==0.5.0",
         "pip install --no-deps colossalai==0.5.0 && "
         "pip install psutil packaging tqdm rich einops safetensors pydantic contexttimer click ninja "
         "transformers==4.51.3 peft==0.13.2 accelerate==1.15.0 galore-torch==1.0 bitsandbytes==0.50.2"),
    Peer("transformers", "tpconform.impls.peers.transformers", "transformers", "transformers==5.25.0",
         "pip install --no-deps transformers==5.25.0 && pip install --no-deps regex huggingface_hub httpx2 httpcore2 "
         "h11 idna truststore pyyaml 'safetensors>=0.8.0' tokenizers tqdm filelock packaging", series="5."),
)
BY_NAME = {p.name: p for p in PEERS}


def missing(name: str) -> Optional[str]:
    """One line saying how to install peer ``name``'s library, or ``None`` when it is importable.

    Uses ``find_spec`` on the top-level package, which locates it without importing it, and the installed
    distribution's metadata for a peer that needs a release series (ColossalAI's line installs transformers 4.x;
    the transformers peer needs 5.x)."""
    peer = BY_NAME[name]
    how = f"install the peers extra: {INSTALL}" if peer.install == INSTALL else f"install it: {peer.install}"
    if not peer.requires or importlib.util.find_spec(peer.requires) is not None:
        if not peer.series:
            return None
        dist_name = peer.distribution.split("==")[0]
        try:
            installed = metadata.version(dist_name)
        except metadata.PackageNotFoundError:
            installed = "unknown"
        if installed.startswith(peer.series):
            return None
        return f"{dist_name} {installed} is installed, the adapter needs {peer.series}x; {how}"
    return f"{peer.distribution} is not installed; {how}"
