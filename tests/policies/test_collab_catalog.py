"""The catalogs that name the collab policy build: the default one and the seed's example."""

from __future__ import annotations

from pathlib import Path

from gateway.api.routing import build_router
from gateway.core.config import Settings, load_catalog
from gateway.policies.collab import CollabParams

EXAMPLE = Path(__file__).parents[2] / "examples" / "collab-vllm.yaml"


def test_default_catalog_pairs_smollm2_with_gemma3() -> None:
    route = build_router(load_catalog(Settings()), "default").routes["tandem-collab"]
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
