"""Where regbench's configs are: conf/ (`config_dir`), and the folders a user added to Hydra's
config search path (`config_search_dirs`), where their own regularizers and models may lie."""

from __future__ import annotations

from typing import Any


def config_search_dirs(hydra_node: Any = None) -> tuple[str, ...]:
    """The folders a user added to Hydra's config search path (`--config-dir`, `hydra.searchpath`):
    where a user regularizer's module may lie beside its YAML (regbench.regularizers.load_user).

    Read from `hydra_node` (a composed config's `hydra` node), else from the current HydraConfig;
    empty outside Hydra.
    """
    if hydra_node is None:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return ()
        hydra_node = HydraConfig.get()
    sources = hydra_node.runtime.get("config_sources") or []
    return tuple(str(s.path) for s in sources if s.schema == "file" and s.provider not in ("main", "hydra"))


def config_dir() -> str:
    """conf/ inside the installed package (a wheel), else conf/ beside it (a source checkout)."""
    from pathlib import Path

    package = Path(__file__).resolve().parents[1]
    packaged = package / "conf"
    return str(packaged if packaged.is_dir() else package.parent / "conf")
