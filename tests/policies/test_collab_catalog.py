"""The catalogs that name the collab policy build: the default one and the seed's example."""

from __future__ import annotations

from pathlib import Path

from gateway.api.routing import build_router
from gateway.core.config import Settings, load_catalog
from gateway.policies.collab import CollabParams

EXAMPLE = Path(__file__).parents[2] / "examples" / "collab-vllm.yaml"
SHIPPED = Path(__file__).parents[2] / "gateway" / "routers" / "default-pair.json"


def test_default_catalog_pairs_smollm2_with_gemma3() -> None:
    route = build_router(load_catalog(Settings()), str(Settings().catalog_path())).routes[
        "tandem-collab"
    ]
    assert route.policy.name == "collab"
    assert route.spec.backends == {"small": "smollm2", "large": "gemma3"}
    assert isinstance(route.params, CollabParams)


def test_the_seeds_deployment_example_builds() -> None:
    router = build_router(load_catalog(Settings(config=EXAMPLE)), str(EXAMPLE))
    route = router.routes["tandem-collab"]
    assert router.backends[route.spec.backends["large"]].kind == "openai"
    assert router.backends[route.spec.backends["small"]].kind == "mlx"
    assert isinstance(route.params, CollabParams)
    assert route.params.trigger == "top1"


def test_the_default_catalog_ships_a_router_for_its_pair() -> None:
    """The router file travels in the package, loads at start-up, and reads only what every
    small backend gives (no hidden state: it runs on llama.cpp, transformers, MLX and HTTP)."""
    router = build_router(load_catalog(Settings()), str(Settings().catalog_path()))
    policy = router.routes["tandem-collab"].policy
    shipped = policy.routers["default-pair"]
    assert SHIPPED.stat().st_size < 1_000_000
    assert set(shipped.pair) == {"small", "large"}
    assert not shipped.needs_hidden
    assert "position" in shipped.inputs
    uploads = [p.upload for p in shipped.calibration]
    assert min(uploads) < 0.1
    assert max(uploads) == 1.0
    assert shipped.threshold_for(0.1) > shipped.threshold_for(0.3)
